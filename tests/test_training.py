"""The training engine: a run from the CLI, exact resume after SIGKILL, failed runs, determinism, DDP."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
import torch

from conftest import N_TEST, committed_params, make_archive, make_imagenet, run_cli, write_params
from reproduce.config import load_params, run_config
from reproduce.data import digits
from reproduce.training.loop import train
from reproduce.training.optim import make_optimizer
from reproduce.training.schedule import lr_at
from reproduce.models import build_model
from reproduce.models.shortcuts import Gate
from reproduce.training.train import writable

TINY = {"tiny": {"dataset": "cifar10", "depth": 8, "block": "basic", "unit": "full_preact"}}


@pytest.fixture
def study(tmp_path):
    """A folder with params.yaml (tiny protocol) and real images (scikit-learn's digits) as CIFAR-10."""
    digits.write("cifar10", tmp_path / "data" / "cifar10.pt")
    write_params(tmp_path, TINY)
    return tmp_path


def metrics(run):
    m = json.loads((Path(run) / "metrics.json").read_text())
    m.pop("wall_s", None)
    return m


def curves(folder):
    """DVCLive's TSVs of one run: CURVES/EXPERIMENT/seedSEED (the CLI) or RUN/curves (`train()`)."""
    folder = Path(folder) / "plots" / "metrics"
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*.tsv"))}


def test_schedule_is_the_papers():
    p = load_params(committed_params()).cifar.model_dump()
    assert [lr_at(i, p, p["milestones"]) for i in (0, 399, 400, 31999, 32000, 48000, 63999)] == \
        pytest.approx([0.01, 0.01, 0.1, 0.1, 0.01, 0.001, 0.001])


def test_a_run_from_a_generated_archive_through_the_cli(tmp_path):
    (tmp_path / "raw").mkdir()
    path, md5, _ = make_archive("cifar10", tmp_path / "raw")
    write_params(tmp_path, TINY, **{"data.raw": "raw", "data.cifar10.md5": md5})
    run_cli("download", "--dataset", "cifar10", cwd=tmp_path)
    out = run_cli("train", "--experiment", "tiny", "--seed", "0", cwd=tmp_path)
    run = tmp_path / "runs" / "tiny" / "seed0"
    m = metrics(run)
    assert m["status"] == "finished" and m["iterations"] == 40 and m["precision"] == "fp32" and m["recipe"] == "paper"
    assert 0 <= m["test_error"] <= 100 and m["train_loss"] > 0 and m["params"] > 0
    c = curves(tmp_path / "curves" / "tiny" / "seed0")
    assert c["train/loss.tsv"].splitlines()[0] == "step\tloss" and len(c["train/loss.tsv"].splitlines()) == 1 + 8
    assert [line.split("\t")[0] for line in c["test/error.tsv"].splitlines()[1:]] == ["20", "40"]
    # What the verdicts' noise is made of: the images each error was measured on; "early": the first
    # eighth of training (here iterations 1-5, the first log window).
    step, loss = c["train/loss.tsv"].splitlines()[1].split("\t")
    assert m["test_images"] == N_TEST and m["train_loss_early"] == pytest.approx(float(loss))
    assert int(step) == 5 and m["train_images_early"] == m["train_images"] > 0  # one 5-step window each
    weights = torch.load(run / "model.pt", weights_only=False)
    assert weights["status"] == "finished" and weights["config"]["model"]["depth"] == 8
    assert "it/s" in out.stderr  # the progress bar
    assert not (tmp_path / "metrics").exists()  # one seed of five writes only its own run's files
    again = run_cli("train", "--experiment", "tiny", "--seed", "0", "--metrics", "metrics/tiny.json", cwd=tmp_path)
    assert "nothing to do" in again.stdout and metrics(run) == m
    assert json.loads((tmp_path / "metrics" / "tiny.json").read_text())["seed0"]["test_error"] == m["test_error"]
    # DVC empties a stage's outputs before running it again: the run comes back from its last
    # checkpoint, whole, without training.
    shutil.rmtree(tmp_path / "runs")
    shutil.rmtree(tmp_path / "curves")
    again = run_cli("train", "--experiment", "tiny", "--seed", "0", cwd=tmp_path)
    assert "resuming from iteration 40" in again.stdout and metrics(run) == m
    assert curves(tmp_path / "curves" / "tiny" / "seed0") == c


def test_an_imagenet_run_on_a_generated_folder(tmp_path):
    make_imagenet(tmp_path / "imagenet")
    write_params(tmp_path, {"r50": {"dataset": "imagenet", "depth": 50, "unit": "full_preact"}},
                 **{"data.imagenet.root": str(tmp_path / "imagenet"), "imagenet.epochs": 1,
                    "imagenet.milestones": [1], "imagenet.batch_size": 4, "imagenet.bn_batch": 2, "imagenet.workers": 0,
                    "imagenet.log_every": 1, "imagenet.checkpoint_every": 1, "imagenet.eval_batch_size": 4})
    run_cli("train", "--experiment", "r50", "--seed", "0", cwd=tmp_path)
    m = metrics(tmp_path / "runs" / "r50" / "seed0")
    assert m["status"] == "finished" and m["iterations"] == 2
    assert all(0 <= m[f"test_top{k}_center{c}"] <= 100 for k in (1, 5) for c in (224, 320))


def test_imagenet_runs_without_a_root_are_not_run(study):
    write_params(study, {"r152": {"dataset": "imagenet", "depth": 152, "unit": "original"}})
    run_cli("train", "--experiment", "r152", "--seed", "0", cwd=study)
    m = metrics(study / "runs" / "r152" / "seed0")
    assert m["status"] == "not_run" and "data.imagenet.root" in m["reason"]


def apart(out):
    """CLI options putting a run wholly under OUT*: OUT/seedSEED, OUT-curves/seedSEED, OUT-ck, OUT.json."""
    return ["--out", out, "--curves", f"{out}-curves", "--checkpoint-dir", f"{out}-ck", "--metrics", f"{out}.json"]


def _start(study, out):
    cmd = [sys.executable, "-m", "reproduce", "train", "--experiment", "tiny", "--seed", "0", *apart(out)]
    return subprocess.Popen(cmd, cwd=study, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.parametrize("kill_after", [1, 2])  # the first checkpoint, or one later
def test_sigkill_then_resume_ends_bit_identical(study, kill_after):
    assert _start(study, "runs/reference").wait() == 0
    proc = _start(study, "runs/killed")
    checkpoints = study / "runs" / "killed-ck"
    deadline = time.time() + 120
    while time.time() < deadline:  # kill it while it trains, right after a checkpoint landed
        found = list(checkpoints.glob("*.pt"))
        if found and torch.load(found[0], weights_only=False)["iteration"] >= 10 * kill_after:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (study / "runs" / "killed" / "seed0" / "metrics.json").exists()
    assert _start(study, "runs/killed").wait() == 0
    assert metrics(study / "runs" / "killed" / "seed0") == metrics(study / "runs" / "reference" / "seed0")
    assert curves(study / "runs" / "killed-curves" / "seed0") == curves(study / "runs" / "reference-curves" / "seed0")


def test_a_diverging_run_is_recorded_as_failed_and_exits_0(study):
    write_params(study, {"boom": {**TINY["tiny"], "protocol": {"lr": 1.0e+30, "warmup_iterations": 0}}})
    result = run_cli("train", "--experiment", "boom", "--seed", "0", cwd=study)
    m = metrics(study / "runs" / "boom" / "seed0")
    assert result.returncode == 0 and "failed at iteration" in result.stdout
    assert m["status"] == "failed" and 1 <= m["failed_at"] <= 40 and "test_error" not in m
    again = run_cli("train", "--experiment", "boom", "--seed", "0", cwd=study)  # recorded: never retried
    assert "nothing to do" in again.stdout
    shutil.rmtree(study / "runs")  # as DVC does before running the stage again: the checkpoint says failed
    again = run_cli("train", "--experiment", "boom", "--seed", "0", cwd=study)
    assert "resuming from iteration 40" in again.stdout and metrics(study / "runs" / "boom" / "seed0") == m


def test_same_seed_same_result_other_seed_not(study, monkeypatch):
    params = load_params(study / "params.yaml")
    cfg = run_config(params, "tiny")
    monkeypatch.chdir(study)
    a, b, c = (train(cfg, seed, params.speed, Path(f"runs/{name}"), Path("ck"))
               for name, seed in (("a", 0), ("b", 0), ("c", 1)))
    assert {k: v for k, v in a.items() if k != "wall_s"} == {k: v for k, v in b.items() if k != "wall_s"}
    assert a["train_loss"] != c["train_loss"]


@pytest.mark.parametrize("speed", [dict(precision="fp32", channels_last=False),
                                   dict(precision="bf16", channels_last=True, compile="reduce-overhead")],
                         ids=["fp32", "compiled"])
def test_speed_knobs_train_and_are_recorded(study, speed):
    write_params(study, TINY, **{f"speed.{k}": v for k, v in speed.items()}, **{"cifar.iterations": 10,
                                                                             "cifar.eval_every": 10})
    run_cli("train", "--experiment", "tiny", "--seed", "0", cwd=study)
    m = metrics(study / "runs" / "tiny" / "seed0")
    assert m["status"] == "finished" and m["precision"] == speed["precision"]


def _weights(run):
    return torch.load(Path(run) / "model.pt", weights_only=False)["model"]


def _losses(curves_dir):
    rows = curves(curves_dir)["train/loss.tsv"].splitlines()[1:]
    return torch.tensor([float(r.split("\t")[1]) for r in rows], dtype=torch.float64)


@pytest.mark.parametrize("bn_batch,checkpointing", [(16, False), (32, False), (16, True)],
                         ids=["bn-group-per-process", "bn-group-across-processes", "activation-checkpointing"])
def test_two_gloo_processes_train_like_one(study, bn_batch, checkpointing):
    """The same global batch of 32, split over two processes, with BN over groups of `bn_batch`: the same
    arithmetic as one process (BN per group, gradients averaged), so the same losses and final weights up to
    rounding. In fp64 (here) they agree to ~1e-15 relative after 40 iterations. In fp32 they agree to ~1e-7 for the
    first iterations, then training amplifies the rounding about tenfold every few iterations (to ~1e-3 in
    the loss by iteration 40): chaos, not a difference in the arithmetic, as fp64 shows."""
    write_params(study, {"tiny": {**TINY["tiny"], "activation_checkpointing": checkpointing}},
                 **{"cifar.bn_batch": bn_batch, "speed.precision": "fp64"})
    run_cli("train", "--experiment", "tiny", "--seed", "0", *apart("runs/one"), cwd=study)
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    done = subprocess.run([torchrun, "--standalone", "--nproc-per-node", "2", "-m", "reproduce", "train",
                           "--experiment", "tiny", "--seed", "0", *apart("runs/two")], cwd=study, capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = metrics(study / "runs" / "one" / "seed0"), metrics(study / "runs" / "two" / "seed0")
    assert two["status"] == "finished" and two["processes"] == 2 and one["processes"] == 1
    torch.testing.assert_close(_losses(study / "runs" / "two-curves" / "seed0"),
                               _losses(study / "runs" / "one-curves" / "seed0"), rtol=1e-9, atol=1e-10)
    a, b = _weights(study / "runs" / "one" / "seed0"), _weights(study / "runs" / "two" / "seed0")
    assert a.keys() == b.keys()
    for name in a:  # running statistics included: the first group's, broadcast from rank 0
        torch.testing.assert_close(b[name], a[name], rtol=1e-9, atol=1e-10, msg=lambda m: f"{name}: {m}")
    assert one["test_error"] == two["test_error"]


def test_a_two_process_dropout_run_resumes_each_process_own_random_stream(study):
    """The dropout shortcut draws its masks from each process's own RNG (rank 0's is a single process's):
    killed after a checkpoint and resumed, a two-process run ends with an uninterrupted one's weights,
    because every process restores its own RNG state, not rank 0's."""
    write_params(study, {"tiny": {**TINY["tiny"], "unit": "original", "shortcut": "dropout"}},
                 **{"cifar.iterations": 300, "cifar.milestones": [150, 250], "cifar.eval_every": 150})
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def start(out):
        return subprocess.Popen([*torchrun, "-m", "reproduce", "train", "--experiment", "tiny", "--seed", "0",
                                 *apart(out)], cwd=study, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)

    assert start("runs/whole").wait() == 0
    proc = start("runs/killed")
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        found = list((study / "runs" / "killed-ck").glob("*.pt"))
        if found and torch.load(found[0], weights_only=False)["iteration"] >= 10:
            break
        time.sleep(0.05)
    tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]  # torchrun, its processes
    for p in tree:
        p.kill()
    psutil.wait_procs(tree, timeout=30)
    proc.wait()
    saved = torch.load(next((study / "runs" / "killed-ck").glob("*.pt")), weights_only=False)
    assert saved["iteration"] < 300  # killed while it trained
    assert len(saved["rng"]) == 2 and not torch.equal(saved["rng"][0]["torch"], saved["rng"][1]["torch"])
    assert start("runs/killed").wait() == 0
    a, b = _weights(study / "runs" / "whole" / "seed0"), _weights(study / "runs" / "killed" / "seed0")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("experiment,form", [("t1_exclusive_gate_b6", "caffe"), ("r1001_full_preact_b64", "nesterov")])
def test_the_optimizer_follows_the_recipe_and_spares_the_gates_bias(experiment, form):
    """Caffe's solver (paper recipe): plain momentum; fb.resnet.torch train.lua: Nesterov. Weight decay on
    every parameter (train.lua), BN's gamma/beta included, but not on Table 1's b_g."""
    cfg = run_config(load_params(committed_params()), experiment)
    model = build_model(**{**cfg.model, "depth": 8 if cfg.model["block"] == "basic" else 11})
    opt = make_optimizer(model, cfg.protocol)
    assert opt.form == form and opt.momentum == 0.9
    decay = {id(q): g["weight_decay"] for g in opt.param_groups for q in g["params"]}
    assert len(decay) == sum(1 for _ in model.parameters())
    gates = [m for m in model.modules() if isinstance(m, Gate)]
    assert bool(gates) is experiment.startswith("t1_")
    for gate in gates:
        assert decay[id(gate.conv.bias)] == 0.0 and decay[id(gate.conv.weight)] == 1e-4
    bns = [q for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d) for q in m.parameters()]
    assert bns and all(decay[id(q)] == 1e-4 for q in bns)


def test_digits_are_learned_by_a_preact_resnet(study, monkeypatch):
    write_params(study, TINY, **{"cifar.iterations": 400, "cifar.milestones": [200, 300], "cifar.batch_size": 64,
                                 "cifar.warmup_iterations": 0, "cifar.log_every": 50, "cifar.checkpoint_every": 100,
                                 "cifar.eval_every": 400, "cifar.eval_batch_size": 500})
    params = load_params(study / "params.yaml")
    monkeypatch.chdir(study)
    m = train(run_config(params, "tiny"), 0, params.speed, Path("runs/digits"), Path("ck"))
    assert m["test_error"] <= 10.0  # ≥ 90% of 500 held-out handwritten digits


def test_an_unwritable_run_directory_is_one_clear_error(study):
    (study / "runs").mkdir()
    (study / "runs" / "tiny").write_text("a file where the run's folder should be")
    result = run_cli("train", "--experiment", "tiny", "--seed", "0", cwd=study, check=False)
    assert result.returncode == 2 and "cannot write to runs/tiny/seed0" in result.stderr
    assert "Traceback" not in result.stderr


def test_processes_check_one_folder_at_once(tmp_path):
    # A DDP run's processes all check the run's folders as they start; one's check must not undo another's
    # (a shared probe file made the torchrun test fail about one time in five).
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: writable(tmp_path / "seed0"), range(2000)))
    assert list((tmp_path / "seed0").iterdir()) == []


