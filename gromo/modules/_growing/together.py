"""Growth solves of many modules at once: request → solve → install, one gromo_kernels call per group.

``compute_optimal_updates`` of one module checks, solves its optimal delta, then its new neurons.
A container (or the growth loop) runs the same three steps for all its layers together:

1. each module's checks and delta plan, in layer order;
2. every optimal delta, by each module's own ``compute_optimal_delta`` (one call per layer: a
   grouped call can round a float64 decrease 1-3 ulp away where its batch splits between the
   Cholesky and the eigh path); the factorisation cache then holds every S before the growth solves
   read them;
3. every new-neuron request (N reads the layer's own delta), one ``gromo_kernels.optimal_added_neurons``
   call per group of equal solve options (at most ``GROUP_BYTES`` of inputs, so memory stays near one
   large layer's need), and each module's install of α, ω.

Each step applies GroMo's per-layer rules exactly as the module path does (the tools' checks,
pseudo-inverse warning, negative-decrease retry), so the modules end in the state
their own ``compute_optimal_updates`` calls would give, bit for bit. A module takes part only when
none of GroMo's override points is replaced (:func:`solves_jointly`); others run their own
``compute_optimal_updates`` in their place. When the joint solve fails, every module is put back
and the layers' own calls run in layer order instead, so the error is the one GroMo's order raises
(and names its layer); the whole call stays all-or-nothing. (The warnings of the failed attempt
have then been emitted as well; a grouped kernel's rounding-asymmetry warning names the element of
its group, ``S[i]``.)
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

import gromo_kernels as gk
from gromo.modules._dtypes import match_pending_layer_dtypes
from gromo.modules._growing.updates import UpdatesMixin, public_solver
from gromo.modules._growth_options import GrowthOptions
from gromo.modules._transactions import Snapshot, all_or_nothing, module_and_neighbours
from gromo.utils import tools

__all__ = ["GrowthJob", "OwnSolve", "compute_updates_together", "growth_entry", "solves_jointly"]

# GroMo's override points of a module's growth solve: a subclass (or instance) that replaces one
# solves on its own, through its own methods.
_OVERRIDE_POINTS = (
    "compute_optimal_updates", "compute_optimal_delta", "_compute_optimal_added_parameters",
    "_auxiliary_compute_alpha_omega", "_added_parameters",
)
# GroMo's public solvers as this package defines them (a user may replace them in GroMo's namespace).
_OWN_SOLVERS = {"optimal_delta": tools.optimal_delta,
                "compute_optimal_added_parameters": tools.compute_optimal_added_parameters}

OnError = Callable[[nn.Module, Exception], Exception | None]


@dataclass(frozen=True)
class GrowthJob:
    """One module's part of a joint growth solve.

    Attributes:
        module: the growing module solved.
        options: its growth options.
        whole: the whole ``compute_optimal_updates`` (checks, delta, new neurons); False: only the new
            neurons, as ``_compute_optimal_added_parameters`` (a block at hidden width 0).
        before: run first, in step 1 (a block clearing its delta at hidden width 0).
        call: the layer's own ``compute_optimal_updates(…)`` (what a failed joint solve re-runs).
    """

    module: nn.Module
    options: GrowthOptions
    whole: bool = True
    before: Callable[[], None] | None = None
    call: Callable[[], object] | None = None


@dataclass(frozen=True)
class OwnSolve:
    """A layer that solves on its own: ``call()`` is its ``compute_optimal_updates(…)``."""

    module: nn.Module
    call: Callable[[], object]


def growth_entry(layer: nn.Module, *args: Any, **kwargs: Any) -> GrowthJob | OwnSolve:
    """The entry of ``layer.compute_optimal_updates(*args, **kwargs)`` in a joint solve.

    A module that :func:`solves_jointly` gives a job; so does a layer with a ``_growth_job(*args,
    **kwargs)`` method that returns one (a block); any other layer solves on its own.

    Raises:
        TypeError: the arguments do not fit the layer's ``compute_optimal_updates`` (a plain def's text).
    """
    job = None
    if solves_jointly(layer):
        job = GrowthJob(layer, type(layer).compute_optimal_updates.bind_options(*args, **kwargs))
    elif hasattr(layer, "_growth_job"):
        job = layer._growth_job(*args, **kwargs)
    own = functools.partial(layer.compute_optimal_updates, *args, **kwargs)
    if job is not None:
        return dataclasses.replace(job, call=own)
    return OwnSolve(layer, own)


def solves_jointly(module: nn.Module) -> bool:
    """Whether ``module`` may take part in a joint solve: a growing module of this package none of
    whose override points (:data:`_OVERRIDE_POINTS`) is replaced on its class or instance, with
    GroMo's public solvers (``gromo.modules.growing_module.optimal_delta``, …) this package's own."""
    if not isinstance(module, UpdatesMixin):
        return False
    if any(name in vars(module) or getattr(type(module), name) is not getattr(UpdatesMixin, name)
           for name in _OVERRIDE_POINTS):
        return False
    return all(public_solver(name) is own for name, own in _OWN_SOLVERS.items())


@contextlib.contextmanager
def _blamed_on(module: nn.Module, on_error: OnError | None) -> Iterator[None]:
    """Errors inside are the module's: ``on_error(module, error)`` may give the one to raise instead."""
    try:
        yield
    except Exception as error:
        replacement = None if on_error is None else on_error(module, error)
        if replacement is None:
            raise
        raise replacement from error


