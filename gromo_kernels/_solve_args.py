"""Argument checks of the public solves, and the grouping of lists of layers by shape.

One host synchronisation per call serves every check (:func:`screen`): NaN/Inf, symmetry and
threshold validity. On CPU, where a host read costs nothing, two whole-tensor tests per argument (a
finite sum, S equal to Sᵀ) accept the common case first; only what they do not accept goes through
the per-element checks, which word every error and warning.

Asymmetry, relative to max|S| and with ε of S's dtype: up to 64·ε is the rounding of the product
that built S (``x.T @ x`` is not exactly symmetric) and passes silently; up to √ε is rounding-sized
accumulated noise and gives a UserWarning; anything larger is a ValueError.
"""

from __future__ import annotations

import functools
import math
import warnings

import torch

from ._precision import accumulate_dtype
from ._validation import FLOAT_DTYPES, check_same_device_dtype, check_tensor
from .torch_impl import linalg as _impl

_WORK_DTYPES = (torch.float32, torch.float64)
# Asymmetry (× max|S|) below this many ulps is the rounding of the product that built S: no warning.
_SILENT_ASYMMETRY_ULPS = 64


# ----------------------------------------------------------------------------------------------
# Argument checks
# ----------------------------------------------------------------------------------------------


def work_dtype(dtype) -> torch.dtype:
    if dtype is None:
        return torch.float64
    rule = "dtype must be None, torch.float32 or torch.float64, got {}"
    if not isinstance(dtype, torch.dtype):
        raise TypeError(rule.format(type(dtype).__name__))
    if dtype not in _WORK_DTYPES:
        raise ValueError(rule.format(dtype))
    return dtype


def nonneg_number(name: str, value, *, allow_none: bool = True):
    """A real number ≥ 0 (or None); tensors are accepted for thresholds that vary per batch element."""
    if value is None and allow_none:
        return None
    if isinstance(value, torch.Tensor):
        if value.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{name} must be a float or a floating tensor, got {value.dtype}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a non-negative float, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite non-negative float, got {value!r}")
    return float(value)


def square(name: str, t: torch.Tensor, hint: str) -> int:
    if t.shape[-1] != t.shape[-2]:
        raise ValueError(f"{name} must be square {hint}, got shape {tuple(t.shape)}")
    return t.shape[-1]


