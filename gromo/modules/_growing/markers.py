"""Marker bases of the two growing-module families, so each can recognise the other.

``GrowingModule`` and ``MergeGrowingModule`` test each other with ``isinstance`` everywhere (a
merge predecessor routes the stored input, a growing predecessor shares its S, ...). Their code
lives in files that cannot import each other, so each family derives from a marker defined here, at
the bottom of the import graph (torch's ``_ConvNd`` idiom): ``isinstance(m, GrowingModuleBase)``
is ``isinstance(m, GrowingModule)``.
"""

from __future__ import annotations

from torch import nn

__all__ = ["GrowingModuleBase", "MergeGrowingModuleBase"]


class GrowingModuleBase(nn.Module):
    """Marker: the base of ``GrowingModule`` and nothing else."""


class MergeGrowingModuleBase(nn.Module):
    """Marker: the base of ``MergeGrowingModule`` and nothing else."""
