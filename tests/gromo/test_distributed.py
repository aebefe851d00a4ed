"""Data-parallel statistics: 2 gloo workers on CPU (spawned here) must reproduce one process on the union.

Each worker gets every other sample of the same batch; after ``sync_statistics`` its statistics
must equal (float64 reference, fp32 tolerance) those of a single process on the whole batch, and
the growth decision (layer, neurons, singular values) must be the same.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from gromo.growth.distributed import Communicator, collect_statistics, sync_statistics
from gromo.utils.tensor_statistic import TensorStatistic

WORLD_SIZE = 2


def _init(rank: int, store: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    # A file store, not a TCP one: no free port to pick, release and hope rank 0 binds again.
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD_SIZE)


class _ToyStatistics(nn.Module):
    """A module owning GroMo statistics fed from its input x (n, d): S = Σ x̃x̃ᵀ, M = Σ x yᵀ, and one
    statistic that only rank 0 ever updates."""

    def __init__(self):
        super().__init__()
        self._tensor_s = TensorStatistic(None, self._s_update, name="S")
        self.tensor_m = TensorStatistic(None, self._m_update, name="M")
        self.only_some = TensorStatistic(None, self._m_update, name="only_some")
        self.x = self.y = None

    def _s_update(self):
        x1 = torch.cat([self.x, torch.ones(len(self.x), 1)], dim=1)
        return x1.T @ x1, len(self.x)

    def _m_update(self):
        return self.x.T @ self.y, len(self.x)

    def feed(self, x, y, update_only_some: bool):
        self.x, self.y = x, y
        for statistic in (self._tensor_s, self.tensor_m, self.only_some):
            statistic.updated = False
        self._tensor_s.update()
        self.tensor_m.update()
        if update_only_some:
            self.only_some.update()


def _toy_data():
    generator = torch.Generator().manual_seed(1234)
    return torch.randn(37, 5, generator=generator), torch.randn(37, 3, generator=generator)


def _mlp_scenario() -> dict:
    """Train one epoch, accumulate statistics, solve, then a full growth step; return what matters.

    Runs identically in one process (local communicator) and in each data-parallel worker.
    """
    from gromo.containers.growing_mlp import GrowingMLP
    from gromo.growth.datasets import make_synthetic
    from gromo.growth.loop import (
        GrowthConfig,
        _compute_updates,
        _first_order_gain,
        accumulate_statistics,
        growth_step,
        train_epochs,
    )

    comm = Communicator()
    data = make_synthetic(n_train=300, n_test=50, num_features=6, num_classes=3, teacher_width=8, seed=2)
    torch.manual_seed(0)
    model = GrowingMLP(6, 3, hidden_size=3, number_hidden_layers=2, activation=nn.ReLU(), device="cpu")
    config = GrowthConfig(neurons_per_step=3, line_search_samples=64, relative_statistical_threshold=0.05)
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    train_epochs(model, optimizer, data.x_train, data.y_train, epochs=1, batch_size=32, generator=generator, comm=comm)
    accumulate_statistics(model, data.x_train, data.y_train, torch.arange(300), batch_size=40, comm=comm)
    statistics = {e.name: e.statistic() for e in collect_statistics(model) if e.statistic.samples > 0}
    info = _compute_updates(model, config)
    gains = [_first_order_gain(layer) if info[i]["keep"] else 0.0 for i, layer in enumerate(model._growing_layers)]
    model.reset_computation()
    model.delete_update()
    optimizer, record = growth_step(model, data, config, optimizer, generator=generator, comm=comm)
    return {
        "statistics": statistics, "keep": [info[i]["keep"] for i in sorted(info)],
        "sigma": [info[i]["sigma_all"] for i in sorted(info)], "gains": gains,
        "layer": record.layer, "neurons_added": record.neurons_added, "scale": record.scale,
        "widths": model.hidden_widths, "weight": model.layers[1].weight.detach().clone(),
    }


def _loader_scenario() -> list[dict]:
    """Two growth steps on DataLoaders: a DistributedSampler per worker, plain batches in one process."""
    from torch.utils.data import DataLoader, TensorDataset
    from torch.utils.data.distributed import DistributedSampler

    from gromo.containers.growing_mlp import GrowingMLP
    from gromo.growth.data import Splits
    from gromo.growth.datasets import make_synthetic
    from gromo.growth.loop import GrowthConfig, grow

    comm = Communicator()
    data = make_synthetic(n_train=320, n_test=64, num_features=6, num_classes=3, teacher_width=8, val_fraction=0.2, seed=3)
    global_batch = 32

    def loader(x, y):
        dataset = TensorDataset(x, y)
        if not comm.active:
            return DataLoader(dataset, batch_size=global_batch)
        sampler = DistributedSampler(dataset, num_replicas=comm.world_size, rank=comm.rank, shuffle=False)
        return DataLoader(dataset, batch_size=global_batch // comm.world_size, sampler=sampler)

    torch.manual_seed(0)
    model = GrowingMLP(6, 3, hidden_size=2, number_hidden_layers=1, activation=nn.ReLU(), device="cpu")
    config = GrowthConfig(steps=2, neurons_per_step=3, epochs=2, line_search_samples=40, gain_tolerance=0.0, patience=None)
    splits = Splits(loader(data.x_train, data.y_train), loader(data.x_val, data.y_val), loader(data.x_test, data.y_test))
    result = grow(model, splits, config, comm=comm)
    return [r.to_json() for r in result.records]


def _worker(rank: int, store: str, out_dir: str) -> None:
    import faulthandler

    faulthandler.enable(all_threads=True)  # a native abort in a worker then shows where it happened
    _init(rank, store)
    torch.save(_mlp_scenario(), os.path.join(out_dir, f"mlp{rank}.pt"))
    torch.save(_loader_scenario(), os.path.join(out_dir, f"loader{rank}.pt"))
    x, y = _toy_data()
    module = _ToyStatistics()
    mine = torch.arange(rank, len(x), WORLD_SIZE)
    for chunk in mine.split(6):  # several batches per worker
        module.feed(x[chunk], y[chunk], update_only_some=(rank == 0))
    count = sync_statistics(module, Communicator())
    torch.save(
        {"count": count, "S": module._tensor_s(), "M": module.tensor_m(), "only": module.only_some(),
         "samples": [module._tensor_s.samples, module.tensor_m.samples, module.only_some.samples]},
        os.path.join(out_dir, f"toy{rank}.pt"),
    )
    import torch.distributed as dist

    # Both ranks done before either tears down (a peer closing its sockets mid-collective aborts gloo).
    dist.barrier()
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def spawned(tmp_path_factory):
    """Run the 2-worker gloo scenarios once for the module; returns the output directory."""
    out = tmp_path_factory.mktemp("distributed")
    mp.spawn(_worker, args=(str(out / "store"), str(out)), nprocs=WORLD_SIZE, join=True)
    return out


def test_two_workers_grow_like_one_process(spawned):
    single = _mlp_scenario()
    for rank in range(WORLD_SIZE):
        worker = torch.load(spawned / f"mlp{rank}.pt")
        assert set(worker["statistics"]) == set(single["statistics"]) and len(single["statistics"]) >= 8
        for name, value in single["statistics"].items():
            torch.testing.assert_close(worker["statistics"][name], value, rtol=1e-4, atol=1e-5, msg=name)
        assert worker["keep"] == single["keep"]
        for mine, reference in zip(worker["sigma"], single["sigma"]):
            torch.testing.assert_close(torch.tensor(mine), torch.tensor(reference), rtol=1e-3, atol=1e-6)
        torch.testing.assert_close(torch.tensor(worker["gains"]), torch.tensor(single["gains"]), rtol=1e-3, atol=1e-8)
        assert worker["layer"] == single["layer"] and worker["neurons_added"] == single["neurons_added"] >= 1
        assert worker["scale"] == single["scale"] and worker["widths"] == single["widths"]
        torch.testing.assert_close(worker["weight"], single["weight"], rtol=1e-3, atol=1e-4)


def test_distributed_sampler_loaders_grow_like_one_process(spawned):
    single = _loader_scenario()
    assert len(single) == 3 and sum(r["neurons_added"] for r in single) >= 2
    for rank in range(WORLD_SIZE):
        worker = torch.load(spawned / f"loader{rank}.pt")
        for mine, reference in zip(worker, single, strict=True):
            for key in ("layer", "neurons_added", "widths", "parameters", "scale"):
                assert mine[key] == reference[key], key
            for key in ("train_loss", "val_loss", "test_loss", "first_order_gain", "line_search_loss_before"):
                if reference[key] is not None:
                    assert mine[key] == pytest.approx(reference[key], rel=1e-3, abs=1e-6), key
            for key in ("train_accuracy", "val_accuracy", "test_accuracy"):
                assert mine[key] == pytest.approx(reference[key], abs=1.5 / 64), key


def test_sync_statistics_equals_single_process_on_union(spawned):
    tmp_path = spawned
    x, y = _toy_data()
    x64, y64 = x.double(), y.double()
    x1 = torch.cat([x64, torch.ones(len(x), 1, dtype=torch.float64)], dim=1)
    s_ref, m_ref = x1.T @ x1 / len(x), x64.T @ y64 / len(x)
    rank0_rows = torch.arange(0, len(x), WORLD_SIZE)
    only_ref = x64[rank0_rows].T @ y64[rank0_rows] / len(rank0_rows)
    results = [torch.load(tmp_path / f"toy{rank}.pt") for rank in range(WORLD_SIZE)]
    for result in results:
        assert result["count"] == 3
        assert result["samples"] == [37, 37, len(rank0_rows)]
        torch.testing.assert_close(result["S"].double(), s_ref, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(result["M"].double(), m_ref, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(result["only"].double(), only_ref, rtol=1e-6, atol=1e-6)
        assert torch.equal(result["S"], result["S"].T)  # mirrored from the upper triangle
    assert torch.equal(results[0]["S"], results[1]["S"]) and torch.equal(results[0]["M"], results[1]["M"])


def test_collect_statistics_deduplicates_and_orders():
    outer = nn.Module()
    outer.a, outer.b = _ToyStatistics(), _ToyStatistics()
    outer.b.tensor_m = outer.a.tensor_m  # shared statistic (like tensor_s_growth = previous tensor_s)
    names = [entry.name for entry in collect_statistics(outer)]
    assert names == ["a._tensor_s", "a.only_some", "a.tensor_m", "b._tensor_s", "b.only_some"]
    symmetric = {entry.name: entry.symmetric for entry in collect_statistics(outer)}
    assert symmetric["a._tensor_s"] and not symmetric["a.tensor_m"]


def test_sync_is_a_no_op_in_one_process():
    module = _ToyStatistics()
    x, y = _toy_data()
    module.feed(x, y, update_only_some=True)
    before = module._tensor_s._tensor.clone()
    assert sync_statistics(module) == 3
    assert torch.equal(module._tensor_s._tensor, before) and module._tensor_s.samples == 37
