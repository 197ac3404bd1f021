"""`bench` and `plan` run and say what they must; speeds are measured, never asserted, here."""
import json
import math

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
