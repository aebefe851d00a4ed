"""gromo_kernels: statistics and solves for growing neural networks (public API re-exports)."""

from . import linalg as _linalg
from . import statistics as _statistics
from ._backend import use_backend
from .geometry import Conv2dGeometry
from .linalg import *  # noqa: F401,F403
from .results import (
    AddedNeurons,
    DeltaResult,
    FullGrowthStats,
    InvSqrtResult,
    RestrictedGrowthStats,
    SolveResult,
)
from .statistics import *  # noqa: F401,F403

__version__ = "0.1.0"

__all__ = [
    "use_backend",
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
