"""dvc.yaml's `artifacts:`: generated from params.yaml, kept in step with it, and fetched by `dvc artifacts get`."""
import hashlib
import json
import shutil

import yaml
from dvc.repo import Repo

from conftest import REPO, committed_params, edit_params, run_cli
from reproduce.artifacts import MARKER, artifact_name, artifacts, block
from reproduce.config import load_params
from test_pipeline import dvc, git, make_project


def test_dvc_yaml_lists_every_experiment_of_the_committed_params():
    # dvc.yaml is never written by the study (only params.yaml is, by `dvc exp run -S`): the file as it is.
    params = load_params(committed_params())
    text = (REPO / "dvc.yaml").read_text()
    assert text.count(MARKER) == 1 and text.endswith(block(params))
    listed = yaml.safe_load(text)["artifacts"]
    assert listed == artifacts(params)
    assert Repo(str(REPO)).artifacts.read()["dvc.yaml"].keys() == listed.keys()  # DVC's own parser takes them
    assert {a["path"] for a in listed.values()} == {f"runs/{name}" for name in params.all_experiments()}
    assert listed["r1001-full-preact-b64"]["meta"]["network"] == {
        "dataset": "cifar10", "depth": 1001, "block": "bottleneck", "unit": "full_preact", "shortcut": "identity",
        "stride_on": "1x1"}
    assert listed["in-r200-full-preact-aspect"]["meta"]["recipe"] == "fb.resnet.torch"


def test_the_generator_rewrites_its_block_only(tmp_path):
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    head = (REPO / "dvc.yaml").read_text().split(MARKER)[0]
    params = edit_params(shutil.copy(committed_params(), tmp_path / "params.yaml"),
                         custom={"r56_full_preact": {"dataset": "cifar10", "depth": 56, "block": "basic"}})
    run_cli("artifacts", cwd=tmp_path)
    text = (tmp_path / "dvc.yaml").read_text()
    assert text.startswith(head) and yaml.safe_load(text)["artifacts"]["r56-full-preact"]["labels"][-1] == "custom"
    run_cli("artifacts", cwd=tmp_path)
    assert (tmp_path / "dvc.yaml").read_text() == text
    edit_params(params, custom={"r110.original": {"dataset": "cifar10", "depth": 56, "block": "basic"}})
    clash = run_cli("artifacts", cwd=tmp_path, check=False)
    assert clash.returncode == 2 and "'r110-original' is also r110_original's" in clash.stderr
    assert artifact_name("r110.Original") == "r110-original"


def test_dvc_artifacts_get_fetches_a_run_folder_through_a_remote(tmp_path):
    tiny = {"tiny": {"dataset": "cifar10", "depth": 8, "block": "basic", "unit": "full_preact"}}
    first = make_project(tmp_path / "first", tiny, seeds=[0], **{
        "cifar.iterations": 10, "cifar.milestones": [5], "cifar.batch_size": 16, "cifar.bn_batch": 8,
        "cifar.log_every": 5, "cifar.checkpoint_every": 10, "cifar.eval_every": 10})
    run_cli("artifacts", cwd=first)
    dvc("remote", "add", "-d", "shared", str(tmp_path / "remote"), cwd=first)
    dvc("repro", "train@tiny", cwd=first)
    dvc("push", "runs/tiny", cwd=first)
    git("add", "-A", cwd=first)
    git("commit", "-qm", "trained", cwd=first)
    # a version of the artifact: the annotated tag `gto register tiny` makes; `artifacts get` takes the latest
    git("tag", "-a", "tiny@v1.0.0", "-m", "Registering artifact tiny version v1.0.0", cwd=first)
    git("clone", "-q", str(first), str(tmp_path / "clone"), cwd=tmp_path)  # git only: no DVC cache
    dvc("artifacts", "get", str(tmp_path / "clone"), "tiny", "-o", str(tmp_path / "got"), cwd=tmp_path)
    weights = (tmp_path / "got" / "seed0" / "model.pt").read_bytes()
    metrics = json.loads((tmp_path / "got" / "seed0" / "metrics.json").read_text())
    assert metrics["status"] == "finished" and metrics["weights_sha256"] == hashlib.sha256(weights).hexdigest()
