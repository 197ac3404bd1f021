"""Paper numbers, aggregation, claims, notebooks and the offline HTML report, on a fake runs/ tree."""
import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import jupyter_client.kernelspec
import pandas as pd
import pytest
import yaml

from conftest import committed_params, committed_params_dict
from reproduce.results import aggregate
from reproduce.report import render
from reproduce.results.cells import RESULT_COLUMNS, results
from reproduce.results.runs import RUN_COLUMNS, collect
from reproduce.results.claims import CLAIMS
from reproduce.results.judge import claims
from reproduce.config import load_params, run_config
from reproduce.errors import UserError
from reproduce.results.paper import FAIL, metric_key, paper_numbers, paper_value
from reproduce.results.stats import TEST_IMAGES

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CUSTOM = "r20_full_preact"


def write_run(runs, params, experiment, seed, status, test=None, **extra):
    """One run directory in the trainer's format: metrics.json and DVCLive TSV curves."""
    run = runs / experiment / f"seed{seed}"
    metrics = {"status": status, "experiment": experiment, "seed": seed, "profile": params.profile,
               "digest": run_config(params, experiment).digest(seed), **extra}
    if status != "not_run":
        metrics.update({"failed_at": 12 if status == "failed" else None, "iterations": 30,
                        "precision": "bf16", "device": "cpu", "processes": 1, "wall_s": 90.0, "params": 1000})
    if status == "finished":
        metrics.update(train_loss=0.3, train_error=9.0, **(test or {}))
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps(metrics))
    if status == "not_run":
        return
    curves = runs.parent / "curves" / experiment / f"seed{seed}" / "plots" / "metrics"
    logged = {"train/loss": 2.0, "train/error": 80.0, "lr": 0.1}
    logged.update({f"test/{k.removeprefix('test_')}": v for k, v in (test or {}).items()})
    for name, last in logged.items():
        (curves / name).parent.mkdir(parents=True, exist_ok=True)
        rows = [f"{step}\t{last * (1 + 1 / step)}" for step in (5, 10, 15)]
        (curves / f"{name}.tsv").write_text("\n".join([f"step\t{Path(name).name}", *rows]) + "\n")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A smoke-profile params.yaml with one custom experiment, and runs of a few experiments: finished,
    diverged, not run (ImageNet), stale (a seed the params do not ask for) and one without metrics.json."""
    tmp = tmp_path_factory.mktemp("study")
    raw = committed_params_dict()
    raw.update(profile="smoke", custom={CUSTOM: {"dataset": "cifar10", "depth": 20, "block": "basic",
                                                 "unit": "full_preact"}})
    (tmp / "params.yaml").write_text(yaml.safe_dump(raw))
    params, runs = load_params(tmp / "params.yaml"), tmp / "runs"
    for seed, error in zip((0, 1), (6.5, 6.7)):
        write_run(runs, params, "r110_original", seed, "finished", {"test_error": error})
        write_run(runs, params, "t1_scale_05_05", seed, "finished", {"test_error": 12.0 + seed})
        write_run(runs, params, "t1_dropout", seed, "failed")
        write_run(runs, params, "t1_exclusive_gate_b0", seed, "failed")
        write_run(runs, params, "t1_exclusive_gate_b1", seed, "finished", {"test_error": 85.0})
        write_run(runs, params, "r1001_original", seed, "finished", {"test_error": 7.6 + seed})
        write_run(runs, params, "r1001_full_preact", seed, "finished", {"test_error": 4.9})
        write_run(runs, params, CUSTOM, seed, "finished", {"test_error": 7.0})
        write_run(runs, params, "in_r152_original", seed, "not_run", reason="set data.imagenet.root")
    write_run(runs, params, "r110_full_preact", 0, "finished", {"test_error": 6.3})
    write_run(runs, params, "r110_full_preact", 1, "failed")
    (runs / "r164_original" / "seed0").mkdir(parents=True)  # running: no metrics.json yet
    write_run(runs, params, "r110_original", 7, "finished", {"test_error": 50.0})  # a seed smoke does not run
    (tmp / "bench.json").write_text(json.dumps([{"case": "ResNet-110 bf16", "project_img_s": 240.0,
                                                 "reference_img_s": 200.0, "ratio": 1.2, "device": "cpu",
                                                 "precision": "bf16"}]))
    return tmp, params


def test_paper_numbers_have_every_cell():
    paper = paper_numbers()
    ours, cited = paper[~paper.literature], paper[paper.literature]
    assert ours.groupby("table").size().to_dict() == {"Table 1": 16, "Table 2": 10, "Table 3": 12, "Table 4": 5,
                                                      "Table 5": 12, "Section 5": 4}
    assert cited.groupby("table").size().to_dict() == {"Table 4": 18, "Table 5": 2}
    assert (cited.experiment == "").all() and (ours.experiment != "").all()
    assert not paper.duplicated(["table", "row", "column", "metric"]).any()
    fails = paper[paper.paper == FAIL]
    assert list(fails.experiment) == ["t1_scale_0_1", "t1_scale_05_1", *(f"t1_exclusive_gate_b{i}" for i in range(6)),
                                      "t1_dropout"]  # the paper's row "b_g = 0 to -5": one row per network
    assert all(paper_value(p) > 0 for p in paper.paper if p != FAIL)
    cell = paper.set_index(["table", "row", "column", "metric"]).paper
    assert cell["Table 3", "CIFAR-10 ResNet-1001", "baseline unit", "test_error"] == "7.61"
    assert cell["Table 5", "ResNet-200, pre-act Residual Unit (scale)", "320x320", "top5"] == "5.3"
    assert cell["Section 5", "ResNet-101, BN after addition", "224x224", "top1"] == "24.6"
    spread = paper.dropna(subset=["paper_mean"])
    assert list(zip(spread.paper_mean, spread.paper_std)) == [(4.89, 0.14), (4.69, 0.20), (22.68, 0.22)]
    assert not ours.experiment.str.contains(" ").any() and set(ours.dataset) == {"cifar10", "cifar100", "imagenet"}
    named = set(ours.experiment)
    assert named == set(load_params(committed_params()).experiments)  # every experiment feeds a cell
    assert metric_key("top1", "320x320") == "test_top1_center320"


def test_results_one_row_per_cell(study):
    tmp, params = study
    runs = collect(tmp / "runs", params)
    assert len(runs) == 2 * 9 + 2 + 1 + 1  # every run directory, stale and unfinished ones included
    assert not runs.set_index(["experiment", "seed"]).loc[("r110_original", 7), "current"]
    assert (runs.profile.dropna() == "smoke").all()
    table = results(runs, paper_numbers(), params)
    assert list(table.columns) == RESULT_COLUMNS
    assert len(table) == (~paper_numbers().literature).sum() + 1
    assert set(table.status) <= {"reproduced", "different", "inconclusive", "not_run", ""}
    cells = table.set_index(["table", "row", "column"])
    status = cells.status
    first = table.iloc[0]
    assert (first["median"], first.runs, first.failed) == (6.6, 2, 0)  # the stale seed 7 is not counted
    # Two seeds decide nothing: a sign test over 2 gives p >= 1/4 (5 seeds: 1/32).
    assert status["Table 1", "original [1]", "error (%)"] == "inconclusive" and first.p_equivalent == 0.25
    assert status["Table 1", "constant scaling: 0.5 on shortcut, 0.5 on F", "error (%)"] == "inconclusive"
    assert status["Table 1", "dropout shortcut (0.5)", "error (%)"] == "inconclusive"  # paper fail, ours diverged
    assert cells.loc["Table 1", "dropout shortcut (0.5)", "error (%)"].p_equivalent == 0.25
    assert status["Table 1", "1x1 conv shortcut", "error (%)"] == "not_run"
    preact = cells.loc["Table 2", "full pre-activation", "ResNet-110"]  # 6.3 and a diverged seed
    assert preact.status == "inconclusive" and preact.ci_high == float("inf") and preact.paper_in_ci
    assert "1 of 2 seeds diverged" in preact.reason
    assert status["Table 2", "original Residual Unit [1]", "ResNet-164"] == "not_run"  # no metrics.json yet
    assert status["Table 5", "ResNet-152, original Residual Unit [1] (scale)", "320x320"].eq("not_run").all()
    custom = table[table.table == "custom"].iloc[0]
    assert (custom.row, custom["median"], custom.status) == (CUSTOM, 7.0, "")


# Training metrics the paper's sentences imply (it prints none): 1.0 + 0.01 × seed, these one point higher.
HIGHER = {"train_error": ["t1_scale_05_05", "t1_shortcut_gate_b0", "t1_conv1x1", "t1_shortcut_gate_b6", "in_r152_original"],
          "train_loss_early": ["r110_bn_after_add"], "train_error_early": ["r1001_original"],
          "train_loss": [f"{n}_full_preact" for n in ("r110", "r110_1layer", "r164", "c100_r164")]}


def paper_runs(seeds=range(5)) -> pd.DataFrame:
    """Runs that got the paper's numbers (plus 0.01 × seed, so seeds differ), `fail` cells diverged,
    evaluated on the paper's test sets, with the training metrics of HIGHER."""
    rows = []
    for cell in paper_numbers().query("not literature").itertuples():
        for experiment, seed in ((cell.experiment, s) for s in seeds):
            failed = cell.paper == FAIL
            training = {k: 1.0 + 0.01 * seed + (experiment in HIGHER[k]) for k in HIGHER}
            rows.append({"experiment": experiment, "seed": seed, "current": True, "failed_at": 12 if failed else None,
                         "status": "failed" if failed else "finished", "wall_s": 3600.0, "processes": 2,
                         "device": "NVIDIA H100", "test_images": TEST_IMAGES[cell.dataset], **training,
                         "seeds_planned": len(seeds),
                         "train_images": 50_000, "train_images_early": 50_000,
                         metric_key(cell.metric, cell.column): None if failed else paper_value(cell.paper) + 0.01 * seed})
    runs = pd.DataFrame(rows).groupby(["experiment", "seed"], as_index=False).first()
    return runs.reindex(columns=RUN_COLUMNS).assign(current=True)