def _grouped(items: list, key: Callable[[Any], Any], solve_many: Callable[[list], list]) -> list:
    """Results of ``items``: ``solve_many`` once per group of equal ``key`` (in layer order)."""
    results: list = [None] * len(items)
    groups: dict[Any, list[list[int]]] = {}
    for index, item in enumerate(items):
        chunks = groups.setdefault(key(item), [[]])
        # A group solved in one call holds its inputs stacked (and their float64 work copies) at
        # once: chunks of at most GROUP_BYTES of inputs keep that near one large layer's need.
        if chunks[-1] and sum(_nbytes(items[i]) for i in chunks[-1]) + _nbytes(item) > GROUP_BYTES:
            chunks.append([])
        chunks[-1].append(index)
    for indices in (chunk for chunks in groups.values() for chunk in chunks):
        for index, result in zip(indices, solve_many([items[i] for i in indices])):
            results[index] = result
    return results


# Inputs of at most this many bytes are stacked into one grouped solve.
GROUP_BYTES = 64 * 2**20


def _nbytes(item: Any) -> int:
    """Bytes of an item's input matrices."""
    return sum(t.numel() * t.element_size() for t in item.tensors() if t is not None)


@dataclass
class _NeuronItem:
    job: GrowthJob
    previous: nn.Module
    request: Any  # NewNeuronRequest
    matrix_s: torch.Tensor | None  # as checked (symmetrised) by the tools
    matrix_e: torch.Tensor | None
    solve_options: dict

    @property
    def module(self) -> nn.Module:
        return self.job.module

    def tensors(self) -> tuple:
        return self.matrix_s, self.request.matrix_n, self.matrix_e


def _neuron_item(job: GrowthJob) -> _NeuronItem:
    module, options = job.module, job.options
    previous = module._added_parameters_previous(options)
    request = module._alpha_omega_inputs(options)
    matrix_s, matrix_e = tools._checked_added_parameters_inputs(request.matrix_s, request.matrix_n, request.matrix_e)
    return _NeuronItem(job, previous, request, matrix_s, matrix_e, tools._added_neurons_options(options))


def _solve_new_neurons(items: list[_NeuronItem]) -> None:
    def solve_many(group: list[_NeuronItem]) -> list:
        matrices_s = [item.matrix_s for item in group]
        matrices_e = [item.matrix_e for item in group]
        return gk.optimal_added_neurons(
            None if all(s is None for s in matrices_s) else matrices_s, [item.request.matrix_n for item in group],
            E=None if all(e is None for e in matrices_e) else matrices_e, **group[0].solve_options,
        )

    results = _grouped(items, lambda item: tuple(sorted(item.solve_options.items())), solve_many)
    for item, result in zip(items, results):
        module, options = item.module, item.job.options
        dtype = item.request.matrix_n.dtype
        alpha, omega, eigenvalues = module._alpha_omega_outcome(
            options, item.request, result.alpha.to(dtype), result.omega.to(dtype), result.sigma.to(dtype))
        module._install_added_parameters(options, item.previous, alpha, omega, eigenvalues)
        if item.job.whole:
            match_pending_layer_dtypes(module)


def compute_updates_together(entries: Sequence[GrowthJob | OwnSolve], *, scope: Iterable[nn.Module] = (),
                             on_error: OnError | None = None) -> None:
    """Solve the growth of every entry (:func:`growth_entry`): a :class:`GrowthJob` joins the joint
    solve, an :class:`OwnSolve` runs in its place in step 1.

    Args:
        entries: in layer order.
        scope: modules also restored on failure (the container whose layers these are).
        on_error: ``on_error(module, error)`` → the exception to raise instead (chained), or None.
    Raises:
        The failing layer's error (or ``on_error``'s); every module is then as it was.
    """
    touched = [*scope, *(m for entry in entries for m in module_and_neighbours(entry.module))]
    with all_or_nothing(touched, copy_data=False):
        before = Snapshot([m for m in touched if isinstance(m, nn.Module)], copy_data=False)
        try:
            _solve_jointly(entries)
        except Exception:
            # Which error a failing call raises first depends on the order of its steps: GroMo's is
            # layer after layer. Put everything back and run the layers' own calls in that order,
            # so the error (and the layer it names, and GroMo's SVD diagnostics) is the one they
            # raise.
            before.restore()
            for entry in entries:
                with _blamed_on(entry.module, on_error):
                    entry.call()


def _solve_jointly(entries: Sequence[GrowthJob | OwnSolve]) -> None:
    """Steps 1-3 of the module docstring."""
    deltas: list[tuple[nn.Module, bool, GrowthOptions]] = []
    growing: list[GrowthJob] = []
    for entry in entries:
        if isinstance(entry, OwnSolve):
            entry.call()
            continue
        module, options = entry.module, entry.options
        if entry.before is not None:
            entry.before()
        if not entry.whole:
            growing.append(entry)
            continue
        previous = module._checked_growth_request(options)
        update = module._growth_delta_plan(options)
        if update is not None:
            deltas.append((module, update, options))
        if previous is not None:
            growing.append(entry)
    for module, update, options in deltas:
        module.compute_optimal_delta(update=update, dtype=options.dtype, use_fisher=options.use_fisher)
    _solve_new_neurons([_neuron_item(job) for job in growing])
