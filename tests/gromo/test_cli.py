"""The ``python -m gromo grow`` command: bad input → one line + exit code 2; a small run end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from gromo.growth.cli import main

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize(
    "argv, match",
    [
        (["grow", "--model", "transformer"], "unknown model 'transformer'"),
        (["grow", "--dataset", "imagenet"], "unknown dataset 'imagenet'"),
        (["grow", "--steps", "-1"], "--steps must be >= 0"),
        (["grow", "--neurons-per-step", "0"], "--neurons-per-step must be >= 1"),
        (["grow", "--batch-size", "0"], "--batch-size must be >= 1"),
        (["grow", "--initial-width", "-2"], "--initial-width must be >= 0"),
        (["grow", "--val-fraction", "0.95"], "--val-fraction must be in"),
        (["grow", "--lr", "0"], "--lr must be > 0"),
        (["grow", "--steps", "many"], "argument --steps: invalid int value"),
        (["grow", "--unknown-flag"], "unrecognized arguments: --unknown-flag"),
        (["grow", "--device", "cuda:7"], "device 'cuda:7'"),
        (["grow", "--device", "tpu"], "device 'tpu'"),
        (["grow", "--backend", "cuda"], "unknown backend 'cuda'"),
        (["grow", "--model", "cnn", "--dataset", "synthetic", "--no-plots", "--output-dir", "{tmp}"], "model 'cnn' needs image data"),
        ([], "missing command"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(argv, match, capsys, tmp_path):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert match in lines[0] and lines[0].startswith("gromo")
    assert "Traceback" not in captured.err and captured.out == ""


def test_missing_optional_dependency_is_one_line(monkeypatch, capsys, tmp_path):
    import importlib.util

    real_find_spec = importlib.util.find_spec

    def without_sklearn(name, *args, **kwargs):
        return None if name.split(".")[0] == "sklearn" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", without_sklearn)
    assert main(["grow", "--no-plots", "--output-dir", str(tmp_path), "--steps", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs scikit-learn" in err[0]


def test_module_entry_point_exit_code_without_traceback():
    process = subprocess.run(
        [sys.executable, "-m", "gromo", "grow", "--dataset", "mnist"], cwd=REPO, capture_output=True, text=True,
    )
    assert process.returncode == 2
    assert process.stderr.strip() == "gromo grow: error: unknown dataset 'mnist'; choose one of digits, synthetic"


def test_small_run_writes_json_and_plots(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "run"
    code = main([
        "grow", "--dataset", "synthetic", "--steps", "3", "--epochs", "1", "--neurons-per-step", "4",
        "--hidden-layers", "2", "--line-search-samples", "64", "--output-dir", str(out), "--no-progress",
        "--seed", "3",
    ])
    assert code == 0
    stdout = capsys.readouterr().out
    assert "step" in stdout.splitlines()[0] and "best test accuracy" in stdout
    payload = json.loads((out / "growth.json").read_text())
    assert payload["status"] == "finished"
    assert len(payload["steps"]) == 3
    assert payload["initial"]["step"] == 0
    for record in payload["steps"]:
        assert 0.0 <= record["test_accuracy"] <= 1.0
        for key in ("layer", "neurons_added", "first_order_gain", "scale", "train_loss_before", "train_loss",
                    "parameters", "time_statistics", "time_solves", "time_line_search", "time_training"):
            assert key in record
        if record["layer"] is not None:
            assert record["scale"] > 0 and 1 <= record["neurons_added"] <= 4
    grown = [r for r in payload["steps"] if r["layer"] is not None]
    assert grown, "no step grew the network"
    assert payload["steps"][-1]["parameters"] > payload["initial"]["parameters"]
    assert payload["summary"]["best_test_accuracy"] >= payload["initial"]["test_accuracy"]
    for name in ("accuracy_vs_parameters.png", "widths.png", "first_order_gain.png", "singular_values.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_missing_matplotlib_is_one_line(monkeypatch, capsys, tmp_path):
    import importlib.util

    real_find_spec = importlib.util.find_spec

    def without_matplotlib(name, *args, **kwargs):
        return None if name.split(".")[0] == "matplotlib" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", without_matplotlib)
    assert main(["grow", "--dataset", "synthetic", "--output-dir", str(tmp_path), "--steps", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "plots need matplotlib" in err[0] and "--no-plots" in err[0]


def test_interrupted_run_leaves_valid_json(monkeypatch, capsys, tmp_path):
    import gromo.growth.loop as loop

    real_train = loop.train_epochs
    calls = {"n": 0}

    def train_then_interrupt(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # initial training, step 1 training, then Ctrl-C during step 2's training
            raise KeyboardInterrupt
        return real_train(*args, **kwargs)

    monkeypatch.setattr(loop, "train_epochs", train_then_interrupt)
    code = main([
        "grow", "--dataset", "synthetic", "--steps", "5", "--epochs", "1", "--no-plots", "--no-progress",
        "--line-search-samples", "64", "--output-dir", str(tmp_path),
    ])
    assert code == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "interrupted" in err[0]
    payload = json.loads((tmp_path / "growth.json").read_text())
    assert payload["status"] == "interrupted"
    assert [r["step"] for r in payload["steps"]] == [1]
    assert payload["steps"][0]["test_accuracy"] is not None
    # no temporary file left behind; the run directory also holds the checkpoints of the finished steps
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt", "growth.json", "model.pt"]


def test_unwritable_output_directory_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert main(["grow", "--dataset", "synthetic", "--no-plots", "--steps", "0", "--output-dir", str(blocker / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot write to output directory" in err[0]