def test_a_checkpoint_of_another_config_is_refused(study):
    params = load_params(study / "params.yaml")
    cfg = run_config(params, "tiny")
    (study / "checkpoints").mkdir()
    foreign = {"digest": "0123456789abcdef", "iteration": 10}
    torch.save(foreign, study / "checkpoints" / f"tiny-seed0-{cfg.digest(0)}.pt")
    result = run_cli("train", "--experiment", "tiny", "--seed", "0", cwd=study, check=False)
    assert result.returncode == 2 and "different run config" in result.stderr and "refusing" in result.stderr
    assert not (study / "runs" / "tiny" / "seed0" / "metrics.json").exists()


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_run_trains_on_the_gpu(study, precision):
    write_params(study, TINY, **{"speed.device": "cuda", "speed.precision": precision})
    run_cli("train", "--experiment", "tiny", "--seed", "0", cwd=study)
    m = metrics(study / "runs" / "tiny" / "seed0")
    assert m["status"] == "finished" and m["device"] != "cpu" and m["precision"] == precision


@pytest.mark.gpu
def test_fp32_means_no_tf32_on_the_gpu():
    from reproduce.config import Speed
    from reproduce.training.speed import setup_device

    setup_device(Speed(device="cuda", precision="fp32"))
    assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    setup_device(Speed(device="cuda", precision="tf32"))
    assert torch.backends.cudnn.allow_tf32


def test_gpu_check_on_a_machine_without_a_gpu_says_so_at_once(tmp_path):
    """Exit 2, one line, and no torch import: the answer comes in well under a second on a CPU machine."""
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code = ("import sys\nfrom reproduce.cli import main\ntry:\n    main(['gpu-check'])\nexcept SystemExit as e:\n"
            "    print('torch' in sys.modules, e.code)")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert done.stdout.split() == ["False", "2"] and "no NVIDIA GPU" in done.stderr and done.stderr.count("\n") == 1
