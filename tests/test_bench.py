"""`bench` and `plan` run and say what they must; speeds are measured, never asserted, here."""
import json
import math

import yaml

from conftest import REPO, run_cli

CASES = {"cifar_data_pipeline", "train_resnet110", "train_resnet110_fp32", "train_resnet1001_memory"}
FIELDS = {"case", "project_img_s", "reference_img_s", "ratio", "device", "precision", "data"}


def test_bench_quick_writes_every_case(tmp_path):
    # No data/cifar10.pt in tmp_path: random images, which the output and every record must say.
    out = run_cli("bench", "--quick", "--steps", "1", "--device", "cpu", "--out", "bench.json", cwd=tmp_path)
    assert "RANDOM" in out.stdout
    records = json.loads((tmp_path / "bench.json").read_text())
    assert CASES <= {r["case"] for r in records}
    for r in records:
        assert FIELDS <= set(r), r
        assert r["device"] == "cpu" and r["data"] == "random"
        assert all(math.isfinite(r[k]) and r[k] > 0 for k in ("project_img_s", "reference_img_s", "ratio"))
    memory = next(r for r in records if r["case"] == "train_resnet1001_memory")
    assert memory["time_ratio"] > 0 and memory["batch_size"] < 128 and "not 128" in memory["note"]


def test_plan_lists_every_experiment_with_totals():
    out = run_cli("plan", "--no-measure", "--gpu", "H200", cwd=REPO).stdout
    names = yaml.safe_load((REPO / "params.yaml").read_text())["experiments"]
    lines = out.splitlines()
    for name in names:
        assert any(line.split()[:1] == [name] for line in lines), name
    for table in ("Table 1", "Table 2", "Table 3/4", "Table 5"):
        assert any(line.startswith(table) and line.rstrip().endswith(" h") for line in lines), table
    total = next(line for line in lines if line.startswith("all "))
    assert total.split()[1] == str(len(names) * 5)  # runs: every experiment x the 5 seeds
