"""The study as a DVC pipeline, end to end on the smoke profile with generated CIFAR archives and ImageNet."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import COMMITTED_PARAMS, REPO, committed_params_dict, edit_params, make_archive, make_imagenet
from reproduce.results.cells import RESULT_COLUMNS

# One experiment or more per table, a custom one, ImageNet: the smoke DAG in miniature.
KEEP = ["r110_original", "t1_scale_0_1", "r164_full_preact", "r110_1layer_full_preact", "c100_r164_full_preact",
        "r1001_full_preact_b64", "in_r152_full_preact", "in_r101_bn_after_add"]
DVC = [str(Path(sys.executable).with_name("dvc"))]
ENV = {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}


def dvc(*args, cwd, check=True):
    result = subprocess.run(DVC + list(args), cwd=cwd, capture_output=True, text=True, env=ENV)
    if check and result.returncode:
        raise AssertionError(f"dvc {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def git(*args, cwd):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def set_params(root, **changes):
    edit_params(root / "params.yaml", **changes)


def make_project(root, experiments, **changes):
    """A fresh git + DVC repository holding this project's pipeline, notebooks and package, with generated
    CIFAR archives and ImageNet folder, and `experiments` (plus dotted-key `changes`) in its params.yaml."""
    root.mkdir(exist_ok=True)
    for name in ("dvc.yaml", ".gitignore"):
        shutil.copy(REPO / name, root / name)
    (root / "params.yaml").write_text(COMMITTED_PARAMS)
    for folder in ("notebooks", "reproduce"):
        shutil.copytree(REPO / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
    git("init", "-q", cwd=root)
    git("config", "user.email", "test@example.com", cwd=root)
    git("config", "user.name", "test", cwd=root)
    dvc("init", "-q", cwd=root)
    dvc("config", "core.analytics", "false", cwd=root)
    offline = REPO / ".venv" / "share" / "dvc-plots-offline.html"  # made by .ci/setup
    dvc("config", "--local", "plots.html_template", str(offline), cwd=root)
    raw = root / "data" / "raw"
    raw.mkdir(parents=True)
    md5 = {name: make_archive(name, raw)[1] for name in ("cifar10", "cifar100")}
    make_imagenet(root / "imagenet")
    set_params(root, experiments=experiments, **{"data.cifar10.md5": md5["cifar10"], "data.cifar100.md5": md5["cifar100"],
                                                 "data.imagenet.root": str(root / "imagenet"), **changes})
    git("add", "-A", cwd=root)
    git("commit", "-qm", "study", cwd=root)
    return root


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    params = committed_params_dict()
    return make_project(tmp_path_factory.mktemp("study"), {k: v for k, v in params["experiments"].items() if k in KEEP},
                        profile="smoke", seeds=[0, 1], **{"smoke.data": "cifar", "smoke.seeds": [0], "smoke.iterations": 30,
                                                          "smoke.evaluations": 3},
                        custom={"my_r20": {"dataset": "cifar10", "depth": 20, "block": "basic", "unit": "full_preact"}})


def ran(output):
    return sorted(line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage"))


def test_smoke_study_runs_end_to_end_and_reruns_only_what_changed(project):
    first = dvc("repro", cwd=project)
    assert {"train@in_r152_full_preact", "train_custom@my_r20"} <= set(ran(first.stdout))
    results = pd.read_csv(project / "reports" / "results.csv")
    assert list(results.columns) == RESULT_COLUMNS
    assert (results.command.str.startswith("dvc repro train")).all() and results.reason[results.status == "not_run"].notna().all()
    assert set(results.recipe.dropna()) == {"paper", "fb.resnet.torch"}
    assert {"1", "2", "3", "4", "5", "custom"} <= set(results.table.astype(str).str.replace("Table ", ""))
    assert set(results.status.dropna()) <= {"reproduced", "different", "inconclusive", "not_run"}
    runs = pd.read_csv(project / "reports" / "runs.csv")
    assert (runs[runs.seed == 1].status == "not_run").all()  # the smoke profile trains seed 0 only
    imagenet = runs[(runs.experiment == "in_r152_full_preact") & (runs.seed == 0)]
    assert imagenet.status.item() == "finished"
    assert (project / "reports" / "report.html").stat().st_size > 10_000

    again = dvc("repro", cwd=project)
    assert ran(again.stdout) == []

    # (the smoke profile replaces depths by its own, so here the edit is the unit)
    set_params(project, **{"custom.my_r20.unit": "original"})
    third = dvc("repro", cwd=project)
    trained = [s for s in ran(third.stdout) if s.startswith("train")]
    assert trained == ["train_custom@my_r20"]

    shown = dvc("exp", "show", "--no-pager", "--csv", cwd=project).stdout
    assert "test_error" in shown
    dvc("plots", "show", "-o", "plots", cwd=project)
    page = (project / "plots" / "index.html").read_text()
    assert "train/loss" in page and "cdn.jsdelivr" not in page  # drawn from the curves, offline


def test_bad_params_stop_the_pipeline_before_anything_trains(project, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(project, bad, ignore=shutil.ignore_patterns("runs", "curves", "metrics", "reports", "data", "checkpoints"))
    set_params(bad, **{"cifar.iteration": 10})
    result = dvc("repro", cwd=bad, check=False)
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "unknown key 'cifar.iteration'" in out and "did you mean 'iterations'" in out
    assert not (bad / "runs").exists() or not list((bad / "runs").glob("*/seed*"))


def test_the_report_renders_offline_in_a_real_browser(project):
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    chromium = shutil.which("chromium")
    if not chromium:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    dvc("repro", cwd=project)  # a no-op after the end-to-end test; the whole study when run alone
    report = project / "reports" / "report.html"
    requests, failed = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("request", lambda r: requests.append(r.url))
        page.on("requestfailed", lambda r: failed.append(r.url))
        page.goto(report.as_uri())
        page.wait_for_load_state("networkidle")
        tables = page.locator("table").count()
        images = page.evaluate("Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)")
        text = page.inner_text("body")
        page.screenshot(path=str(project / "reports" / "report.png"), full_page=True)
        browser.close()
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == [] and failed == []
    assert tables >= 8 and len(images) >= 3 and all(images)
    assert "smoke" in text.lower() and "Table 5" in text
    assert text.index("Reproducibility summary") < text.index("Table 1")  # the summary opens the report
    assert all(t in text for t in ("Methodology", "What was easy", "What was hard", "largest p", "interval (coverage)"))
    assert (project / "reports" / "report.png").stat().st_size > 50_000


def test_an_interrupted_repro_resumes_its_run_and_ends_the_same(tmp_path):
    slow = {"slow": {"dataset": "cifar10", "depth": 8, "block": "basic", "unit": "full_preact"}}
    root = make_project(tmp_path, slow, seeds=[0], **{"cifar.iterations": 300, "cifar.milestones": [150, 250],
                                                       "cifar.batch_size": 32, "cifar.bn_batch": 16, "cifar.log_every": 10,
                                                       "cifar.checkpoint_every": 50, "cifar.eval_every": 100})
    reference = ["--out", "reference", "--curves", "reference/curves", "--checkpoint-dir", "reference/ck",
                 "--metrics", "reference/metrics.json"]
    subprocess.run(DVC + ["repro", "download@cifar10"], cwd=root, check=True, capture_output=True, env=ENV)
    subprocess.run([sys.executable, "-m", "reproduce", "train", "--experiment", "slow", *reference], cwd=root,
                   check=True, capture_output=True, env=ENV)
    proc = subprocess.Popen(DVC + ["repro", "train@slow"], cwd=root, env=ENV, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not list((root / "checkpoints").glob("*.pt")) and time.time() < deadline:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)  # dvc and the training process under it
    proc.wait()
    assert not (root / "runs" / "slow" / "seed0" / "metrics.json").exists()
    again = dvc("repro", "train@slow", cwd=root)
    assert "resuming from iteration" in again.stdout
    finished, reference = (json.loads((root / d / "metrics.json").read_text())
                           for d in ("runs/slow/seed0", "reference/seed0"))
    for m in (finished, reference):
        m.pop("wall_s")
    assert finished == reference


def test_a_second_machine_takes_finished_runs_from_the_run_cache(tmp_path):
    tiny = {"tiny": {"dataset": "cifar10", "depth": 8, "block": "basic", "unit": "full_preact"}}
    first = make_project(tmp_path / "first", tiny, seeds=[0], **{"cifar.iterations": 20, "cifar.milestones": [10],
                                                                  "cifar.batch_size": 16, "cifar.bn_batch": 8, "cifar.log_every": 10,
                                                                  "cifar.checkpoint_every": 10, "cifar.eval_every": 20})
    dvc("remote", "add", "-d", "shared", str(tmp_path / "remote"), cwd=first)
    git("commit", "-qam", "remote", cwd=first)
    dvc("repro", "train@tiny", cwd=first)
    dvc("push", "--run-cache", cwd=first)
    git("clone", "-q", str(first), str(tmp_path / "second"), cwd=tmp_path)
    second = tmp_path / "second"
    shutil.copytree(first / "data" / "raw", second / "data" / "raw")  # each machine has the data
    dvc("fetch", "--run-cache", cwd=second)  # the run cache and the outputs it records
    result = dvc("repro", "--pull", "train@tiny", cwd=second)
    assert "Running stage 'train@tiny'" not in result.stdout and "train@tiny" in result.stdout
    assert (second / "runs" / "tiny" / "seed0" / "metrics.json").read_text() == \
        (first / "runs" / "tiny" / "seed0" / "metrics.json").read_text()