def test_paper_numbers_as_runs_reproduce_everything():
    """Runs that got the paper's numbers reproduce every cell and, with 5 seeds each, every claim at
    p = 1/252 per comparison; with single ImageNet runs (as the paper's), the z-tests decide the pairs
    far enough apart for the test sets' noise, and no more."""
    runs = paper_runs()
    table = results(runs, paper_numbers())
    assert (table.status == "reproduced").all()
    assert (table.command.str.startswith("dvc repro train@")).all() and (table.hardware == "NVIDIA H100 ×2").all()
    first = table.iloc[0]
    assert (first.ci_low, first.ci_high, first.ci_coverage, first.paper_in_ci) == (6.61, 6.65, 0.9375, True)
    assert first.compute_hours == 5 * 2  # 5 runs of an hour on 2 GPUs
    judged = claims(runs, paper_numbers()).set_index("claim")
    assert (judged.status == "reproduced").all(), judged.evidence.tolist()
    assert judged.max_p.tolist() == pytest.approx([1 / 252] * 14 + [1 / 32] + [1 / 252] * 7)  # Inception: a sign test
    assert judged.comparisons.tolist() == [14, 7, 1, 2, 1, 2, 2, 6, 1, 2, 1, 1, 1, 3, 1, 1, 1, 1, 2, 1, 4, 1]
    assert (judged.supporting == judged.comparisons).all() and (judged.ran == judged.comparisons).all()
    single = runs[~runs.experiment.str.startswith("in_") | (runs.seed == 0)].copy()
    single.loc[single.experiment.str.startswith("in_"), "seeds_planned"] = 1  # the paper's protocol: one run
    status = claims(single, paper_numbers()).status.tolist()
    # 21.1 vs 21.3 and 20.7 vs 21.1 are less than 1.645 binomial sds (0.26 points for two runs) apart
    assert status == ["reproduced"] * 12 + ["inconclusive"] * 2 + ["reproduced"] * 8
    worse = runs.assign(test_error=runs.test_error.where(runs.experiment != "r1001_full_preact", 7.0))
    worse = claims(worse, paper_numbers()).set_index("claim").status
    assert worse["With pre-activation, deeper is better: ResNet-1001 beats ResNet-164 on CIFAR-10 and CIFAR-100"] \
        == "contradicted"  # 7.0 against ResNet-164's 5.46: q = 1/252, adjusted for 2 comparisons 0.008
    nothing = claims(runs.iloc[:0], paper_numbers())
    assert (nothing.status == "not run").all()


