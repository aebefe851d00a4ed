"""GroMo's text description of a growing module (its ``__str__(verbose)``): the verbosity levels,
their validation and the one-line-per-attribute layout, shared by both module families.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

__all__ = ["describe"]


def describe(
    verbose: int,
    brief: Callable[[], str],
    one_line: Callable[[], str],
    header: Callable[[], str],
    fields: Callable[[], Iterable[tuple[str, object]]],
) -> str:
    """``brief()`` (verbose 0), ``one_line()`` (1), or ``header()`` then one tab-indented
    ``label: value`` line per field (≥ 2; an empty label prints the value alone).

    Raises:
        ValueError: ``verbose < 0``.
    """
    if verbose < 0:
        raise ValueError(f"verbose={verbose} is not a valid value.")
    if verbose == 0:
        return brief()
    if verbose == 1:
        return one_line()
    return "\n".join([header(), *(f"\t{label}: {value}" if label else f"\t{value}" for label, value in fields())])
