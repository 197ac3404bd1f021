"""`bench`, `plan` and `gpu-check` run and say what they must; speeds are measured, never asserted, here."""
import json
import math
import sys
import time
from pathlib import Path

import pytest

import torch

from conftest import REPO, committed_params, run_cli
from reproduce.training.speed import native_bf16
from reproduce.config import load_params
from reproduce.cost.plan import table_of

CASES = {"cifar_data_pipeline", "train_resnet110", "train_resnet110_layout", "train_resnet1001_memory"}
FIELDS = {"case", "project_img_s", "reference_img_s", "ratio", "device", "precision", "data", "machine", "date"}


def test_bench_quick_writes_every_case(tmp_path):
    # No data/cifar10.pt in tmp_path: random images, which the output and every record must say.
    out = run_cli("bench", "--quick", "--steps", "1", "--deep-batch", "4", "--device", "cpu", "--out", "bench.json",
                  cwd=tmp_path)
    assert "RANDOM" in out.stdout
    records = json.loads((tmp_path / "bench.json").read_text())
    assert CASES <= {r["case"] for r in records}
    for r in records:
        assert FIELDS <= set(r), r
        assert r["device"] == "cpu" and r["data"] == "random"
        assert all(math.isfinite(r[k]) and r[k] > 0 for k in ("project_img_s", "reference_img_s", "ratio"))
    memory = next(r for r in records if r["case"] == "train_resnet1001_memory")
    assert memory["time_ratio"] > 0 and memory["batch_size"] == 4 and "not 128" in memory["note"]
    default = next(r for r in records if r["case"] == "train_resnet110")
    assert default["precision"].startswith("fp32")  # the default path: fp32, never bf16 chosen silently
    bf16 = [r for r in records if r["case"] == "train_resnet110_bf16"]
    assert bool(bf16) is native_bf16(torch.device("cpu")) and ("bf16: not measured" in out.stdout) is not bool(bf16)


def test_a_target_is_judged_by_the_interval_of_paired_ratios():
    """Each round's ratio of two sides' times, their median and order-statistic interval; a bound inside
    the interval decides nothing."""
    from reproduce.cost.bench import check
    from reproduce.cost.timing import paired_ratio

    r = paired_ratio([2.0, 2.2, 1.8, 2.0, 3.0], [1.0, 2.0, 1.5, 1.0, 2.0])  # ratios 2, 1.1, 1.2, 2, 1.5
    assert r["ratio"] == 1.5 and r["interval"] == [1.1, 2.0] and r["coverage"] == 1 - 2 / 2 ** 5
    assert paired_ratio([1.0], [2.0]) == {"ratio": 0.5, "interval": None, "coverage": 0.0}

    def outcome(ratio, interval):
        record = {"case": "train_resnet110_one_bn", "device": "cpu", "ratio": ratio, "interval": interval}
        return [o for _, o in check(record)]
    assert outcome(0.97, [0.96, 0.99]) == ["met"]
    assert outcome(0.90, [0.85, 0.94]) == ["NOT met"]
    assert outcome(0.97, [0.90, 1.02]) == ["undecided"]  # the median meets it; the rounds cannot tell
    assert outcome(0.97, None) == ["met"]  # one round: the value alone
    memory = {"case": "train_resnet1001_memory", "device": "cpu", "ratio": 4.1, "time_ratio": 1.3,
              "time_interval": [1.35, 1.5]}
    assert [o for _, o in check(memory)] == ["met", "undecided"]  # peak memory is no timing: no interval


def test_plan_lists_every_experiment_with_totals():
    out = run_cli("plan", "--no-measure", "--gpu", "H200", "--params", committed_params(), cwd=REPO).stdout
    params = load_params(committed_params())
    lines = out.splitlines()
    for name in params.all_experiments():
        assert any(line.split()[:1] == [name] for line in lines), name
    tables = {table_of(name, exp.dataset, name in params.custom) for name, exp in params.all_experiments().items()}
    for table in tables:
        assert any(line.startswith(f"{table} ") and line.split()[-1] in ("h", "min", "s") for line in lines), table
    total = next(line for line in lines if line.startswith("all "))
    assert int(total.split()[1]) == sum(len(params.seeds_of(name)) for name in params.all_experiments())  # runs


def test_bench_takes_random_images_over_the_smoke_stand_in(tmp_path):
    """After the smoke study data/cifar10.pt holds 8x8 digits: bench must not time CIFAR code on them."""
    from reproduce.cost.bench import images
    from reproduce.data import digits

    digits.write("cifar10", tmp_path / "cifar10.pt")
    x, y, data = images(tmp_path / "cifar10.pt")
    assert data == "random" and tuple(x.shape) == (50000, 3, 32, 32) and len(y) == 50000


def test_gpu_check_keeps_every_section_when_one_crashes_hangs_or_runs_out_of_memory(tmp_path, monkeypatch, capfd):
    """Each section runs in a child process of its own session: one that segfaults, one out of memory
    and one that hangs (with a process of its own) keep the figures they had, the sections after them
    still run, nothing they started survives, and the last line names the failed sections."""
    from reproduce.cost import gpucheck

    monkeypatch.setenv("PYTHONPATH", str(REPO / "tests"))
    out, fake = tmp_path / "gpu-check.json", "gpucheck_sections:"
    functions = {"tests": fake + "fine", "sync": fake + "crash", "speed": fake + "out_of_memory",
                 "packing": fake + "hang", "ddp": (fake + "fine", {})}
    started = time.monotonic()
    record = gpucheck.run_sections(functions, out, budget_s=120, record={"gpu": "test"}, limits={"packing": 8})
    assert time.monotonic() - started < 60
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(record))
    assert saved["tests"]["img_s"] == 1.0 and saved["ddp"]["passed"]
    assert saved["sync"]["rates"] == [1.0] and saved["sync"]["error"] == "killed by SIGSEGV"
    assert saved["speed"]["rates"] == [2.0] and saved["speed"]["error"].startswith("OutOfMemoryError")
    assert saved["packing"]["error"].startswith("timed out after 8 s")
    pid = saved["packing"]["pid"]
    time.sleep(0.5)
    assert not Path(f"/proc/{pid}").exists() or "\tZ" in Path(f"/proc/{pid}/status").read_text()
    assert capfd.readouterr().out.strip().splitlines()[-1] == "gpu-check: FAIL (sections sync, speed, packing)"
    skipped = gpucheck.run_sections({"tests": fake + "fine"}, out, budget_s=0.5, record={})
    assert "budget" in skipped["tests"]["skipped"]


