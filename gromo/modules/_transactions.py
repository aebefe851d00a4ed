"""All-or-nothing growth calls: a failing call leaves every module it touches exactly as it was.

The public mutating methods validate their arguments first (:mod:`gromo.modules._guards`); what can
only fail half-way (a solve on ill-posed statistics, an initialiser dividing by a zero fan-in, a
post-layer function that cannot grow) is covered by :func:`atomic` (for a method) and
:func:`all_or_nothing` (for a block of calls on several modules): each records the modules' state
before the call and puts it back when the call raises, then re-raises the error unchanged.

What is recorded, for the module, its neighbours and every sub-module of theirs (layer, extension
layers, post-layer functions): the attribute dictionary (so replaced layers, pending updates,
statistics objects and stored tensors come back by reference), copies of the parameter / buffer /
sub-module tables, the values of the scaling tensors (written in place), the state of the
statistics objects, and with ``copy_data=True`` a copy of every parameter and buffer (for calls that
change weights in place: ``W −= γ²δ``, rescaling). Copying costs one copy of the touched layers'
weights for the duration of the call; calls that only replace references use ``copy_data=False``.

Nested atomic calls on modules already recorded by an outer call record nothing more.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import torch
from torch import nn

from gromo.utils.tensor_statistic import TensorStatistic

__all__ = ["Snapshot", "all_or_nothing", "atomic", "merge_and_neighbours", "module_and_neighbours"]

_F = TypeVar("_F", bound=Callable[..., Any])
_active = threading.local()
# attributes holding a batch (replaced by forward, never changed in place): not worth copying
_BATCH_TENSORS = frozenset({"_input", "_pre_activity", "input", "activity"})


class Snapshot:
    """The restorable state of some modules (see the module docstring)."""

    def __init__(self, modules: Iterable[nn.Module], copy_data: bool) -> None:
        self._objects: list[tuple[Any, dict[str, Any]]] = []
        self._tensors: list[tuple[torch.Tensor, torch.Tensor]] = []
        seen: set[int] = set()
        for root in modules:
            for module in root.modules():
                self._record_module(module, seen, copy_data)

    def _record_module(self, module: nn.Module, seen: set[int], copy_data: bool) -> None:
        if id(module) in seen:
            return
        seen.add(id(module))
        state = dict(module.__dict__)
        for table in ("_parameters", "_buffers", "_modules"):
            if table in state:
                state[table] = dict(state[table])
        self._objects.append((module, state))
        for key, value in module.__dict__.items():
            if isinstance(value, TensorStatistic) and id(value) not in seen:
                seen.add(id(value))
                self._objects.append((value, dict(value.__dict__)))
            elif (
                isinstance(value, torch.Tensor) and not isinstance(value, nn.Parameter)
                and (value.numel() == 1 or (copy_data and key not in _BATCH_TENSORS))
            ):
                # Scaling tensors are overwritten in place (``.data[0] = value``), eigenvalues may
                # be zeroed in place; stored batch tensors are only ever replaced.
                self._tensors.append((value, value.detach().clone()))
        if copy_data:
            for tensor in (*module._parameters.values(), *module._buffers.values()):
                if tensor is not None:
                    self._tensors.append((tensor, tensor.detach().clone()))

    @torch.no_grad()
    def restore(self) -> None:
        """Put every recorded attribute, table and tensor value back."""
        for obj, state in self._objects:
            obj.__dict__.clear()
            obj.__dict__.update(state)
        for tensor, saved in self._tensors:
            if tensor.shape == saved.shape and tensor.dtype == saved.dtype:
                tensor.data.copy_(saved)
            else:
                tensor.data = saved


@contextlib.contextmanager
def all_or_nothing(modules: Iterable[Any], *, copy_data: bool) -> Iterator[None]:
    """Context: when the block raises, every module of ``modules`` is put back as it was on entry.

    Args:
        modules: the modules the block may change (non-modules are ignored).
        copy_data: also record parameter / buffer values (blocks that change weights in place).
    """
    modules = [m for m in modules if isinstance(m, nn.Module)]
    # id -> whether the outer call also copied the values
    active: dict[int, bool] = getattr(_active, "recorded", {})
    if all(id(m) in active and (active[id(m)] or not copy_data) for m in modules):
        yield
        return
    snapshot = Snapshot(modules, copy_data=copy_data)
    _active.recorded = {**active, **{id(m): copy_data or active.get(id(m), False) for m in modules}}
    try:
        yield
    except BaseException:
        snapshot.restore()
        raise
    finally:
        _active.recorded = active


def atomic(scope: Callable[..., Iterable[Any]], *, copy_data: bool) -> Callable[[_F], _F]:
    """Decorator: the method's call is all-or-nothing over the modules ``scope(self)`` returns.

    Args:
        scope: ``scope(self)`` → the modules the method may change (non-modules are ignored).
        copy_data: also record parameter / buffer values (methods that change weights in place).
    """

    def decorate(method: _F) -> _F:
        @functools.wraps(method)
        def wrapper(self, *args: Any, **kwargs: Any) -> Any:
            with all_or_nothing(scope(self), copy_data=copy_data):
                return method(self, *args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def module_and_neighbours(module: Any) -> list[Any]:
    """The module, its previous and next modules (growing or merge)."""
    return [module, module.__dict__.get("previous_module"), module.__dict__.get("next_module")]


def merge_and_neighbours(merge: Any) -> list[Any]:
    """A merge, its previous and its next modules."""
    return [merge, *merge.previous_modules, *merge.next_modules]
