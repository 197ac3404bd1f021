"""`python -m reproduce report`: execute notebooks/report.ipynb with papermill, then convert it to one HTML
page that opens offline (our `offline` nbconvert template drops the CDN scripts; plots are embedded)."""
import tempfile
from pathlib import Path

import papermill
from nbconvert import HTMLExporter

from ..errors import UserError
from ..files import atomic_write

TEMPLATES = Path(__file__).parent / "templates"


def render(notebook, html, parameters: dict, kernel="python3"):
    """Execute `notebook` in a fresh kernel (run from its own directory, as JupyterLab would) with
    `parameters`, and write it as HTML without input cells to `html` atomically."""
    notebook = Path(notebook).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        executed = Path(tmp) / notebook.name
        papermill.execute_notebook(str(notebook), str(executed), parameters=parameters, kernel_name=kernel,
                                   cwd=str(notebook.parent), progress_bar=False)
        exporter = HTMLExporter(template_name="offline", extra_template_basedirs=[str(TEMPLATES)],
                                exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
        body, _ = exporter.from_filename(str(executed))
    atomic_write(html, lambda t: Path(t).write_text(body, encoding="utf-8"))


def add_arguments(parser):
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--runs", default="runs", help="run directories RUNS/EXPERIMENT/seedSEED (default: runs)")
    parser.add_argument("--curves", default="curves", help="training curves CURVES/EXPERIMENT/seedSEED (default: curves)")
    parser.add_argument("--bench", default="reports/bench.json",
                        help="benchmark records, shown if the file exists (default: reports/bench.json)")
    parser.add_argument("--notebook", default="notebooks/report.ipynb", help="(default: notebooks/report.ipynb)")
    parser.add_argument("--out", default="reports/report.html", help="(default: reports/report.html)")
    parser.add_argument("--readme", metavar="PATH",
                        help="also fill the results section of this README (between its results markers)")


def run(args):
    if not Path(args.notebook).exists():
        raise UserError(f"{args.notebook}: no such notebook (run from the repository root or pass --notebook)")
    # Absolute paths: the notebook runs in its own directory.
    parameters = {"runs_dir": str(Path(args.runs).resolve()), "params_path": str(Path(args.params).resolve()),
                  "curves_dir": str(Path(args.curves).resolve()),
                  "bench_json": str(Path(args.bench).resolve())}
    render(args.notebook, args.out, parameters)
    print(f"{args.out}: written")
    if getattr(args, "readme", None):
        fill_readme(Path(args.readme), args.params, args.runs, args.out)


BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def fill_readme(readme: Path, params_path, runs_dir, html):
    """Replace the text between the README's results markers with the claims' verdicts and evidence."""
    from ..config import load_params
    from ..results.runs import collect
    from ..results.judge import claims
    from ..results.paper import paper_numbers

    text = readme.read_text()
    if BEGIN not in text or END not in text:
        raise UserError(f"{readme} has no results section: add the lines {BEGIN} and {END}")
    params = load_params(params_path)
    verdicts = claims(collect(runs_dir, params), paper_numbers())
    lines = [f"Profile `{params.profile}`" + (" (SMOKE: these verdicts say nothing about the paper)"
                                              if params.profile == "smoke" else "") + f"; details in `{html}`.",
             "", "| claim | status | comparisons run | supporting | contradicting | largest p | evidence |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {c.claim} | {c.status} | {c.ran} of {c.comparisons} | {c.supporting} | {c.contradicting} | "
              f"{f'{c.max_p:.3g}' if c.ran else ''} | "
              f"{c.evidence.replace('|', '/')} |" for c in verdicts.itertuples()]
    head, rest = text.split(BEGIN, 1)
    filled = head + BEGIN + "\n" + "\n".join(lines) + "\n" + END + rest.split(END, 1)[1]
    atomic_write(readme, lambda t: Path(t).write_text(filled))
    print(f"{readme}: results section filled")
