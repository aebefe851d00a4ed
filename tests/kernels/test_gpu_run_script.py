"""bench/gpu.sh's steps (bench/gpu_micro.py): the plan fits 7 minutes, results stream line by line."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def micro():
    spec = importlib.util.spec_from_file_location("bench_gpu_micro", REPO / "bench" / "gpu_micro.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_plan_fits_seven_minutes(micro):
    plan = micro.plan(14)
    assert plan["total"] <= 420 and plan["budget"] == 420
    assert plan["steps"]["pairs"] > 0
    assert plan["jobs"] == len(micro.WARM_STATS) * len(micro.MODES) * len(micro.WARM_DTYPES)
    # Fewer processes: the warm-up alone no longer fits, and the plan says so.
    assert micro.plan(2)["steps"]["warmup"] > 420


def test_each_result_is_on_disk_when_emitted(micro, tmp_path, capsys):
    results = micro.Results(tmp_path)
    results.emit("micro", D=577, ms=1.5)
    assert json.loads((tmp_path / "results.jsonl").read_text()) == {"step": "micro", "D": 577, "ms": 1.5}
    results.emit("micro", D=1153, ms=2.5)
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert [json.loads(x)["D"] for x in lines] == [577, 1153]
    assert capsys.readouterr().out.count('"step": "micro"') == 2


def test_plan_step_writes_its_line(micro, tmp_path):
    assert micro.main(["plan", "--out", str(tmp_path), "--processes", "14"]) == 0
    record = json.loads((tmp_path / "results.jsonl").read_text())
    assert record["step"] == "plan" and record["total"] <= 420


def test_unknown_mode_is_refused(micro, tmp_path):
    with pytest.raises(SystemExit):
        micro.main(["plan", "--out", str(tmp_path), "--modes", "fp8"])


def test_gpu_sh_streams_into_out_and_takes_its_options():
    text = (REPO / "bench" / "gpu.sh").read_text()
    for option in ("--smoke", "--deadline", "--modes", "--out"):
        assert option in text
    assert 'OUT_DIR="${OUT:-' in text and "tee -a" in text
