"""A finished run's weights: `evaluate` redoes its final test errors exactly, its metrics carry the
weights' sha256, torch.hub (hubconf.py) loads them into the same network, and dvc.yaml's `artifacts:`
(generated from params.yaml, kept in step with it) lets `dvc artifacts get` fetch them."""
import hashlib
import json
import shutil

import pytest
import torch
import yaml
from dvc.repo import Repo

from conftest import REPO, committed_params, edit_params, run_cli, write_params
from reproduce.config import load_params
from reproduce.data import digits
from reproduce.errors import UserError
from reproduce.models import build_model
from reproduce.weights.artifacts import MARKER, artifact_name, artifacts, block
from test_pipeline import dvc, git, make_project

# channels_last is not this CPU's default layout: evaluate must take it from the run's metrics.json.
EXPERIMENTS = {"tiny": {"dataset": "cifar10", "depth": 8, "block": "basic", "unit": "full_preact"},
               "r152": {"dataset": "imagenet", "depth": 152, "unit": "original"}}  # not run: no ImageNet root


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A project whose `tiny` run (40 iterations on the digits stand-in, 5 test batches) has finished."""
    root = tmp_path_factory.mktemp("weights")
    digits.write("cifar10", root / "data" / "cifar10.pt")
    write_params(root, EXPERIMENTS, **{"speed.channels_last": True})
    run_cli("train", "--experiment", "tiny", "--seed", "0", cwd=root)
    run_cli("train", "--experiment", "r152", "--seed", "0", cwd=root)
    return root


def recorded(study):
    return json.loads((study / "runs" / "tiny" / "seed0" / "metrics.json").read_text())


def test_evaluate_gives_exactly_the_recorded_final_errors(study):
    out = run_cli("evaluate", "--run", "runs/tiny/seed0", cwd=study)
    result = json.loads((study / "reports" / "evaluations" / "tiny-seed0.json").read_text())
    m = recorded(study)
    assert m["memory_format"] == "channels_last"
    # both BN statistics, each as recorded, and the headline the recipe (paper: after training) picks
    keys = ("test_error", "test_error_moving", "test_error_precise")
    assert result["errors"] == {k: m[k] for k in keys} and result["equal"] is True and result["tolerance"] == 0
    assert m["test_error"] == m["test_error_precise"] != m["test_error_moving"]
    assert result["weights_sha256"] == m["weights_sha256"]
    assert "equal" in out.stdout and "weights sha256 matches" in out.stdout
    # --weights: the same file, another output
    run_cli("evaluate", "--weights", "runs/tiny/seed0/model.pt", "--out", "elsewhere.json", cwd=study)
    assert json.loads((study / "elsewhere.json").read_text())["errors"] == result["errors"]


def test_metrics_carry_the_sha256_of_the_weights_file(study):
    weights = study / "runs" / "tiny" / "seed0" / "model.pt"
    assert recorded(study)["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()


@pytest.mark.parametrize("args, says", [
    (["--run", "runs/nothing/seed0"], "runs/nothing/seed0: no such folder"),
    (["--run", "runs/r152/seed0"], "status 'not_run': not run: set data.imagenet.root"),
    (["--run", "runs/half/seed0"], "has no metrics.json: not a finished run"),
    (["--weights", "runs/tiny/seed0/metrics.json"], "is not a model.pt written by a finished run"),
    (["--weights", "params.yaml"], "is not a model.pt written by a finished run"),
])
def test_bad_input_is_one_line_naming_what_is_wrong(study, args, says):
    (study / "runs" / "half" / "seed0").mkdir(parents=True, exist_ok=True)  # a run still training
    result = run_cli("evaluate", *args, cwd=study, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1 and says in result.stderr


def test_a_missing_dataset_says_how_to_get_it(study, tmp_path):
    shutil.copytree(study / "runs" / "tiny", tmp_path / "runs" / "tiny")  # a run downloaded without the data
    result = run_cli("evaluate", "--run", "runs/tiny/seed0", cwd=tmp_path, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "data/cifar10.pt does not exist" in result.stderr and "reproduce download" in result.stderr


def test_torch_hub_loads_the_run_weights_into_the_same_network(study, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # where a URL's download is cached
    weights = study / "runs" / "tiny" / "seed0" / "model.pt"
    state = torch.load(weights, weights_only=True)
    own = build_model(**state["config"]["model"])
    own.load_state_dict(state["model"])
    hub = torch.hub.load(str(REPO), "preact_resnet", source="local", depth=8, dataset="cifar10",
                         unit="full_preact", block="basic", weights=str(weights))
    x = torch.randn(16, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    from_url = torch.hub.load(str(REPO), "preact_resnet", source="local", depth=8, dataset="cifar10",
                              block="basic", weights=weights.as_uri())
    with torch.no_grad():
        assert not hub.training and torch.equal(hub(x), own.eval()(x)) and torch.equal(from_url(x), hub(x))
    with pytest.raises(UserError, match=r"unit: asked 'original', weights 'full_preact'"):
        torch.hub.load(str(REPO), "preact_resnet", source="local", depth=8, dataset="cifar10", unit="original",
                       block="basic", weights=str(weights))
    with pytest.raises(UserError, match="pass block="):  # 8 is no depth of the paper's: block can't be guessed
        torch.hub.load(str(REPO), "preact_resnet", source="local", depth=8, dataset="cifar10")
    assert torch.hub.load(str(REPO), "preact_resnet", source="local", depth=164, dataset="cifar10").spec.block \
        == "bottleneck"


# dvc.yaml's artifacts

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
