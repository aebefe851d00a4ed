"""Benchmark options, the Full n=64 switch, and the ours-vs-GroMo table printed at the end of a run.

    pytest bench/                                   every case except Full n=64
    pytest bench/ --full64                          every case
    pytest bench/ --full64 -k full_n64              only Full n=64 (GroMo: ~40 s, ~5 GiB per call)
    pytest bench/ --stats-table bench/results/x.md  also write the table (and x.json beside it)
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
from pathlib import Path

import pytest
import torch

# The speed/memory targets of the issue, shown beside the measurements (never asserted: the
# development machine is shared, timings there are indicative).
TARGETS = {
    "linear": "time ratio ≥ 1 (no slower)",
    "restricted_n64": "time ratio ≥ 3",
    "full_n16": "time ratio ≥ 20",
    "full_n64": "time ratio ≥ 20, memory ratio ≤ 0.1",
}

_RESULTS: dict = {"runs": {}, "agreement": {}}


def pytest_addoption(parser):
    group = parser.getgroup("gromo statistics bench")
    group.addoption("--full64", action="store_true", default=False,
                    help="also run the Full conv pair at n=64 (GroMo baseline ~40 s and ~5 GiB per call)")
    group.addoption("--stats-table", default=None, metavar="PATH",
                    help="write the ours-vs-GroMo table as markdown to PATH (and JSON beside it)")


def pytest_configure(config):
    config.addinivalue_line("markers", "full64: Full conv pair at n=64; deselected unless --full64")
    # Other processes compete for the cores on a shared machine: record how busy it was.
    _RESULTS["load_at_start"] = os.getloadavg()


def pytest_collection_modifyitems(config, items):
    if config.getoption("--full64"):
        return
    kept = [item for item in items if "full64" not in item.keywords]
    dropped = [item for item in items if "full64" in item.keywords]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(scope="session")
def bench_results() -> dict:
    """Session store: runs[(case, impl)] = {time_s, peak_extra_bytes, ...}; agreement[case] = ratio."""
    return _RESULTS


def _mib(nbytes) -> str:
    return "–" if nbytes is None else f"{nbytes / 2**20:,.1f} MiB"


def _seconds(t) -> str:
    if t is None:
        return "–"
    return f"{t * 1e3:.2f} ms" if t < 1 else f"{t:.2f} s"


def _rows(results: dict):
    cases = []
    for case, _impl in results["runs"]:
        if case not in cases:
            cases.append(case)
    for case in cases:
        gromo = results["runs"].get((case, "gromo"), {})
        ours = results["runs"].get((case, "ours"), {})
        tg, to = gromo.get("time_s"), ours.get("time_s")
        ming, mino = gromo.get("min_time_s"), ours.get("min_time_s")
        mg, mo = gromo.get("peak_extra_bytes"), ours.get("peak_extra_bytes")
        yield {
            "case": case,
            "description": gromo.get("description") or ours.get("description", case),
            "gromo_time_s": tg, "ours_time_s": to,
            "time_ratio": tg / to if tg and to else None,
            "gromo_min_time_s": ming, "ours_min_time_s": mino,
            "min_time_ratio": ming / mino if ming and mino else None,
            "rounds": f"{gromo.get('rounds', '–')}/{ours.get('rounds', '–')}",
            "gromo_cpu1_time_s": gromo.get("cpu1_time_s"), "ours_cpu1_time_s": ours.get("cpu1_time_s"),
            "cpu1_ratio": (gromo["cpu1_time_s"] / ours["cpu1_time_s"]
                           if gromo.get("cpu1_time_s") and ours.get("cpu1_time_s") else None),
            "gromo_peak_extra_bytes": mg, "ours_peak_extra_bytes": mo,
            "memory_ratio": mo / mg if mg and mo is not None else None,
            "agreement": results["agreement"].get(case),
            "target": TARGETS.get(case, ""),
        }


def format_table(results: dict) -> str:
    head = ("| case | GroMo time (median / min) | ours time (median / min) | time ratio GroMo/ours "
            "(median / min) | rounds GroMo/ours | 1-thread CPU time GroMo / ours | 1-thread ratio "
            "| GroMo peak extra | ours peak extra | memory ratio ours/GroMo | agreement (max err/bound) | target |")
    lines = [head, "|" + "---|" * 12]

    def ratio(value):
        return "–" if value is None else f"{value:.1f}×"

    for r in _rows(results):
        mem = "–" if r["memory_ratio"] is None else f"{r['memory_ratio']:.3f}"
        agree = "–" if r["agreement"] is None else f"{r['agreement']:.2g}"
        lines.append(
            f"| {r['description']} | {_seconds(r['gromo_time_s'])} / {_seconds(r['gromo_min_time_s'])} | "
            f"{_seconds(r['ours_time_s'])} / {_seconds(r['ours_min_time_s'])} | "
            f"{ratio(r['time_ratio'])} / {ratio(r['min_time_ratio'])} | {r['rounds']} | "
            f"{_seconds(r['gromo_cpu1_time_s'])} / {_seconds(r['ours_cpu1_time_s'])} | {ratio(r['cpu1_ratio'])} | "
            f"{_mib(r['gromo_peak_extra_bytes'])} | {_mib(r['ours_peak_extra_bytes'])} | "
            f"{mem} | {agree} | {r['target']} |"
        )
    return "\n".join(lines)


def _machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(), "python": platform.python_version(), "git_sha": sha,
        "load_average_1_5_15_min_at_start": _RESULTS.get("load_at_start"),
        "load_average_1_5_15_min_at_end": os.getloadavg(),
    }


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not _RESULTS["runs"]:
        return
    table = format_table(_RESULTS)
    machine = _machine()
    terminalreporter.write_sep("=", "update statistics of a pair: ours (torch backend) vs GroMo baseline")
    terminalreporter.write_line(table)
    terminalreporter.write_line(
        f"{machine['cpu']}, {machine['cores']} cores, torch {machine['torch']} "
        f"({machine['torch_threads']} threads); load average at start/end "
        f"{machine['load_average_1_5_15_min_at_start']} / {machine['load_average_1_5_15_min_at_end']}; "
        "memory = peak resident bytes above the level before the call, measured in a fresh process "
        "(bench/memory.py)"
    )
    path = config.getoption("--stats-table")
    if path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(table + "\n")
        rows = [dict(r) for r in _rows(_RESULTS)]
        path.with_suffix(".json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")