def same_batch(name: str, t: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    if tuple(t.shape[:-2]) != tuple(ref.shape[:-2]):
        raise ValueError(
            f"{name} has batch dimensions {tuple(t.shape[:-2])} but {ref_name} has {tuple(ref.shape[:-2])}"
        )


@functools.lru_cache(maxsize=256)
def _rounded(value: float, dtype: torch.dtype) -> float:
    """``value`` rounded to ``dtype`` (inf beyond its range), as a float."""
    return float(torch.tensor(value, dtype=dtype))


def threshold_batch(name: str, value, default, batch: tuple, like: torch.Tensor) -> torch.Tensor | float | None:
    """A threshold in the accumulate dtype of ``like``, checked by :func:`screen`: a tensor as a
    per-element (B,) tensor (no host sync); a float (already validated by :func:`nonneg_number`) as
    a float rounded to that dtype, the same for every element (inf beyond its range, refused like a
    tensor's); None when ``value`` and ``default`` are None (the precision floor applies)."""
    value = default if value is None else value
    if value is None:
        return None
    acc = accumulate_dtype(like.dtype)
    if not isinstance(value, torch.Tensor):
        return _rounded(float(value), acc)
    try:
        t = torch.broadcast_to(value.to(device=like.device, dtype=acc), batch)
    except RuntimeError:
        raise ValueError(
            f"{name} of shape {tuple(value.shape)} does not broadcast to the batch shape {batch}"
        ) from None
    return t.reshape(math.prod(batch))


def screen(items, thresholds, *, check_finite: bool, element_name, stacklevel: int = 4) -> bool:
    """NaN/Inf, symmetry and threshold checks with ONE host synchronisation.

    items: (name, tensor (B, ...), symmetric?) with a flattened batch; thresholds: (name, (B,)).
    Raises ValueError naming the argument (and the batch element); warns for rounding asymmetry.
    Returns whether every symmetric item is exactly symmetric (the solve then skips (S + Sᵀ)/2).
    """
    if _plainly_valid(items, thresholds, check_finite):
        return True
    flags, what = [], []
    for name, t, symmetric in items:
        if t is None or t.numel() == 0:
            continue
        # max|t| is inf/NaN exactly when t holds Inf/NaN: one pass serves both checks.
        amax = _impl.max_abs(t).to(torch.float64)
        if check_finite:
            flags.append((~torch.isfinite(amax)).to(torch.float64))
            what.append(("finite", name))
        if symmetric:
            asym = _impl.asymmetry(t).to(torch.float64)
            rel = torch.where(amax > 0, asym / torch.where(amax > 0, amax, torch.ones_like(amax)), asym)
            # NaN/Inf (only reachable with check_finite=False) is not an asymmetry.
            rel = torch.nan_to_num(rel, nan=0.0, posinf=0.0)
            flags.append(rel)
            eps = torch.finfo(t.dtype).eps
            what.append(("symmetric", name, eps ** 0.5, _SILENT_ASYMMETRY_ULPS * eps))
    for name, t in thresholds:
        if isinstance(t, float) and not math.isfinite(t):  # beyond the statistics' dtype once rounded
            raise _bad_threshold(name)
        if isinstance(t, torch.Tensor) and t.numel():  # None: the precision floor, nothing to check
            flags.append(((t < 0) | ~torch.isfinite(t)).to(torch.float64).reshape(-1))
            what.append(("threshold", name))
    if not flags:
        return True
    values = torch.stack(flags).tolist()  # every row has one entry per batch element
    exactly_symmetric = True
    for info, row in zip(what, values):
        kind, name = info[0], info[1]
        if kind == "finite":
            bad = [i for i, v in enumerate(row) if v > 0]
            if bad:
                raise ValueError(f"{element_name(name, bad[0])} contains NaN or Inf")
        elif kind == "threshold":
            if any(v > 0 for v in row):
                raise _bad_threshold(name)
        else:
            limit, silent = info[2], info[3]
            worst = max(range(len(row)), key=row.__getitem__)
            exactly_symmetric = exactly_symmetric and row[worst] == 0
            if row[worst] > limit:
                raise ValueError(
                    f"{element_name(name, worst)} is not symmetric: max |{name} − {name}ᵀ| is "
                    f"{row[worst]:.3g} × max |{name}| (rounding allows {limit:.1g})"
                )
            if row[worst] > silent:
                warnings.warn(
                    f"{element_name(name, worst)} is not exactly symmetric (max |{name} − {name}ᵀ| = "
                    f"{row[worst]:.3g} × max |{name}|, rounding-sized); using ({name} + {name}ᵀ)/2",
                    UserWarning,
                    stacklevel=stacklevel,
                )
    return exactly_symmetric


def _plainly_valid(items, thresholds, check_finite: bool) -> bool:
    """CPU tensors with nothing for :func:`screen` to report, every symmetric one exactly symmetric:
    found with two whole-tensor operations per item (a host read costs nothing on CPU, and small
    solves are dominated by the number of operations). False sends the call to the full screen."""
    for _, t, symmetric in items:
        if t is None or t.numel() == 0:
            continue
        if t.device.type != "cpu":
            return False
        # A sum is finite when no entry is NaN/Inf, unless finite entries overflow it (then the full
        # screen decides).
        if check_finite and not math.isfinite(t.sum()):
            return False
        if symmetric and not torch.equal(t, t.mT):
            return False
    return not any((isinstance(t, torch.Tensor) and t.numel()) or (isinstance(t, float) and not math.isfinite(t))
                   for _, t in thresholds)


def _bad_threshold(name: str) -> ValueError:
    return ValueError(f"{name} must be finite and non-negative")


def plain_name(name: str, index: int) -> str:
    return name


def batched_name(batch: tuple):
    if len(batch) == 0:
        return plain_name

    def name_of(name: str, index: int) -> str:
        return f"{name} (batch element {tuple(int(i) for i in unravel(index, batch))})"

    return name_of


def unravel(index: int, shape: tuple) -> list:
    out = []
    for size in reversed(shape):
        out.append(index % size)
        index //= size
    return list(reversed(out))


# ----------------------------------------------------------------------------------------------
# Lists of layers: grouped by shape, one batched call per group
# ----------------------------------------------------------------------------------------------


def as_list(name: str, value, n: int, *, allow_none_entries: bool):
    if value is None:
        return [None] * n
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{name} must be a list of tensors (or None) when S is a list, got {type(value).__name__}")
    if len(value) != n:
        raise ValueError(f"{name} has {len(value)} entries but there are {n} layers")
    if not allow_none_entries and any(v is None for v in value):
        raise TypeError(f"{name} entries must be tensors")
    return list(value)


def groups(keys: list) -> dict:
    groups: dict = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    return groups


def key(t: torch.Tensor | None):
    return None if t is None else (tuple(t.shape), t.dtype, str(t.device))


def stack_group(tensors: list, idx: list[int]):
    if tensors[idx[0]] is None:
        return None
    return torch.stack([tensors[i] for i in idx])


def check_list_item(kind: str, i: int, S, M, E) -> None:
    """Type, device and dtype checks for one layer of a list call (the caller checks its shapes)."""
    names = ("S", "M" if kind == "delta" else "N", "E")
    for name, t in zip(names, (S, M, E)):
        if t is None and name != names[1]:
            continue
        check_tensor(f"{name}[{i}]", t, ndim=2, shape_hint="(one layer)")
    # Device/dtype agreement is reported against the solve's main operand (S for delta, N for added).
    order = (0, 1, 2) if kind == "delta" else (1, 0, 2)
    check_same_device_dtype(**{f"{names[k]}[{i}]": (S, M, E)[k] for k in order})


def per_group(lists: list[list], batched) -> list:
    """One ``batched(stacked_lists, element_name)`` call per group of layers with equal shapes, dtype
    and device; its per-element results put back in layer order."""
    n = len(lists[0])
    results: list = [None] * n
    for idx in groups([tuple(key(values[i]) for values in lists) for i in range(n)]).values():
        out = batched([stack_group(values, idx) for values in lists], indexed_name(idx))
        for j, i in enumerate(idx):
            results[i] = out[j]
    return results


def indexed_name(idx: list[int]):
    def name_of(name: str, index: int) -> str:
        return f"{name}[{idx[index]}]"

    return name_of


