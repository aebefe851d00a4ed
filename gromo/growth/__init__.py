"""Growing a network end to end: the growth loop, its records, data, plots, data-parallel statistics.

    from gromo.growth import GrowthConfig, grow, load_dataset
    from gromo.containers.growing_mlp import GrowingMLP

    data = load_dataset("digits", val_fraction=0.1)
    model = GrowingMLP(data.num_features, data.num_classes, hidden_size=1, number_hidden_layers=1,
                       activation=torch.nn.ReLU())
    result = grow(model, data, GrowthConfig(steps=30, neurons_per_step=8))
    result.records[-1].test_accuracy

Submodules: :mod:`~gromo.growth.loop` (``grow``, ``growth_step``, ``GrowthConfig``),
:mod:`~gromo.growth.candidates` (the step's solves), :mod:`~gromo.growth.scale_search`,
:mod:`~gromo.growth.stopping`, :mod:`~gromo.growth.passes` (train / evaluate / statistics passes),
:mod:`~gromo.growth.data` (batch sources: tensors or DataLoaders, ``Splits``, ``load_npz``),
:mod:`~gromo.growth.records` (``StepRecord``, ``GrowthLog``: growth.json), :mod:`~gromo.growth.files`,
:mod:`~gromo.growth.checkpoint` (``load_run``), :mod:`~gromo.growth.models` (rebuildable specs),
:mod:`~gromo.growth.baseline`, :mod:`~gromo.growth.datasets`, :mod:`~gromo.growth.optim` (optimizer
state across growth), :mod:`~gromo.growth.distributed` (``sync_statistics``, timeouts),
:mod:`~gromo.growth.plots`, :mod:`~gromo.growth.report`, :mod:`~gromo.growth.cli` and
:mod:`~gromo.growth.cli_run` (``python -m gromo grow`` / ``eval``). Names are imported lazily so that
the command line can reject bad input before torch is imported.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "GrowthConfig": "loop", "GrowthResult": "loop", "grow": "loop", "growth_step": "loop",
    "train_epochs": "loop", "evaluate": "loop", "accumulate_statistics": "loop", "line_search": "loop",
    "load_run": "checkpoint", "Splits": "data", "load_npz": "data", "StoppingRule": "stopping",
    "DivergenceError": "passes", "CandidateError": "candidates", "make_spec": "models",
    "StepRecord": "records", "GrowthLog": "records", "write_json_atomic": "records",
    "ClassificationData": "datasets", "load_dataset": "datasets", "load_digits": "datasets",
    "make_synthetic": "datasets", "MissingDependencyError": "datasets",
    "ParameterSnapshot": "optim", "rebuild_optimizer": "optim",
    "Communicator": "distributed", "sync_statistics": "distributed", "init_distributed": "distributed",
    "plot_all": "plots",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return __all__
