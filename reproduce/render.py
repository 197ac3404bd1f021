"""`python -m reproduce report`: execute notebooks/report.ipynb with papermill, then convert it to one HTML
page that opens offline (our `offline` nbconvert template drops the CDN scripts; plots are embedded)."""
import tempfile
from pathlib import Path

import papermill
from nbconvert import HTMLExporter

from .checkpoint import atomic_write
from .errors import UserError

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
    parser.add_argument("--bench", default="reports/bench.json",
                        help="benchmark records, shown if the file exists (default: reports/bench.json)")
    parser.add_argument("--notebook", default="notebooks/report.ipynb", help="(default: notebooks/report.ipynb)")
    parser.add_argument("--out", default="reports/report.html", help="(default: reports/report.html)")


def run(args):
    if not Path(args.notebook).exists():
        raise UserError(f"{args.notebook}: no such notebook (run from the repository root or pass --notebook)")
    # Absolute paths: the notebook runs in its own directory.
    parameters = {"runs_dir": str(Path(args.runs).resolve()), "params_path": str(Path(args.params).resolve()),
                  "bench_json": str(Path(args.bench).resolve())}
    render(args.notebook, args.out, parameters)
    print(f"{args.out}: written")