def test_gpu_check_help_lists_its_sections_and_budget():
    from reproduce.cost.gpucheck import BUDGET_S, SECTIONS

    out = run_cli("gpu-check", "--help", cwd=REPO).stdout
    assert f"{BUDGET_S} s" in out and all(name in out for name, _, _ in SECTIONS)


def test_gpu_check_starts_torchrun_from_this_python():
    from reproduce.cost.gpu_sections import launcher

    assert launcher(2)[:3] == [sys.executable, "-m", "torch.distributed.run"] and launcher(2)[-1] == "2"


@pytest.fixture
def tiny_networks(monkeypatch):
    from reproduce.cost import gpu_sections

    monkeypatch.setattr(gpu_sections, "NETWORKS", {
        "resnet8": (dict(dataset="cifar10", depth=8, block="basic", unit="original"), 16, 8, 32),
        "imagenet_resnet50": (dict(dataset="imagenet", depth=50, unit="full_preact"), 2, 2, 64)})
    monkeypatch.setattr(gpu_sections, "STEPS", 2)
    return gpu_sections


def test_gpu_check_sections_run_the_training_code_on_any_device(tiny_networks, monkeypatch):
    """On the CPU (no figures that mean anything): the speed section times each network and turns the
    rates into hours per run of params.yaml; the hot-loop section runs BN groups across a process group."""
    found, synced = {}, {}
    assert tiny_networks.speed(60, found, device="cpu", precisions=("fp32",), params=committed_params()) == {}
    assert {r["network"] for r in found["rates"]} == {"resnet8", "imagenet_resnet50"}
    assert all(r["img_s"] > 0 and r["estimate_gib"] > 0 for r in found["rates"]) and found["study_gpu_hours"] > 0
    assert set(found["hours_per_run"]) == set(load_params(committed_params()).experiments)
    assert tiny_networks.no_host_sync(60, synced, device="cpu", iterations=2)["passed"]
    assert "resnet8 (BN across processes, NCCL)" in synced["networks"]


def test_a_run_that_cannot_fit_its_gpu_is_refused_with_the_fixes(monkeypatch):
    from reproduce.config import run_config
    from reproduce.errors import UserError
    from reproduce.training.memory import check_fits

    free = {"gib": 39.5}
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free["gib"] * 2**30, 40 * 2**30))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA A100-SXM4-40GB")
    params = load_params(committed_params())
    cfg = run_config(params, "in_r200_full_preact")
    with pytest.raises(UserError) as e:
        check_fits(cfg, torch.device("cuda", 0), world=1)
    said = str(e.value)
    assert "in_r200_full_preact needs about" in said and "36.0 GiB" in said  # 90% of 40
    assert "activation_checkpointing: true" in said and "torchrun --nproc-per-node 2" in said
    check_fits(cfg, torch.device("cuda", 0), world=8)  # 32 images a GPU fit
    check_fits(cfg, torch.device("cpu"), world=1)  # a CPU is not checked
    deep = run_config(params, "r1001_full_preact")
    check_fits(deep, torch.device("cuda", 0), world=1)  # ResNet-1001 alone fits 40 GB...
    with pytest.raises(UserError, match=r"each of the 4 runs sharing it.*launch.runs_per_gpu: 3 or fewer"):
        check_fits(deep, torch.device("cuda", 0), world=1, sharing=4)  # ...four of them do not
    free["gib"] = 10  # another program holds the rest
    with pytest.raises(UserError, match="has 9.4 GiB"):
        check_fits(deep, torch.device("cuda", 0), world=1)


def test_a_runs_memory_counts_what_its_process_keeps_on_the_gpu():
    """ResNet-110 at the paper's batch: its network's memory, then the CIFAR set as CifarStream keeps it
    (50,000 padded 40x40 images and their flips, 10,000 test images: 1.9 GB in fp32), cuDNN's
    workspace and the CUDA context."""
    from reproduce.training.memory import CUDA_CONTEXT, CUDNN_WORKSPACE, data_bytes, process_bytes, run_bytes

    r110 = dict(dataset="cifar10", depth=110, block="basic", unit="original")
    assert data_bytes("cifar10", 32, "fp32") == (50000 * 2 * 40 * 40 + 10000 * 32 * 32) * 3 * 4  # 2.04e9
    assert data_bytes("cifar10", 32, "bf16") * 2 == data_bytes("cifar10", 32, "fp32")
    assert data_bytes("imagenet", 224, "fp32") == 0
    network = run_bytes(r110, 128, 32, "fp32")
    assert 8.07 * 2**20 * 128 < network < 1.2 * 8.07 * 2**20 * 128  # activations, then gradients and weights
    assert process_bytes(r110, 128, 32, "fp32") == network + data_bytes("cifar10", 32, "fp32") + \
        CUDNN_WORKSPACE + CUDA_CONTEXT
