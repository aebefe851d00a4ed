"""Names the command line checks before any heavy import, and the texts of their failures.

Kept free of torch / numpy imports so that ``python -m gromo grow --help`` and argument errors stay
instant; the data loaders and the plots raise the same texts.
"""

from __future__ import annotations

DATASETS = ("digits", "synthetic")

MATPLOTLIB_MISSING = (
    "plots need matplotlib (pip install matplotlib, or the [demo] extra); use --no-plots to skip them"
)


def unknown_dataset(name: str) -> str:
    """The text for a dataset name that is neither a bundled data set nor a ``.npz`` path."""
    return f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}"
