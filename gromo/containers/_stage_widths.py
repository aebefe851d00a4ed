"""Per-block widths of the staged convolutional builders (ResNet, VGG) from their ``hidden_channels``.

``hidden_channels`` gives, per stage, one int for all its blocks or a tuple of one width per block;
None stands for a default width per stage.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator


def stage_widths(hidden_channels: tuple[int | tuple[int, ...], ...] | None, counts: tuple[int, ...],
                 counts_name: str, default_width: Callable[[int], int], *,
                 accept_bool: bool) -> Iterator[tuple[int, ...]]:
    """The widths of every block, one tuple per stage.

    A generator, so that a caller checking the widths of a stage does so before the next stage's
    entry is read: errors come in stage order.

    Args:
        hidden_channels: per stage an int or a tuple of ``counts[stage]`` widths; None for
            ``default_width(stage)`` everywhere.
        counts: blocks per stage.
        counts_name: the argument ``counts`` came from, for the messages.
        default_width: stage index → width of its blocks when ``hidden_channels`` is None.
        accept_bool: a bool entry counts as an int (else it is a wrong type).
    Yields:
        the widths of the stage's blocks.
    Raises:
        ValueError: ``hidden_channels`` has not one entry per stage, or a tuple entry not one width
            per block.
        TypeError: an entry is neither an int nor a tuple.
    """
    if hidden_channels is None:
        for stage, count in enumerate(counts):
            yield (default_width(stage),) * count
        return
    if len(hidden_channels) != len(counts):
        raise ValueError(
            f"hidden_channels must have {len(counts)} elements (one per stage), but got {len(hidden_channels)}."
        )
    for stage, (entry, count) in enumerate(zip(hidden_channels, counts)):
        if isinstance(entry, int) and (accept_bool or not isinstance(entry, bool)):
            yield (entry,) * count
        elif isinstance(entry, (list, tuple)):
            if len(entry) != count:
                raise ValueError(
                    f"Stage {stage}: hidden_channels has {len(entry)} elements but {counts_name} is {count}."
                )
            yield tuple(entry)
        else:
            raise TypeError(f"Stage {stage}: hidden_channels element must be int or tuple, got {type(entry).__name__}.")
