"""The grow command under faults: signals, divergence, bad numbers, full disk, exceptions, a stalled peer."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from gromo.growth import records
from gromo.growth.cli import main

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUICK = ["--dataset", "synthetic", "--epochs", "1", "--no-plots", "--no-progress", "--line-search-samples", "64"]


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.update(extra)
    return env


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_a_signal_is_recorded_as_terminated(tmp_path, signame):
    out = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "gromo", "grow", *QUICK, "--steps", "200", "--epochs", "3", "--gain-tolerance", "0",
         "--patience", "0", "--output-dir", str(out)],
        cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if json.loads((out / "growth.json").read_text())["steps"]:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    process.send_signal(getattr(signal, signame))
    _, err = process.communicate(timeout=60)
    number = getattr(signal, signame)
    assert process.returncode == 128 + number
    assert signame in _one_line(err) and "terminated" in err
    payload = json.loads((out / "growth.json").read_text())
    assert payload["status"] == "terminated" and signame in payload["message"]
    assert payload["steps"] and all(r["test_accuracy"] is not None for r in payload["steps"])


def test_a_diverging_run_exits_3_and_keeps_the_last_finite_step(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["grow", *QUICK, "--steps", "3", "--lr", "1e30", "--output-dir", str(out)])
    assert code == 3
    line = _one_line(capsys.readouterr().err)
    assert "diverged" in line
    payload = json.loads((out / "growth.json").read_text())
    assert payload["status"] == "diverged" and "not finite" in payload["message"]
    for record in ([payload["initial"]] if payload["initial"] else []) + payload["steps"]:
        assert record["train_loss"] is not None  # only finite steps are kept


@pytest.mark.parametrize("argv, match", [
    (["--lr", "inf"], "--lr must be > 0"),
    (["--lr", "nan"], "--lr must be > 0"),
    (["--seed", "-1"], "--seed must be in"),
    (["--seed", str(2**70)], "--seed must be in"),
    (["--weight-decay", "-1"], "--weight-decay must be"),
    (["--gain-tolerance", "nan"], "--gain-tolerance must be"),
    (["--label-smoothing", "1"], "--label-smoothing must be in"),
    (["--patience", "-2"], "--patience must be >= 0"),
    (["--timeout", "0"], "--timeout must be"),
    (["--relative-threshold", "nan"], "--relative-threshold must be in"),
    (["--dataset", "missing.npz"], "does not exist"),
])
def test_arguments_are_range_checked(argv, match, capsys, tmp_path):
    assert main(["grow", "--no-plots", "--output-dir", str(tmp_path), *argv]) == 2
    captured = capsys.readouterr()
    line = _one_line(captured.err)
    assert match in line and line.startswith("gromo grow: error:") and captured.out == ""


def test_a_full_disk_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    real = records.replace_atomically
    writes = {"n": 0}

    def fill_up(path, write, **kwargs):
        writes["n"] += 1
        if writes["n"] >= 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        return real(path, write, **kwargs)

    monkeypatch.setattr(records, "replace_atomically", fill_up)
    assert main(["grow", *QUICK, "--steps", "4", "--output-dir", str(tmp_path)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "No space left on device" in line and "growth.json" in line
    payload = json.loads((tmp_path / "growth.json").read_text())  # the last complete version stays
    assert payload["status"] == "running" and len(payload["steps"]) == 1
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_an_unexpected_exception_is_recorded_as_failed(tmp_path, monkeypatch, capsys):
    from gromo.growth import loop

    def broken(*args, **kwargs):
        raise ZeroDivisionError("something inside broke")

    monkeypatch.setattr(loop, "_compute_updates", broken)
    assert main(["grow", *QUICK, "--steps", "2", "--output-dir", str(tmp_path)]) == 1
    line = _one_line(capsys.readouterr().err)
    assert "failed" in line and "ZeroDivisionError: something inside broke" in line
    payload = json.loads((tmp_path / "growth.json").read_text())
    assert payload["status"] == "failed" and payload["message"] == "ZeroDivisionError: something inside broke"


def test_files_follow_the_umask(tmp_path):
    pytest.importorskip("matplotlib")
    previous = os.umask(0o022)
    try:
        argv = ["grow", *QUICK, "--steps", "1", "--output-dir", str(tmp_path / "a"), "--quiet"]
        argv.remove("--no-plots")
        assert main(argv) == 0
    finally:
        os.umask(previous)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "a").iterdir()}
    assert len(modes) == 7 and set(modes.values()) == {0o644}, modes


def test_a_stalled_rank_ends_every_process_within_the_timeout(tmp_path):
    timeout = 10
    out = tmp_path / "run"
    start = time.monotonic()
    process = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "gromo", "grow",
         *QUICK, "--steps", "2", "--timeout", str(timeout), "--output-dir", str(out)],
        cwd=REPO, env=_env(GROMO_TEST_STALL_RANK="1", GROMO_TEST_STALL_SECONDS="600"),
        capture_output=True, text=True, timeout=timeout + 120, check=False,
    )
    elapsed = time.monotonic() - start
    assert elapsed < timeout + 30, elapsed
    assert process.returncode != 0
    ours = [line for line in process.stderr.splitlines() if line.startswith("gromo grow:")]
    assert len(ours) == 1 and "distributed: worker 0 of 2" in ours[0]
    payload = json.loads((out / "growth.json").read_text())
    assert payload["status"] == "failed" and "distributed" in payload["message"]
