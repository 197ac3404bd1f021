"""What the notebooks and the HTML report show: tables beside the paper's, claims, curves, the summary.

Notebooks import this package as one namespace (`import reproduce.report as R`); `render` is the
`report` stage (papermill, then nbconvert's offline HTML).
"""
from .curves import curves, plot_pairs, show_bench
from .study import Study, compute_used, load_study, repo_root, show_banner, show_figure, show_provenance
from .summary import show_summary
from .tables import plot_vs_paper, show_claims, show_custom, show_rule, show_table, table_view

__all__ = ["Study", "compute_used", "curves", "load_study", "plot_pairs", "plot_vs_paper", "repo_root", "show_banner",
           "show_bench", "show_claims", "show_custom", "show_figure", "show_provenance", "show_rule", "show_summary",
           "show_table", "table_view"]
