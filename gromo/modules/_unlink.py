"""Graph unlinking for ``__del__`` of the growing-module bases (GroMo's destructor semantics).

Growing modules hold plain references to their neighbours (``previous_module`` / ``next_module``,
or a merge's ``previous_modules`` / ``next_modules`` lists). These helpers cut those links from
both sides without ever raising, because ``__del__`` also runs at garbage collection and at
interpreter shutdown. The growing classes are imported at call time (they import this file).
"""

from __future__ import annotations

from torch import nn

__all__ = ["unlink", "detach_neighbours"]


def unlink(module: nn.Module, own: str, back: str, back_list: str) -> None:
    """Cut ``module.<own>`` and the link back to ``module`` from that neighbour (never raises).

    A GrowingModule neighbour has its ``<back>`` reference cleared when it is ``module``; a merge
    neighbour has ``module`` removed from its ``<back_list>`` and is resized. ``module.<own>`` is
    cleared even when the neighbour's update fails (``__del__`` must be exception-safe).
    """
    try:
        from gromo.modules.growing_module import GrowingModule, MergeGrowingModule

        neighbour = module.__dict__.get(own)
        if isinstance(neighbour, GrowingModule):
            if neighbour.__dict__.get(back) is module:
                neighbour.__dict__[back] = None
        elif isinstance(neighbour, MergeGrowingModule):
            members = neighbour.__dict__.get(back_list, [])
            if any(member is module for member in members):
                members[:] = [member for member in members if member is not module]
                neighbour.update_size()
    except Exception:  # noqa: BLE001 (a destructor must not raise)
        pass
    finally:
        try:
            module.__dict__[own] = None
        except Exception:  # noqa: BLE001
            pass


def detach_neighbours(merge: nn.Module, own_list: str, back: str, back_list: str) -> None:
    """Merge side of ``__del__``: detach every neighbour in ``merge.<own_list>``, then empty it.

    A GrowingModule neighbour linked back to ``merge`` (``<back>`` is ``merge``) runs its own
    ``__del__`` (it leaves the graph, as in GroMo); a merge neighbour drops ``merge`` from its
    ``<back_list>`` and is resized. Never raises.
    """
    try:
        from gromo.modules.growing_module import GrowingModule, MergeGrowingModule

        neighbours = list(merge.__dict__.get(own_list) or [])
    except Exception:  # noqa: BLE001 (a destructor must not raise; also at interpreter shutdown)
        return
    for neighbour in neighbours:
        try:
            if isinstance(neighbour, GrowingModule):
                if neighbour.__dict__.get(back) is merge:
                    neighbour.__del__()
            elif isinstance(neighbour, MergeGrowingModule):
                members = neighbour.__dict__.get(back_list, [])
                if any(member is merge for member in members):
                    members[:] = [member for member in members if member is not merge]
                    neighbour.update_size()
        except Exception:  # noqa: BLE001
            pass
    try:
        merge.__dict__[own_list] = []
    except Exception:  # noqa: BLE001
        pass