def test_aggregate_writes_csvs(study, tmp_path):
    tmp, _ = study
    aggregate.run(argparse.Namespace(params=tmp / "params.yaml", runs=tmp / "runs", out=tmp_path))
    assert list(pd.read_csv(tmp_path / "results.csv").columns) == RESULT_COLUMNS
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert {"experiment", "seed", "status", "profile", "current", "wall_s", "command"} <= set(runs.columns)
    one = runs.set_index(["experiment", "seed"])
    assert one.loc[("r110_original", 1), "command"] == "python -m reproduce train --experiment r110_original --seed 1"
    assert one.loc[("t1_dropout", 0), "reason"] == "diverged: non-finite training loss at iteration 12"
    assert (runs.status.isin(["finished"]) | runs.reason.notna()).all()  # every failed or not_run run says why
    assert not list(tmp_path.glob("*.tmp"))


def test_report_functions_before_any_run(study, tmp_path, monkeypatch):
    """Nothing has run yet: every table, figure and section says so instead of crashing."""
    import matplotlib
    matplotlib.use("Agg")
    from reproduce import report
    from reproduce.report import show_summary

    tmp, _ = study
    monkeypatch.chdir(ROOT)
    empty = report.load_study(tmp_path / "runs", tmp / "params.yaml")
    assert empty.runs.empty and (empty.results.status == "not_run").all()
    assert (claims(empty.runs, empty.paper).status == "not run").all()
    report.show_banner(empty)
    show_summary(empty)
    report.show_claims(empty)
    for table in empty.paper.table.unique():
        report.show_table(empty, table)
    report.plot_pairs(empty, [("r1001_original", "r1001_full_preact")])
    report.show_custom(empty)
    report.show_provenance(empty)
    report.show_bench(tmp_path / "bench.json")
    assert (report.compute_used(empty)["device-hours"] == 0).all()


