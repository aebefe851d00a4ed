"""Checkpoints: a killed run resumed gives the uninterrupted records; load_run and eval give the recorded accuracy."""

from __future__ import annotations

import json
import os

import pytest
import torch

from gromo.growth import checkpoint, load_run
from gromo.growth.cli import main
from gromo.growth.datasets import load_dataset
from gromo.growth.models import make_spec, rebuild, spec_of

TIMES = ("time_statistics", "time_solves", "time_line_search", "time_training", "time_evaluation", "time_total")
ARGS = ["--dataset", "synthetic", "--steps", "4", "--epochs", "1", "--neurons-per-step", "3", "--hidden-layers", "2",
        "--line-search-samples", "64", "--no-plots", "--no-progress", "--quiet", "--gain-tolerance", "0",
        "--patience", "0", "--seed", "2"]


def _records(run_dir):
    payload = json.loads((run_dir / "growth.json").read_text())
    return [{k: v for k, v in r.items() if k not in TIMES} for r in [payload["initial"], *payload["steps"]]], payload


@pytest.mark.parametrize("killed_after", [1, 3])
def test_a_killed_run_resumed_gives_the_uninterrupted_records(tmp_path, monkeypatch, killed_after):
    whole, interrupted = tmp_path / "whole", tmp_path / "interrupted"
    assert main(["grow", *ARGS, "--output-dir", str(whole)]) == 0
    real_save = checkpoint.save_checkpoint
    saved = {"n": 0}

    def save_then_die(*args, **kwargs):
        real_save(*args, **kwargs)
        saved["n"] += 1
        if saved["n"] == killed_after + 1:  # step 0 .. step k written, then the process "dies"
            raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save_checkpoint", save_then_die)
    assert main(["grow", *ARGS, "--output-dir", str(interrupted)]) == 130
    partial, payload = _records(interrupted)
    assert payload["status"] == "interrupted" and len(partial) == killed_after + 1
    monkeypatch.setattr(checkpoint, "save_checkpoint", real_save)
    assert main(["grow", "--resume", str(interrupted), "--no-progress", "--quiet", "--no-plots"]) == 0
    resumed, payload = _records(interrupted)
    expected, reference = _records(whole)
    assert payload["status"] == "finished" and len(resumed) == 5
    assert resumed == expected
    assert payload["summary"]["val_selected_test_accuracy"] == reference["summary"]["val_selected_test_accuracy"]


def test_load_run_returns_the_chosen_model_with_its_recorded_accuracy(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["grow", "--dataset", "digits", "--steps", "3", "--epochs", "2", "--no-plots", "--no-progress",
                 "--quiet", "--output-dir", str(run)]) == 0
    payload = json.loads((run / "growth.json").read_text())
    summary = payload["summary"]
    model = load_run(str(run))
    data = load_dataset("digits", val_fraction=0.1, seed=0)
    with torch.no_grad():
        correct = int((model(data.x_test).argmax(1) == data.y_test).sum())
    assert correct / len(data.y_test) == summary["val_selected_test_accuracy"]
    assert model.number_of_parameters() == summary["val_selected_parameters"]
    last = load_run(str(run), which="last")
    assert last.number_of_parameters() == payload["steps"][-1]["parameters"]
    capsys.readouterr()
    assert main(["eval", str(run)]) == 0
    out = capsys.readouterr().out
    test_line = next(line for line in out.splitlines() if line.startswith("test"))
    assert f"{100 * summary['val_selected_test_accuracy']:.2f}%" in test_line


def test_checkpoint_files_are_plain_tensors_and_follow_the_umask(tmp_path):
    run = tmp_path / "run"
    previous = os.umask(0o027)
    try:
        assert main(["grow", *ARGS, "--steps", "1", "--output-dir", str(run)]) == 0
    finally:
        os.umask(previous)
    for name in ("growth.json", "checkpoint.pt", "model.pt"):
        assert (run / name).stat().st_mode & 0o777 == 0o640, name
    payload = torch.load(run / "checkpoint.pt", weights_only=True)  # no pickled code
    assert payload["format"] == checkpoint.FORMAT and payload["architecture"]["builder"] == "mlp"
    assert [r["step"] for r in payload["records"]] == [0, 1]


def test_rebuild_from_a_spec_restores_a_grown_cnn_exactly():
    torch.manual_seed(0)
    spec = make_spec("cnn", in_channels=1, num_classes=3, input_size=[6, 6], channels=4, hidden_channels=1, blocks=2)
    model = rebuild(spec)
    from gromo.growth.models import widen

    widen(model.blocks[1], 3)
    for parameter in model.parameters():
        parameter.data.normal_()
    copy = rebuild(spec_of(spec, model))
    copy.load_state_dict(model.state_dict())
    x = torch.randn(5, 1, 6, 6)
    assert copy.hidden_widths == [1, 4]
    torch.testing.assert_close(copy(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("argv, match", [
    (["grow", "--resume", "{tmp}/nowhere"], "cannot read"),
    (["eval", "{tmp}/nowhere"], "cannot read"),
])
def test_missing_run_directory_is_one_line(argv, match, tmp_path, capsys):
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0]


def test_a_sigkilled_process_resumed_gives_the_uninterrupted_records(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    args = [*ARGS, "--steps", "12", "--epochs", "2"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=repo + os.pathsep + os.environ.get("PYTHONPATH", ""))
    process = subprocess.Popen([sys.executable, "-m", "gromo", "grow", *args, "--output-dir", str(killed)],
                               cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if len(json.loads((killed / "growth.json").read_text())["steps"]) >= 2:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL
    partial, payload = _records(killed)
    assert payload["status"] == "running" and 3 <= len(partial) < 13  # SIGKILL leaves no trace but the files
    assert main(["grow", "--resume", str(killed), "--no-progress", "--quiet", "--no-plots"]) == 0
    assert main(["grow", *args, "--output-dir", str(whole)]) == 0
    resumed, payload = _records(killed)
    assert payload["status"] == "finished" and resumed == _records(whole)[0]
