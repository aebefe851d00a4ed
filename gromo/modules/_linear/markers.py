"""Marker base of ``LinearMergeGrowingModule``, so that ``LinearGrowingModule`` recognises a linear
merge predecessor without importing the file that defines it (which imports the layer).
"""

from __future__ import annotations

from gromo.modules.growing_module import MergeGrowingModule

__all__ = ["LinearMergeGrowingModuleBase"]


class LinearMergeGrowingModuleBase(MergeGrowingModule):
    """Marker: the base of ``LinearMergeGrowingModule`` and nothing else."""
