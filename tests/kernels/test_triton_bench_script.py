"""bench/gpu.py: imports anywhere, refuses clearly without CUDA, renders its report.

The benchmark itself only runs on a GPU machine (bench/gpu.sh); ``--smoke`` exercises it on CPU
under the interpreter but takes minutes, so it is not part of this suite.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu.py"


@pytest.fixture(scope="module")
def gpu_script():
    spec = importlib.util.spec_from_file_location("bench_gpu_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_refuses_without_cuda(gpu_script, capsys):
    if torch.cuda.is_available():
        # On a GPU machine main() would run the whole benchmark: check the argument parsing instead.
        args = gpu_script.parse_args(["--skip-tests", "--quick"])
        assert args.skip_tests and args.quick and not args.smoke
        return
    assert gpu_script.main(["--skip-tests"]) == 2
    assert "CUDA" in capsys.readouterr().err


def test_markdown_report(gpu_script):
    stat = {"shape": (5, 5), "gemm_flops": 1e9,
            "modes": {"ieee": {"ms": 2.0, "tflops": 0.5, "of_ceiling": 0.25, "error_over_tolerance": 0.1}}}
    result = {
        "meta": {"device": "Test GPU", "date": "2026-01-01T00:00:00Z", "torch": "2.11", "triton": "3.6",
                 "cuda": "12.8", "git_sha": "abc123"},
        "tests": {"summary": "10 passed", "returncode": 0, "seconds": 3.0},
        "ceilings": {"ieee": 2.0, "tf32": 4.0, "bf16": 8.0, "tf32x3": 4.0 / 3},
        "pairs": [{"case": "linear", "kind": "linear", "n": 8, "statistics": {"s": stat},
                   "pair": {"triton_fused_ieee": 1.0, "gromo_baseline": 4.0}}],
        "sweep": [{"D": 65, "S": {"triton_ieee": 2.0}, "M": {"triton_ieee": 1.0},
                   "tflops_S": {"triton_ieee": 0.5}, "tflops_M": {"triton_ieee": 0.25}}],
    }
    text = gpu_script.markdown(result)
    assert "Test GPU" in text and "abc123" in text
    assert "| s | (5, 5) | 2.000 (0.5, 25%, 0.1) |" in text
    assert "| triton_fused_ieee | 1.000 | 4.0× |" in text
    assert "| 65 | 2.000 (0.5) |" in text
    assert gpu_script.tflops(2e12, 1000.0) == pytest.approx(2.0)


def test_solves_section_runs_on_cpu_smoke_shapes(gpu_script):
    """bench/gpu_solves.py end to end on tiny shapes: every path timed, ours accurate where the
    GroMo-style loop is not (mixed scenario), and the report renders it."""
    solves = gpu_script._gpu_solves()
    record = solves.bench_solves(torch.device("cpu"), lambda fn: (fn(), 1.0)[1], smoke=True)
    network = {(r["scenario"], r["path"]): r for r in record["network"]}
    assert len(network) == 8
    for scenario in ("healthy", "mixed"):
        for path in ("ours fp64, one block", "ours fp64, no block", "ours dtype=float32, one block"):
            assert network[(scenario, path)]["delta"] < 1e-4
    assert network[("mixed", "GroMo-style loop")]["delta"] > 1e-2
    assert {r["D"] for r in record["decompositions"]} == {9, 33}
    text = "\n".join(solves.markdown_solves(record))
    assert "| mixed | ours fp64, one block | 1.00 | 1.00× |" in text
    assert "| 33 | float64 | 1.00 | 1.00 | 1.00 | 1.00 |" in text