def test_python3_kernel_is_this_environment():
    """papermill -k python3 must run the notebooks with this venv's python (jupyter_client substitutes
    sys.executable for a bare `python` in the kernelspec)."""
    argv = jupyter_client.kernelspec.get_kernel_spec("python3").argv
    assert argv[0] in ("python", "python3") or Path(argv[0]).resolve().is_relative_to(Path(sys.prefix).resolve())


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[n.stem for n in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(notebook, study, tmp_path):
    tmp, _ = study
    source = json.loads(notebook.read_text())
    assert all(not c.get("outputs") and not c.get("execution_count") for c in source["cells"] if
               c["cell_type"] == "code"), "notebooks are committed without outputs"
    tagged = [c for c in source["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1
    names = re.findall(r"^(\w+) =", "".join(tagged[0]["source"]), re.M)
    given = {"params_path": tmp / "params.yaml", "runs_dir": tmp / "runs", "bench_json": tmp / "bench.json",
             "curves_dir": tmp / "curves"}
    args = [a for name in names if name in given for a in ("-p", name, str(given[name]))]
    done = subprocess.run([sys.executable, "-m", "papermill", str(notebook), str(tmp_path / notebook.name),
                           "-k", "python3", "--cwd", str(ROOT), "--no-progress-bar", *args],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def test_report_html_is_offline_and_complete(study, tmp_path):
    tmp, _ = study
    html = tmp_path / "report.html"
    render.run(argparse.Namespace(params=tmp / "params.yaml", runs=tmp / "runs", curves=tmp / "curves",
                                  bench=tmp / "bench.json",
                                  notebook=ROOT / "notebooks" / "report.ipynb", out=html))
    page = html.read_text()
    assert not re.search(r"<script[^>]+src=", page)
    assert not re.search(r"""<link[^>]+href=["']?(https?:)?//""", page)
    assert not re.search(r"""(src|href)=["']?(https?:)?//|url\(["']?(https?:)?//|@import""", page)
    assert len(re.findall(r'<img[^>]+src="data:image/png;base64,', page)) >= 3
    assert page.count("<table") >= 8
    for text in ("SMOKE PROFILE", "Pre-activation eases optimisation of ResNet-1001", "Table 5", "literature", CUSTOM,
                 "particularly obvious when training the 1001-layer ResNet", "partly tested", "p equivalent",
                 "What was run", "device-hours", "Benchmark", "torch", "5.93", "fb.resnet.torch", "recipe",
                 "Reproducibility summary", "What was hard", "largest p", "interval (coverage)", "[6.50, 6.70] (50%)",
                 "dvc repro train@r110_original aggregate", "set data.imagenet.root", "diverged (non-finite"):
        assert text in page, text
    assert "def " not in page and "R.show_table" not in page  # no input cells
    assert re.search(r"Hardware: [^{]", page)  # the summary's f-strings are filled


def test_the_readme_results_section_is_filled_from_the_runs(study, tmp_path):
    from reproduce.report.render import BEGIN, END, fill_readme

    tmp, _ = study
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\n{BEGIN}\nnot run yet\n{END}\n\n## After\n")
    fill_readme(readme, tmp / "params.yaml", tmp / "runs", "reports/report.html")
    text = readme.read_text()
    assert text.startswith("# Title") and text.endswith("## After\n") and "not run yet" not in text
    section = text.split(BEGIN)[1].split(END)[0]
    assert "SMOKE" in section and section.count("\n| ") == 1 + len(CLAIMS)  # header row and one row per claim
    other = tmp_path / "OTHER.md"
    other.write_text("no markers")
    with pytest.raises(UserError, match="no results section"):
        fill_readme(other, tmp / "params.yaml", tmp / "runs", "r.html")
