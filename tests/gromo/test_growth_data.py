"""Any data: a DataLoader gives the records of the same data in memory; a user's .npz end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from gromo.containers.growing_mlp import GrowingMLP
from gromo.growth.cli import main
from gromo.growth.data import LoaderBatches, Splits, load_npz
from gromo.growth.datasets import make_synthetic
from gromo.growth.loop import GrowthConfig, grow

TIMES = ("time_statistics", "time_solves", "time_line_search", "time_training", "time_evaluation", "time_total")


def _model(seed=0):
    torch.manual_seed(seed)
    return GrowingMLP(8, 3, hidden_size=1, number_hidden_layers=2, activation=nn.ReLU(), device="cpu")


class _Shuffle(torch.utils.data.Sampler):
    """One ``randperm`` per pass (torch's RandomSampler draws a second, unused one at the end)."""

    def __init__(self, n, generator):
        self.n, self.generator = n, generator

    def __len__(self):
        return self.n

    def __iter__(self):
        return iter(torch.randperm(self.n, generator=self.generator).tolist())


def _comparable(records):
    return [{k: v for k, v in r.to_json().items() if k not in TIMES} for r in records]


def test_dataloader_gives_the_records_of_the_same_data_in_memory():
    data = make_synthetic(n_train=300, n_test=120, num_features=8, num_classes=3, teacher_width=16,
                          val_fraction=0.2, seed=4)
    config = GrowthConfig(steps=3, neurons_per_step=3, epochs=2, batch_size=32, statistics_batch_size=32,
                          evaluation_batch_size=32, line_search_samples=40, seed=5, gain_tolerance=0.0, patience=None)
    in_memory = grow(_model(), data, config)
    train_set = TensorDataset(data.x_train, data.y_train)
    sampler = _Shuffle(len(train_set), torch.Generator().manual_seed(config.seed))
    loaders = Splits(
        train=DataLoader(train_set, batch_size=32, sampler=sampler),
        val=DataLoader(TensorDataset(data.x_val, data.y_val), batch_size=32),
        test=DataLoader(TensorDataset(data.x_test, data.y_test), batch_size=32),
    )
    streamed = grow(_model(), loaders, config)
    assert len(streamed.records) == 4 and sum(r.neurons_added for r in streamed.records) >= 3
    assert _comparable(streamed.records) == _comparable(in_memory.records)


def test_loader_batches_refuse_a_one_shot_iterator_and_non_pairs():
    with pytest.raises(TypeError, match="re-iterable"):
        LoaderBatches(iter([(torch.zeros(2, 3), torch.zeros(2))]))
    with pytest.raises(TypeError, match=r"\(x, y\) pair"):
        list(LoaderBatches([torch.zeros(2, 3)]).passes())


def _write_npz(path, seed=0, images=False):
    rng = np.random.default_rng(seed)
    n = 240
    x = rng.normal(size=(n, 1, 6, 6) if images else (n, 8)).astype(np.float32)
    w = rng.normal(size=(x[0].size, 3))
    y = (x.reshape(n, -1) @ w).argmax(axis=1).astype(np.int64)
    np.savez(path, x_train=x[:180], y_train=y[:180], x_test=x[180:], y_test=y[180:])
    return x, y


def test_npz_loader_standardises_with_train_statistics(tmp_path):
    path = tmp_path / "mine.npz"
    x, _ = _write_npz(path)
    data = load_npz(str(path), val_fraction=0.2, seed=1)
    assert data.num_classes == 3 and data.input_shape == (8,)
    assert len(data.y_train) == 144 and len(data.y_val) == 36 and len(data.y_test) == 60
    torch.testing.assert_close(data.x_train.mean(0), torch.zeros(8), atol=1e-5, rtol=0)
    torch.testing.assert_close(data.x_train.std(0, unbiased=False), torch.ones(8), atol=1e-4, rtol=0)
    train_rows = x[:180].astype(np.float64)
    keep = np.sort(np.random.RandomState(1).permutation(180)[36:])
    mean, std = train_rows[keep].mean(0), train_rows[keep].std(0)
    expected_test = (x[180:] - mean) / std
    torch.testing.assert_close(data.x_test, torch.from_numpy(expected_test).float(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arrays, match", [
    ({"x_train": np.zeros((4, 2))}, "missing array 'y_train'"),
    ({"x_train": np.zeros((4, 2)), "y_train": np.zeros(4)}, "integer labels"),
    ({"x_train": np.zeros((4, 2)), "y_train": np.zeros(4, dtype=np.int64), "x_val": np.zeros((2, 2))}, "given together"),
    ({"x_train": np.full((4, 2), np.nan), "y_train": np.zeros(4, dtype=np.int64)}, "NaN"),
])
def test_npz_bad_arrays_are_named(tmp_path, arrays, match):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=match):
        load_npz(str(path))
    assert main(["grow", "--dataset", str(path), "--no-plots", "--output-dir", str(tmp_path / "run")]) == 2


@pytest.mark.parametrize("model, images", [("mlp", False), ("cnn", True)])
def test_grow_on_a_users_npz_end_to_end(tmp_path, capsys, model, images):
    path = tmp_path / "mine.npz"
    _write_npz(path, images=images)
    out = tmp_path / "run"
    code = main(["grow", "--dataset", str(path), "--model", model, "--steps", "2", "--epochs", "1",
                 "--line-search-samples", "32", "--no-plots", "--no-progress", "--output-dir", str(out),
                 "--channels", "4", "--blocks", "1"])
    assert code == 0
    payload = json.loads((out / "growth.json").read_text())
    assert payload["status"] == "finished" and payload["config"]["command"]["dataset"] == str(path)
    assert payload["initial"]["widths"] == [1]
    assert payload["steps"] and all(0 <= r["test_accuracy"] <= 1 for r in payload["steps"])
    assert payload["steps"][-1]["parameters"] > payload["initial"]["parameters"]
    assert "best test accuracy" in capsys.readouterr().out
