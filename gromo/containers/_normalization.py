"""Normalisation layers of the convolutional networks (ResNet, VGG): plain and growing, batch or group.

``norm(kind, c)`` builds ``BatchNorm2d`` / ``GroupNorm`` (or None); ``growing_norm(kind, c)`` the
growing versions, used after the convolutions whose output channels grow. The keyword arguments are
``base_norm_kwargs`` updated with the caller's.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from gromo.modules.growing_normalisation import GrowingBatchNorm2d, GrowingGroupNorm, base_norm_kwargs
from gromo.utils._assertions import gromo_assert

__all__ = ["complete_norm_kwargs", "norm", "growing_norm"]

_UNVALIDATED = "Normalization should have been validated before use."


def complete_norm_kwargs(normalization_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """``base_norm_kwargs`` updated with ``normalization_kwargs``."""
    kwargs = dict(base_norm_kwargs)
    kwargs.update(normalization_kwargs or {})
    return kwargs


def norm(kind: str | None, channels: int, kwargs: dict[str, Any], device: torch.device) -> nn.Module | None:
    """A plain normalisation of ``channels`` channels (None for ``kind=None``)."""
    if kind is None:
        return None
    if kind == "batch":
        return nn.BatchNorm2d(channels, eps=kwargs["eps"], momentum=kwargs["momentum"], affine=kwargs["affine"],
                              track_running_stats=kwargs["track_running_stats"], device=device)
    gromo_assert(kind == "group", _UNVALIDATED)
    return nn.GroupNorm(kwargs["num_groups"], channels, eps=kwargs["eps"], affine=kwargs["affine"], device=device)


def growing_norm(kind: str | None, channels: int, kwargs: dict[str, Any], device: torch.device) -> nn.Module | None:
    """A growing normalisation of ``channels`` (possibly 0) channels (None for ``kind=None``)."""
    if kind is None:
        return None
    if kind == "batch":
        return GrowingBatchNorm2d(channels, eps=kwargs["eps"], momentum=kwargs["momentum"], affine=kwargs["affine"],
                                  track_running_stats=kwargs["track_running_stats"], device=device)
    gromo_assert(kind == "group", _UNVALIDATED)
    return GrowingGroupNorm(kwargs["num_groups"], channels, eps=kwargs["eps"], affine=kwargs["affine"], device=device)
