"""gromo_kernels: statistics and solves for growing neural networks (public API re-exports)."""

from .geometry import Conv2dGeometry
from .results import (
    AddedNeurons,
    DeltaResult,
    FullGrowthStats,
    InvSqrtResult,
    RestrictedGrowthStats,
    SolveResult,
)
from .statistics import *  # noqa: F401,F403
from .linalg import *  # noqa: F401,F403
from . import statistics as _statistics, linalg as _linalg

__version__ = "0.1.0"

__all__ = [
    "Conv2dGeometry",
    "AddedNeurons",
    "DeltaResult",
    "FullGrowthStats",
    "InvSqrtResult",
    "RestrictedGrowthStats",
    "SolveResult",
    *_statistics.__all__,
    *_linalg.__all__,
]
