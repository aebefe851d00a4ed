"""Keep an optimizer's state across growth, when apply_change replaces layers and their Parameters.

Growth rebuilds ``nn.Linear`` / ``nn.Conv2d`` objects: the grown weight is a
new Parameter whose leading block ``[:out_old, :in_old, ...]`` holds the old values (new rows /
columns are appended at the end). GroMo's users rebuild the optimizer by hand and lose Adam's
moments. Here every state tensor shaped like its parameter (Adam's ``exp_avg``, ``exp_avg_sq``,
``max_exp_avg_sq``, SGD's ``momentum_buffer``) is copied into the same leading block of a zero tensor
of the new shape; scalar entries (Adam's ``step``) are carried over unchanged. Parameters are
matched by their name in ``model.named_parameters()``.
"""

from __future__ import annotations

import torch
from torch import nn


class ParameterSnapshot:
    """Names, shapes and optimizer state of a model's parameters, taken before a growth step.

    Args:
        model: the model whose ``named_parameters()`` the optimizer optimises.
        optimizer: the optimizer holding state for (some of) those parameters.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer):
        group_of = {id(p): g for g, group in enumerate(optimizer.param_groups) for p in group["params"]}
        self.optimizer = optimizer
        self.entries: dict[str, tuple[torch.Size, int | None, dict]] = {}
        for name, param in model.named_parameters():
            state = optimizer.state.get(param, {})
            self.entries[name] = (param.shape, group_of.get(id(param)), dict(state))


def _grown_state_value(value, old_shape: torch.Size, new_param: torch.Tensor):
    """Embed a parameter-shaped state tensor into a zero tensor of the new shape (other values as is)."""
    if not (isinstance(value, torch.Tensor) and value.shape == old_shape and value.dim() > 0):
        return value
    if value.shape == new_param.shape:
        return value.clone()
    if value.dim() != new_param.dim() or any(o > n for o, n in zip(value.shape, new_param.shape)):
        raise ValueError(
            f"parameter shape changed from {tuple(old_shape)} to {tuple(new_param.shape)}: "
            "only growth by appending rows/columns keeps optimizer state"
        )
    grown = torch.zeros(new_param.shape, dtype=value.dtype, device=value.device)
    grown[tuple(slice(0, size) for size in value.shape)] = value
    return grown


def rebuild_optimizer(model: nn.Module, snapshot: ParameterSnapshot) -> torch.optim.Optimizer:
    """A new optimizer of the same class over ``model.parameters()``, old state carried over.

    Parameter groups keep their hyper-parameters; a parameter that did not exist before joins the
    group of the first parameter of the same module prefix, else group 0, with empty state.

    Args:
        model: the grown model.
        snapshot: taken with :class:`ParameterSnapshot` before the growth step.

    Returns:
        The new optimizer (the old one must no longer be stepped).

    Raises:
        ValueError: a parameter shrank or changed rank (state cannot be carried).
    """
    old = snapshot.optimizer
    groups: list[list[nn.Parameter]] = [[] for _ in old.param_groups]
    carried: dict[nn.Parameter, dict] = {}
    for name, param in model.named_parameters():
        entry = snapshot.entries.get(name)
        if entry is None:
            prefix = name.rsplit(".", 1)[0]
            sibling = next((e for n, e in snapshot.entries.items() if n.startswith(prefix + ".")), None)
            group = sibling[1] if sibling is not None and sibling[1] is not None else 0
            groups[group].append(param)
            continue
        old_shape, group, state = entry
        if group is None:
            # The old optimizer did not optimise this parameter: keep it out of the new one too.
            continue
        groups[group].append(param)
        if state:
            carried[param] = {key: _grown_state_value(v, old_shape, param) for key, v in state.items()}
    param_groups = []
    for group_params, group in zip(groups, old.param_groups):
        options = {key: value for key, value in group.items() if key != "params"}
        param_groups.append({"params": group_params, **options})
    new = type(old)(param_groups, **old.defaults)
    for param, state in carried.items():
        new.state[param] = state
    return new


class LeanAdam(torch.optim.Adam):
    """``torch.optim.Adam``, bit for bit, minus the ~1.3 s ``torch._dynamo`` import of its first use.

    ``Optimizer.add_param_group`` / ``zero_grad`` / ``state_dict`` / ``load_state_dict`` and
    ``Adam.step`` are wrapped by torch in
    functions whose only job is to keep ``torch.compile`` out (they import ``torch._dynamo`` on the
    first call, which pulls in sympy and triton: the "first-call warm-up" of a growth run). This
    optimizer is never compiled, so it calls the wrapped functions directly (``step`` under
    ``no_grad``, as the wrapper does). Where a torch version lacks the ``__wrapped__`` attribute the
    regular methods are used. Everything else (state layout, ``state_dict``, hooks) is Adam's.
    """

    def add_param_group(self, param_group: dict) -> None:
        plain = getattr(torch.optim.Optimizer.add_param_group, "__wrapped__", None)
        if plain is None:
            return super().add_param_group(param_group)
        return plain(self, param_group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        plain = getattr(torch.optim.Optimizer.zero_grad, "__wrapped__", None)
        if plain is None:
            return super().zero_grad(set_to_none)
        return plain(self, set_to_none)

    def state_dict(self) -> dict:
        plain = getattr(torch.optim.Optimizer.state_dict, "__wrapped__", None)
        return super().state_dict() if plain is None else plain(self)

    def load_state_dict(self, state_dict: dict) -> None:
        plain = getattr(torch.optim.Optimizer.load_state_dict, "__wrapped__", None)
        return super().load_state_dict(state_dict) if plain is None else plain(self, state_dict)

    def step(self, closure=None):
        plain = getattr(torch.optim.Adam.step, "__wrapped__", None)
        if plain is None or self.defaults.get("differentiable", False):
            return super().step(closure)
        with torch.no_grad():
            return plain(self, closure)
