"""``--model resnet|vgg`` with Restricted or Full growth: a run on digits end to end, reloadable."""

from __future__ import annotations

import json

import pytest
import torch

from gromo.growth import load_run
from gromo.growth.cli import main
from gromo.growth.datasets import load_dataset


@pytest.mark.parametrize("model, growth", [("resnet", "restricted"), ("resnet", "full"), ("vgg", "restricted"), ("vgg", "full")])
def test_container_models_grow_on_digits_and_reload(tmp_path, model, growth):
    out = tmp_path / "run"
    code = main(["grow", "--model", model, "--growth", growth, "--channels", "4", "--steps", "2", "--epochs", "1",
                 "--line-search-samples", "64", "--gain-tolerance", "0", "--patience", "0", "--no-plots",
                 "--no-progress", "--quiet", "--output-dir", str(out)])
    assert code == 0
    payload = json.loads((out / "growth.json").read_text())
    assert payload["status"] == "finished" and len(payload["steps"]) == 2
    grown = [r for r in payload["steps"] if r["layer"] is not None]
    assert grown and all(1 <= r["neurons_added"] <= 8 for r in grown)
    assert payload["steps"][-1]["parameters"] > payload["initial"]["parameters"]
    summary = payload["summary"]
    reloaded = load_run(str(out))
    data = load_dataset("digits", val_fraction=0.1, seed=0)
    with torch.no_grad():
        correct = int((reloaded(data.x_test).argmax(1) == data.y_test).sum())
    assert correct / len(data.y_test) == summary["val_selected_test_accuracy"]
    assert sum(p.numel() for p in reloaded.parameters()) == summary["val_selected_parameters"]


def test_unknown_growth_is_one_line(capsys, tmp_path):
    assert main(["grow", "--model", "resnet", "--growth", "diagonal", "--no-plots", "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown growth 'diagonal'" in err[0]
