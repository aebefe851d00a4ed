"""Batched, mixed-precision PSD solves on the PyTorch path (CPU and CUDA).

Every routine works on a flattened batch ``(B, d, d)`` of matrices that the public layer
(gromo_kernels/linalg.py) has validated (finite, symmetric up to rounding). The maths is one object,
the *cutoff pseudo-inverse factor* of a symmetric PSD matrix:

    S' = (S + Sᵀ)/(2c),  S'⁺ = Wᵀ W,  kept: λ(S') > cutoff = max(atol/c, rtol·‖S'‖₂),  W (d, d)

* ``c`` is a power of 4 that brings max|S| into [1/4, 1): exact, so √c is exact too, and the same
  code handles a scale sweep 1e-20…1e20 in fp32 without overflow or underflow. Right-hand sides are
  scaled by powers of 2 the same way; results are rescaled in fp64.
* Cholesky fast path: ``W = L⁻¹`` (two triangular solves per use, ``d³/3`` flops to build). It is
  taken only where it gives the eigh pseudo-inverse's answer, i.e. every eigenvalue is above the
  cutoff: Cholesky succeeded and λ_min — estimated from above by 3 steps of block inverse iteration
  through the factor (4 fixed probe vectors, measured ≤ 1.33·λ_min) — exceeds 3× the cutoff
  computed with 1.5× a block-power estimate of λ_max (measured ≥ 0.8·λ_max). Only matrices with
  λ_min within ~4× of the cutoff go through eigh needlessly (correct, slower). The estimates are
  not bounds in the worst case (a probe nearly orthogonal to an extreme eigenvector); then at worst
  eigenvalues a small factor below the cutoff are inverted, never rounding noise far below it.
  Rows/columns that are exactly zero (dead ReLUs) are deflated inside Cholesky: e_i is an exact
  eigenvector with eigenvalue 0, dropped by every cutoff; a unit diagonal and a zeroed right-hand
  side give exactly the pseudo-inverse.
* Otherwise ``W = diag(w) Vᵀ`` from ``eigh`` with ``w = λ^{-1/2}`` on kept eigenvalues and 0 elsewhere
  (negative and noise eigenvalues are dropped, so ``tr(Mᵀ S⁺ M) = ‖W M‖² ≥ 0`` always). When eigh
  fails to converge (GroMo #192) each element is retried alone, then decomposed through the SVD,
  instead of perturbing the matrix.

Mixed precision: with fp32 work (solves and new neurons) only the Cholesky path runs in fp32; an
element that needs the pseudo-inverse is solved in fp64 directly (an fp32 eigh near the cutoff is
measured 10–400× less accurate than fp64 on the same data). Every element is also checked
afterwards and redone in fp64 when it fails — non-finite results; a LAPACK-style residual ratio
‖V_rᵀ(S'X' − M')‖ / (‖S'‖‖X'‖ d ε) ≥ 30 on the retained subspace (solves); on the eigh path
(psd_inv_sqrt), a kept eigenvalue within 8× of fp32's resolution d·ε₃₂·‖S‖; or a requested cutoff
below that resolution with a spectrum reaching it (fp32 cannot tell which eigenvalues fp64 would
keep). See PsdFactor.unresolved_in_fp32.

Workspaces: on CPU the scaled copy of S and its Cholesky factor live in per-thread reusable buffers
(see _workspace); nothing returned to a caller ever aliases them.

Host synchronisations (thresholds stay tensors): one per factorisation to split the batch between
the Cholesky and eigh paths, one for the escalation mask in fp32 mode, and in the public layer one
for validation and one for the kept-neuron counts. Inside a ``factorization_cache()`` block
(factor_cache.py), one more per factorisation for the matrix fingerprints and one per candidate
entry compared; factors found there are applied element by element instead of batched.
"""

from __future__ import annotations

import functools
import threading
from typing import NamedTuple

import torch

from .factor_cache import active_cache, clear_pool, usable_buffer

__all__ = [
    "PsdFactor",
    "factor_psd_torch",
    "eigh_psd_torch",
    "pow4_scale",
    "pow2_scale",
    "max_abs",
    "asymmetry",
    "clear_workspace",
    "solve_psd_torch",
    "psd_inv_sqrt_torch",
    "optimal_delta_torch",
    "optimal_added_neurons_torch",
    "SolveOut",
    "InvSqrtOut",
    "DeltaOut",
    "AddedOut",
]

# Block power / inverse iteration that estimates λ_max and λ_min on the Cholesky path.
POWER_ITERATIONS = 3
POWER_BLOCK = 4
# The λ_max estimate is a lower bound (measured ≥ 0.8·λ_max for κ 1…1e12, d ≤ 1153, 3 steps): the
# cutoff uses this multiple of it.
LAMBDA_MAX_SAFETY = 1.5
# Cholesky is used only when the λ_min estimate (an upper bound, measured ≤ 1.33·λ_min) clears that
# cutoff by this factor; everything closer goes through eigh, which is exact.
CHOLESKY_MARGIN = 3.0
# LAPACK-style residual ratio above which an fp32 solve is redone in fp64.
RESIDUAL_LIMIT = 30.0
# fp32 resolves eigenvalues down to about d·ε₃₂·‖S‖; this factor widens the band it is not trusted in.
RESOLUTION_FACTOR = 8.0


def _eps(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).eps


# Reusable CPU buffers for the internal (B, d, d) temporaries (the scaled copy of S and its Cholesky
# factor). glibc serves blocks above 32 MB with a fresh mmap, so every new (5, 1153, 1153) fp64
# tensor costs ~30 ms of page faults on a 2-core machine, as much as its Cholesky. CUDA has torch's
# caching allocator and never uses these. Per thread, at most WORKSPACE_MAX_BYTES in total.
WORKSPACE_MAX_BYTES = 512 * 2**20
_WORKSPACE = threading.local()


def _workspace(name: str, shape: tuple, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An uninitialised tensor of ``shape`` for internal use within one call (never returned)."""
    numel = 1
    for size in shape:
        numel *= size
    nbytes = numel * torch.empty((), dtype=dtype).element_size()
    if device.type != "cpu" or nbytes > WORKSPACE_MAX_BYTES:
        return torch.empty(shape, dtype=dtype, device=device)
    buffers = getattr(_WORKSPACE, "buffers", None)
    if buffers is None:
        buffers = _WORKSPACE.buffers = {}
    key = (name, dtype)
    buf = buffers.pop(key, None)
    if buf is None or buf.numel() < numel or not usable_buffer(buf):
        buf = None
        total = sum(b.numel() * b.element_size() for b in buffers.values())
        while buffers and total + nbytes > WORKSPACE_MAX_BYTES:  # evict the least recently used
            oldest = next(iter(buffers))
            total -= buffers[oldest].numel() * buffers[oldest].element_size()
            del buffers[oldest]
        buf = torch.empty(numel, dtype=dtype, device=device)
    buffers[key] = buf  # most recently used last
    return buf[:numel].view(shape)


def clear_workspace() -> None:
    """Free this thread's reusable solve buffers (workspaces and the factorization_cache() pool)."""
    _WORKSPACE.buffers = {}
    clear_pool()


def max_abs(a: torch.Tensor) -> torch.Tensor:
    """max|a| per batch element, NaN if a holds NaN: a (B, ...) -> (B,) (amax/amin: no |a| temporary)."""
    flat = a.reshape(a.shape[0], -1)
    return torch.maximum(flat.amax(dim=-1), -flat.amin(dim=-1))


def asymmetry(a: torch.Tensor) -> torch.Tensor:
    """max|a_i − a_iᵀ| per batch element: a (B, d, d) -> (B,).

    On CPU, large matrices go one at a time through torch's blocked 2-D transpose copy into one
    reused buffer (a batched ``a − a.mT`` reads with a cache-hostile stride and allocates B·d²).
    """
    b, d = a.shape[0], a.shape[-1]
    if a.device.type != "cpu" or d * d < 65536:
        return max_abs(a - a.mT)
    buf = torch.empty(d, d, dtype=a.dtype, device=a.device)
    out = []
    for i in range(b):
        buf.copy_(a[i].mT)
        buf.sub_(a[i])
        out.append(torch.maximum(buf.amax(), -buf.amin()))
    return torch.stack(out)


def pow4_scale(a: torch.Tensor) -> torch.Tensor:
    """Per-element power of 4 ``c`` with max|a|/c in [1/4, 1): a (B, m, n) -> (B,) float64 (1 where a is 0)."""
    if a.shape[-1] == 0 or a.shape[-2] == 0:
        return torch.ones(a.shape[0], dtype=torch.float64, device=a.device)
    _, exponent = torch.frexp(max_abs(a).to(torch.float64))
    exponent = exponent + torch.remainder(exponent, 2)
    return torch.ldexp(torch.ones(a.shape[0], dtype=torch.float64, device=a.device), exponent)


def pow2_scale(a: torch.Tensor) -> torch.Tensor:
    """Per-element power of 2 ``m`` with max|a|/m in [1/2, 1): a (B, m, n) -> (B,) float64 (1 where a is 0)."""
    if a.shape[-1] == 0 or a.shape[-2] == 0:
        return torch.ones(a.shape[0], dtype=torch.float64, device=a.device)
    _, exponent = torch.frexp(max_abs(a).to(torch.float64))
    return torch.ldexp(torch.ones(a.shape[0], dtype=torch.float64, device=a.device), exponent)


def scaled_symmetric(s: torch.Tensor, work: torch.dtype, *, name: str = "S",
                     exactly_symmetric: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """S' = (S + Sᵀ)/(2c) in the work dtype and c (B,) float64 (a power of 4; both steps exact).

    Never modifies ``s``. S' lives in a reused workspace (valid until the next call with ``name``).
    ``exactly_symmetric`` (known from validation) skips the symmetrisation.
    """
    c = pow4_scale(s)
    sp = _workspace(f"{name}:scaled", tuple(s.shape), work, s.device)
    sp.copy_(s)
    # Scaled first: S + Sᵀ of entries near the dtype's maximum would overflow.
    sp.mul_((1.0 / c).to(work)[:, None, None])
    if not exactly_symmetric:
        if s.device.type == "cpu" and s.shape[-1] ** 2 >= 65536:
            buf = torch.empty(s.shape[-2:], dtype=work, device=s.device)
            for i in range(sp.shape[0]):
                buf.copy_(sp[i].mT)
                sp[i].add_(buf).mul_(0.5)
        else:
            sp.copy_(0.5 * (sp + sp.mT))
    return sp, c


def scaled(a: torch.Tensor, work: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """A' = A/m in the work dtype and m (B,) float64 (a power of 2)."""
    m = pow2_scale(a)
    ap = a.to(work) if a.dtype != work else a.clone()
    ap.mul_((1.0 / m).to(work)[:, None, None])
    return ap, m


@functools.lru_cache(maxsize=64)
def _probe(d: int, p: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Fixed pseudo-random unit probe vectors (d, p): deterministic results, no global RNG."""
    g = torch.Generator().manual_seed(0x5EED + d)
    v = torch.randn(d, p, generator=g, dtype=torch.float64)
    v = v / v.norm(dim=0, keepdim=True)
    return v.to(device=device, dtype=dtype)


def _extreme_eigenvalue_estimates(sp: torch.Tensor, chol: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Estimates of λ_max(S') from below and λ_min(S') from above: sp, chol (B, d, d) -> (B,), (B,).

    Block power iteration on S' and block inverse iteration through its Cholesky factor, from the
    same fixed probes. For symmetric positive A the growth ‖A v_{j+1}‖ / ‖A v_j‖ never decreases,
    so after q steps the last growth is ≥ ‖A^q v₀‖^{1/q} ≥ ‖A‖·|c₁|^{1/q} (c₁ = component of the
    unit probe on A's top eigenvector): within d^{1/(2q)} of the truth in the worst case, much
    closer in practice (3 steps, 4 probes: λ_min over-estimated ≤ 1.33×, λ_max under-estimated
    ≤ 1.25×, over geometric/linear/clustered/repeated spectra, κ 1…1e12, d ≤ 1153).
    """
    b, d = sp.shape[0], sp.shape[-1]
    p = min(POWER_BLOCK, d)
    probe = _probe(d, p, sp.dtype, sp.device).expand(b, d, p)
    tiny = torch.finfo(sp.dtype).tiny
    v, w = probe, probe
    up = down = torch.ones(b, p, dtype=sp.dtype, device=sp.device)
    for _ in range(POWER_ITERATIONS):
        y = sp @ v
        up = y.norm(dim=-2)
        v = y / up.clamp_min(tiny).unsqueeze(-2)
        # Two triangular solves: torch.cholesky_solve is ~4× slower than this on CPU for few columns.
        z = torch.linalg.solve_triangular(chol.mT, torch.linalg.solve_triangular(chol, w, upper=False),
                                          upper=True)
        down = z.norm(dim=-2)
        w = z / down.clamp_min(tiny).unsqueeze(-2)
    return up.amax(dim=-1), 1.0 / down.amax(dim=-1)


def _svd_eigh(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric eigendecomposition through the SVD (a fallback that converges where eigh did not):
    a = U Σ Vᵀ with v_i = ±u_i for symmetric a, so λ_i = σ_i·sign(u_i·v_i). Ascending like eigh.
    (Exact for PSD matrices and their rounding noise; an eigenvalue pair ±λ of an indefinite matrix
    would make u_i ambiguous.)"""
    u, s, vh = torch.linalg.svd(a)
    sign = torch.sign((u * vh.mT).sum(dim=-2))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    lam = s * sign
    order = torch.argsort(lam, dim=-1)
    return lam.gather(-1, order), u.gather(-1, order.unsqueeze(-2).expand_as(u))


def eigh_psd_torch(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """λ (B, d) ascending, V (B, d, d) of symmetric a (B, d, d), in a's dtype.

    ``torch.linalg.eigh`` first; if the batched call fails to converge, each element is retried
    alone and an element that still fails is decomposed through the SVD (no diagonal jitter: the
    answer stays the decomposition of the matrix that was given).
    """
    try:
        return torch.linalg.eigh(a)
    except RuntimeError:
        lams, vecs = [], []
        for element in a:
            try:
                lam, vec = torch.linalg.eigh(element)
            except RuntimeError:
                lam, vec = _svd_eigh(element)
            lams.append(lam)
            vecs.append(vec)
        return torch.stack(lams), torch.stack(vecs)


def _as_batch(value, b: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.to(device=device, dtype=dtype).expand(b)
    return torch.full((b,), float(value), dtype=dtype, device=device)


def _each(fn, mats, t: torch.Tensor) -> torch.Tensor:
    """fn(mats, t) on a batch: one batched call when mats is a (B, d, d) tensor, one call per element
    when it is a list of (d, d) tensors (factors reused from a cache: not stacked, not copied)."""
    if isinstance(mats, torch.Tensor):
        return fn(mats, t)
    return torch.stack([fn(m, t[i]) for i, m in enumerate(mats)])


def _select(part, idx):
    """Elements idx (a tensor, or None for all) of a batched part: a tensor or a list of tensors."""
    if idx is None:
        return part
    if isinstance(part, torch.Tensor):
        return part[idx]
    return [part[i] for i in idx.tolist()]


class PsdFactor:
    """The cutoff pseudo-inverse factor of a batch of scaled symmetric matrices S' (B, d, d).

    ``S'⁺ = Wᵀ W`` with W = L⁻¹·diag(live) on the Cholesky elements and W = diag(w) Vᵀ on the eigh
    elements. Per element: ``rank`` (int64), ``lam_max`` (‖S'‖₂, an upper bound on the Cholesky
    path), ``lam_min`` (λ_min, an upper estimate on the Cholesky path), ``lam_min_kept`` (smallest
    kept eigenvalue on the eigh path; inf on the Cholesky path and where none is kept), ``cutoff``
    (in S' units), ``used_eigh`` (bool).
    """

    def __init__(self, b, d, dtype, device):
        self.b, self.d = b, d
        self.dtype, self.device = dtype, device
        self.chol_idx = self.eig_idx = None
        self.chol = self.live = None
        self.vecs = self.weights = self.keep = None
        self.rank = torch.zeros(b, dtype=torch.int64, device=device)
        self.lam_max = torch.zeros(b, dtype=dtype, device=device)
        self.lam_min = torch.zeros(b, dtype=dtype, device=device)
        self.lam_min_kept = torch.full((b,), float("inf"), dtype=dtype, device=device)
        self.cutoff = torch.zeros(b, dtype=dtype, device=device)
        self.used_eigh = torch.zeros(b, dtype=torch.bool, device=device)
        self.deferred = torch.zeros(b, dtype=torch.bool, device=device)

    # -- application --------------------------------------------------------------------------
    def _dispatch(self, y: torch.Tensor, chol_fn, eig_fn) -> torch.Tensor:
        if self.vecs is None:
            return chol_fn(y)
        if self.chol is None:
            return eig_fn(y)
        out = torch.empty_like(y)
        out[self.chol_idx] = chol_fn(y[self.chol_idx])
        out[self.eig_idx] = eig_fn(y[self.eig_idx])
        return out

    def whiten(self, y: torch.Tensor) -> torch.Tensor:
        """W y: y (B, d, k) -> (B, d, k)."""
        return self._dispatch(
            y,
            lambda t: _each(lambda chol, x: torch.linalg.solve_triangular(chol, x, upper=False),
                            self.chol, t * self.live),
            lambda t: self.weights * _each(lambda vecs, x: vecs.mT @ x, self.vecs, t),
        )

    def whiten_t(self, z: torch.Tensor) -> torch.Tensor:
        """Wᵀ z: z (B, d, k) -> (B, d, k)."""
        return self._dispatch(
            z,
            lambda t: _each(lambda chol, x: torch.linalg.solve_triangular(chol.mT, x, upper=True),
                            self.chol, t) * self.live,
            lambda t: _each(lambda vecs, x: vecs @ x, self.vecs, self.weights * t),
        )

    def project_kept(self, r: torch.Tensor) -> torch.Tensor:
        """Coordinates of r (B, d, k) on the retained subspace (orthonormal, so norms are preserved)."""
        return self._dispatch(
            r,
            lambda t: t * self.live,
            lambda t: self.keep.unsqueeze(-1) * _each(lambda vecs, x: vecs.mT @ x, self.vecs, t),
        )

    def sqrt_pinv(self) -> torch.Tensor:
        """The symmetric S'^{+1/2} = V diag(w) Vᵀ (eigh elements only; used with force_eigh)."""
        return _each(lambda vecs, w: (vecs * w.mT) @ vecs.mT, self.vecs, self.weights)

    def unresolved_in_fp32(self) -> torch.Tensor:
        """(B,) bool: an fp32 factorisation of this element cannot be trusted.

        * eigh elements: a *kept* eigenvalue within RESOLUTION_FACTOR of fp32's resolution
          d·ε₃₂·‖S‖ (eigh's backward error): its fp32 eigenpair is mostly rounding, and inverting it
          amplifies that (measured: 10–400× the error of an fp64 eigh on the same data).
        * every element: the requested cutoff lies below that resolution and the spectrum reaches
          it (fp64 statistics asked in fp32): fp32 cannot tell which eigenvalues fp64 would keep.
        Cholesky elements are otherwise trusted: their λ_min clears the cutoff by CHOLESKY_MARGIN,
        and an fp32 Cholesky solve's forward error is ≈ 0.1·κ·ε₃₂ (measured, d ≤ 1153), about the
        error the fp32 rounding of S itself causes.
        """
        band = RESOLUTION_FACTOR * self.d * _eps(torch.float32)
        scale = self.lam_max.clamp_min(torch.finfo(self.dtype).tiny)
        kept_rel = self.lam_min_kept / scale
        cutoff_rel = self.cutoff / scale
        lam_min_rel = self.lam_min / scale
        below_band = (cutoff_rel < self.d * _eps(torch.float32)) & (lam_min_rel < band)
        return (kept_rel < band) | below_band


def _cholesky_parts(sp: torch.Tensor, name: str) -> tuple:
    """(chol, dead, ok, λ_max estimate, λ_min estimate) of sp (B, d, d): the cutoff-independent part
    of the Cholesky path. ``chol`` is a reused workspace (a cache keeps its own copy).

    Exactly zero rows/columns (dead units) get a unit diagonal for the factorisation only (sp is
    ours: added and subtracted in place, exactly, instead of copying a (B, d, d) tensor). A failed
    factor only produces inf/NaN estimates in its own batch element.
    """
    dtype = sp.dtype
    dead = (sp.amax(dim=-1) == 0) & (sp.amin(dim=-1) == 0)
    diagonal = sp.diagonal(dim1=-2, dim2=-1)
    diagonal.add_(dead.to(dtype))
    chol = _workspace(f"{name}:chol", tuple(sp.shape), dtype, sp.device)
    info = torch.empty(sp.shape[0], dtype=torch.int32, device=sp.device)
    torch.linalg.cholesky_ex(sp, out=(chol, info))
    diagonal.sub_(dead.to(dtype))
    lam_max_est, lam_min_est = _extreme_eigenvalue_estimates(sp, chol)
    return chol, dead, info == 0, lam_max_est, lam_min_est


def _cached_parts(sp: torch.Tensor, entries, attribute: str, compute, name: str) -> tuple:
    """``compute(sp)`` for every element of sp (B, d, d), taking what the cache entries already
    hold (``attribute`` of each) and storing a copy of what was computed.

    Returns the parts batched: tensors when all were computed here; otherwise (d, d) parts as lists
    of per-element tensors (applied element by element, never stacked) and small parts stacked.
    """
    if entries is None:
        return compute(sp, name=name)
    b = sp.shape[0]
    missing = [i for i, entry in enumerate(entries) if getattr(entry, attribute) is None]
    computed = None
    if missing:
        if len(missing) == b:
            sub = sp
        else:
            sub = _workspace(f"{name}:missing", (len(missing), *sp.shape[1:]), sp.dtype, sp.device)
            torch.index_select(sp, 0, torch.tensor(missing, device=sp.device), out=sub)
        computed = compute(sub, name=name)
        for j, i in enumerate(missing):
            getattr(entries[i], f"set_{attribute}")(tuple(part[j] for part in computed))
    if len(missing) == b:
        return computed
    held = [getattr(entry, attribute) for entry in entries]
    return tuple([h[k] for h in held] if held[0][k].dim() == 2 else torch.stack([h[k] for h in held])
                 for k in range(len(held[0])))


def _eigh_parts(sp: torch.Tensor, name: str) -> tuple:
    """(λ, V) of sp (B, d, d): the cutoff-independent part of the eigh path (always new tensors)."""
    return eigh_psd_torch(sp)


def factor_psd_torch(sp: torch.Tensor, *, atol, rtol, force_eigh: bool = False, defer_eigh: bool = False,
                     name: str = "S", source: torch.Tensor | None = None) -> PsdFactor:
    """The cutoff pseudo-inverse factor of sp (B, d, d) (symmetric, scaled, work dtype).

    ``sp`` is briefly modified in place (its zero diagonal entries) and restored exactly.

    Args:
        sp: the scaled matrices S' (max |entry| about 1).
        atol: absolute cutoff in S' units, float or (B,) tensor.
        rtol: relative cutoff (times ‖S'‖₂), float or (B,) tensor.
        force_eigh: skip the Cholesky path (every element through eigh).
        defer_eigh: do not decompose the elements that fail the Cholesky test; they get W = 0 and
            ``deferred`` = True (the fp32 mode re-solves them in fp64 instead of running an fp32
            eigh, which is 10–400× less accurate than fp64 near the cutoff).
        name: workspace name (two factors alive at once need different names).
        source: the unscaled matrices (B, d, d) sp was made from. Inside a ``factorization_cache()``
            block they are the key under which the factorisation parts are reused.
    Returns:
        PsdFactor.
    """
    b, d = sp.shape[0], sp.shape[-1]
    dtype, device = sp.dtype, sp.device
    atol = _as_batch(atol, b, dtype, device)
    rtol = _as_batch(rtol, b, dtype, device)
    cache = active_cache() if source is not None else None
    entries = cache.entries(source, dtype) if cache is not None else None
    f = PsdFactor(b, d, dtype, device)
    if force_eigh:
        accept = torch.zeros(b, dtype=torch.bool, device=device)
        n_accept = 0
    else:
        chol, dead, ok, lam_max_est, lam_min = _cached_parts(sp, entries, "cholesky", _cholesky_parts, name)
        live = (~dead).to(dtype)
        lam_max_ub = LAMBDA_MAX_SAFETY * lam_max_est
        cutoff_ub = torch.maximum(atol, rtol * lam_max_ub)
        accept = ok & torch.isfinite(lam_min) & (lam_min > CHOLESKY_MARGIN * cutoff_ub)
        n_accept = int(accept.sum())  # host sync: splits the batch between the two paths
    # Index tensors exist only for a batch split between the paths (the scatter is skipped otherwise).
    if n_accept:
        idx = accept.nonzero().squeeze(1) if n_accept < b else None
        sel = slice(None) if idx is None else idx
        f.chol_idx = idx
        f.chol = _select(chol, idx)
        f.live = live[sel].unsqueeze(-1)
        f.rank[sel] = (d - dead[sel].sum(dim=-1)).to(torch.int64)
        f.lam_max[sel] = lam_max_ub[sel]
        f.lam_min[sel] = lam_min[sel]
        f.cutoff[sel] = cutoff_ub[sel]
    if n_accept < b:
        idx = (~accept).nonzero().squeeze(1) if n_accept else None
        sel = slice(None) if idx is None else idx
        f.eig_idx = idx
        if defer_eigh:
            n_left = b - n_accept
            f.vecs = torch.eye(d, dtype=dtype, device=device).expand(n_left, d, d)
            f.keep = torch.zeros(n_left, d, dtype=torch.bool, device=device)
            f.weights = torch.zeros(n_left, d, 1, dtype=dtype, device=device)
            f.deferred[sel] = True
            return f
        sub_entries = entries
        if entries is not None and idx is not None:
            sub_entries = [entries[i] for i in idx.tolist()]
        lam, vecs = _cached_parts(sp[sel], sub_entries, "eigh", _eigh_parts, name)
        lam_max = lam.abs().amax(dim=-1)
        cutoff = torch.maximum(atol[sel], rtol[sel] * lam_max)
        keep = lam > cutoff.unsqueeze(-1)
        tiny = torch.finfo(dtype).tiny
        f.vecs = vecs
        f.keep = keep
        f.weights = torch.where(keep, lam.clamp_min(tiny).rsqrt(), torch.zeros_like(lam)).unsqueeze(-1)
        f.rank[sel] = keep.sum(dim=-1)
        f.lam_max[sel] = lam_max
        f.lam_min[sel] = lam.amin(dim=-1)
        f.lam_min_kept[sel] = torch.where(keep, lam, torch.full_like(lam, float("inf"))).amin(dim=-1)
        f.cutoff[sel] = cutoff
        f.used_eigh[sel] = True
    return f


def _rescale(t: torch.Tensor, factor: torch.Tensor, out_dtype: torch.dtype) -> torch.Tensor:
    """t (B, m, n) times a float64 per-element factor, computed in float64 (so an fp32 work result
    is not overflowed by the rescaling) and returned in out_dtype."""
    return (t.to(torch.float64) * factor[:, None, None]).to(out_dtype)


def _finite_rows(*tensors: torch.Tensor) -> torch.Tensor:
    """(B,) bool: every entry of every (B, ...) tensor is finite."""
    ok = None
    for t in tensors:
        fin = torch.isfinite(t.reshape(t.shape[0], -1)).all(dim=-1)
        ok = fin if ok is None else ok & fin
    return ok


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num/den with 0/0 = 0 and x/0 = inf."""
    safe = torch.where(den > 0, den, torch.ones_like(den))
    return torch.where(den > 0, num / safe, torch.where(num > 0, torch.full_like(num, float("inf")), num * 0))


def _residual_ratio(sp, xp, mp, f: PsdFactor) -> torch.Tensor:
    """‖V_rᵀ(S' X' − M')‖_F / (‖S'‖_F ‖X'‖_F d ε) per element (the retained-subspace residual)."""
    r = f.project_kept(sp @ xp - mp)
    num = torch.linalg.vector_norm(r, dim=(-2, -1))
    den = torch.linalg.matrix_norm(sp) * torch.linalg.vector_norm(xp, dim=(-2, -1)) * f.d * _eps(sp.dtype)
    return _ratio(num, den)


def _escalate(run, inputs: tuple, bad: torch.Tensor, outputs: list) -> torch.Tensor:
    """Redo the batch elements flagged ``bad`` with ``run(*inputs[idx], work=fp64)`` and scatter the
    results into ``outputs`` (already in the output dtypes). Returns the escalated mask."""
    idx = bad.nonzero().squeeze(1)  # host sync: which elements fp32 could not be trusted with
    if idx.numel() == 0:
        return bad
    sub = run(*[t[idx] if isinstance(t, torch.Tensor) else t for t in inputs], work=torch.float64)
    for out, new in zip(outputs, sub):
        out[idx] = new.to(out.dtype)
    return bad


class SolveOut(NamedTuple):
    x: torch.Tensor
    rank: torch.Tensor
    used_pinv: torch.Tensor
    escalated: torch.Tensor


def _solve_core(s, m, atol, rtol, *, work, out_dtype, check, exact):
    sp, c = scaled_symmetric(s, work, exactly_symmetric=exact)
    mp, mscale = scaled(m, work)
    f = factor_psd_torch(sp, atol=(atol / c).to(work), rtol=rtol.to(work), defer_eigh=check, source=s)
    xp = f.whiten_t(f.whiten(mp))
    x = _rescale(xp, mscale / c, out_dtype)
    rank = f.rank
    used_pinv = rank < s.shape[-1]
    bad = None
    if check:
        bad = f.deferred | ~_finite_rows(xp) | f.unresolved_in_fp32() | (
            _residual_ratio(sp, xp, mp, f) > RESIDUAL_LIMIT)
    return x, rank, used_pinv, bad


def solve_psd_torch(s, m, *, atol, rtol, work_dtype, out_dtype, exactly_symmetric=False) -> SolveOut:
    """X = S⁺M with the cutoff pseudo-inverse: s (B, d, d) symmetric, m (B, d, k) -> SolveOut.

    s and m arrive in their accumulate dtype; atol, rtol are (B,) tensors in that dtype.
    ``escalated`` marks the elements an fp32 solve handed to fp64.
    """
    def run(s_, m_, atol_, rtol_, *, work):
        x_, rank_, used_, _ = _solve_core(s_, m_, atol_, rtol_, work=work, out_dtype=out_dtype, check=False,
                                          exact=exactly_symmetric)
        return x_, rank_, used_

    x, rank, used, bad = _solve_core(s, m, atol, rtol, work=work_dtype, out_dtype=out_dtype,
                                     check=work_dtype == torch.float32, exact=exactly_symmetric)
    if bad is None:
        return SolveOut(x, rank, used, torch.zeros_like(used))
    escalated = _escalate(run, (s, m, atol, rtol), bad, [x, rank, used])
    return SolveOut(x, rank, used, escalated)


class InvSqrtOut(NamedTuple):
    r: torch.Tensor
    rank: torch.Tensor
    escalated: torch.Tensor


def _inv_sqrt_core(s, atol, rtol, *, work, out_dtype, check, exact):
    sp, c = scaled_symmetric(s, work, exactly_symmetric=exact)
    f = factor_psd_torch(sp, atol=(atol / c).to(work), rtol=rtol.to(work), force_eigh=True, source=s)
    rp = f.sqrt_pinv()
    r = _rescale(rp, c.rsqrt(), out_dtype)
    bad = None
    if check:
        bad = ~_finite_rows(rp) | f.unresolved_in_fp32()
    return r, f.rank, bad


def psd_inv_sqrt_torch(s, *, atol, rtol, work_dtype, out_dtype, exactly_symmetric=False) -> InvSqrtOut:
    """S^{+1/2} = V diag(λ^{-1/2}) Vᵀ over λ > max(atol, rtol·‖S‖₂): s (B, d, d) -> InvSqrtOut."""
    def run(s_, atol_, rtol_, *, work):
        r_, rank_, _ = _inv_sqrt_core(s_, atol_, rtol_, work=work, out_dtype=out_dtype, check=False,
                                      exact=exactly_symmetric)
        return r_, rank_

    r, rank, bad = _inv_sqrt_core(s, atol, rtol, work=work_dtype, out_dtype=out_dtype,
                                  check=work_dtype == torch.float32, exact=exactly_symmetric)
    if bad is None:
        return InvSqrtOut(r, rank, torch.zeros_like(rank, dtype=torch.bool))
    escalated = _escalate(run, (s, atol, rtol), bad, [r, rank])
    return InvSqrtOut(r, rank, escalated)


class DeltaOut(NamedTuple):
    delta: torch.Tensor
    decrease: torch.Tensor
    used_pinv: torch.Tensor
    escalated: torch.Tensor


def _delta_core(s, m, e, atol_s, rtol_s, atol_e, rtol_e, *, force_pinv, work, out_dtype, check, exact):
    dim, o = s.shape[-1], m.shape[-1]
    sp, c = scaled_symmetric(s, work, exactly_symmetric=exact)
    mp, mscale = scaled(m, work)
    fs = factor_psd_torch(sp, atol=(atol_s / c).to(work), rtol=rtol_s.to(work), force_eigh=force_pinv,
                          defer_eigh=check, source=s)
    y = fs.whiten(mp)  # W_S M'   (B, D, o)
    factor = mscale / c
    used = fs.rank < dim
    bad = None
    if e is None:
        deltap_t = fs.whiten_t(y)  # S'⁺ M'  (B, D, o)
        deltap = deltap_t.mT
        if check:
            bad = fs.deferred | ~_finite_rows(deltap, y) | fs.unresolved_in_fp32() | (
                _residual_ratio(sp, deltap_t, mp, fs) > RESIDUAL_LIMIT)
    else:
        ep, ce = scaled_symmetric(e, work, name="E", exactly_symmetric=exact)
        fe = factor_psd_torch(ep, atol=(atol_e / ce).to(work), rtol=rtol_e.to(work), force_eigh=force_pinv,
                              defer_eigh=check, name="E", source=e)
        y1 = y
        y = fe.whiten(y1.mT).mT  # W_S M' W_Eᵀ
        z = fs.whiten_t(y)  # W_Sᵀ W_S M' W_Eᵀ
        deltap = fe.whiten_t(z.mT)  # W_Eᵀ W_E M'ᵀ W_Sᵀ W_S = E'⁺ (S'⁺ M')ᵀ   (B, o, D)
        factor = factor / ce
        used = used | (fe.rank < o)
        if check:
            xs = fs.whiten_t(y1)
            bad = fs.deferred | fe.deferred | ~_finite_rows(deltap, y) | fs.unresolved_in_fp32() | (
                fe.unresolved_in_fp32() | (_residual_ratio(sp, xs, mp, fs) > RESIDUAL_LIMIT))
    delta = _rescale(deltap, factor, out_dtype)
    # tr(M·Δ) = ‖W_S M W_Eᵀ‖²: a sum of squares, never negative.
    decrease = (torch.linalg.vector_norm(y, dim=(-2, -1)).to(torch.float64) ** 2 * (mscale * factor)).to(out_dtype)
    return delta, decrease, used, bad


def optimal_delta_torch(s, m, e, *, atol_s, rtol_s, atol_e, rtol_e, force_pinv, work_dtype,
                        out_dtype, exactly_symmetric=False) -> DeltaOut:
    """Δ = E⁺ (S⁺ M)ᵀ (o, D) and tr(M Δ): s (B, D, D), m (B, D, o), e (B, o, o) or None -> DeltaOut."""
    def run(s_, m_, e_, as_, rs_, ae_, re_, *, work):
        d_, dec_, used_, _ = _delta_core(s_, m_, e_, as_, rs_, ae_, re_, force_pinv=force_pinv, work=work,
                                         out_dtype=out_dtype, check=False, exact=exactly_symmetric)
        return d_, dec_, used_

    delta, decrease, used, bad = _delta_core(s, m, e, atol_s, rtol_s, atol_e, rtol_e, force_pinv=force_pinv,
                                             work=work_dtype, out_dtype=out_dtype,
                                             check=work_dtype == torch.float32, exact=exactly_symmetric)
    if bad is None:
        return DeltaOut(delta, decrease, used, torch.zeros_like(used))
    escalated = _escalate(run, (s, m, e, atol_s, rtol_s, atol_e, rtol_e), bad, [delta, decrease, used])
    return DeltaOut(delta, decrease, used, escalated)


class AddedOut(NamedTuple):
    """Padded to k_max = min(s, t): alpha (B, k_max, s), omega (B, t, k_max), sigma (B, k_max);
    count (B,) kept neurons per element (a prefix); escalated (B,)."""

    alpha: torch.Tensor
    omega: torch.Tensor
    sigma: torch.Tensor
    count: torch.Tensor
    escalated: torch.Tensor


def _column_sign(a: torch.Tensor) -> torch.Tensor:
    """Sign of the largest-magnitude entry of each column: a (B, n, k) -> (B, k) in {−1, 0, 1}
    (the first such entry on ties; 0 for an all-zero column)."""
    if a.shape[-2] == 0:
        return torch.zeros(a.shape[0], a.shape[-1], dtype=a.dtype, device=a.device)
    idx = a.abs().argmax(dim=-2, keepdim=True)
    return torch.sign(a.gather(-2, idx)).squeeze(-2)


def _added_core(s, n, e, atol, rtol_s, rtol_e, *, statistical_threshold, max_neurons, ignore_singular_values,
                alpha_zero, omega_zero, work, out_dtype, check, exact):
    big, s_dim, t_dim = n.shape
    f64 = torch.float64
    p, pscale = scaled(n, work)
    fs = fe = None
    if s is not None:
        sp, c = scaled_symmetric(s, work, exactly_symmetric=exact)
        fs = factor_psd_torch(sp, atol=(atol / c).to(work), rtol=rtol_s.to(work), defer_eigh=check, source=s)
        p = fs.whiten(p)  # W_S N'
        root_c = c.sqrt()
        pscale = pscale / root_c
    if e is not None:
        ep, ce = scaled_symmetric(e, work, name="E", exactly_symmetric=exact)
        fe = factor_psd_torch(ep, atol=(atol / ce).to(work), rtol=rtol_e.to(work), defer_eigh=check, name="E",
                              source=e)
        p = fe.whiten(p.mT).mT  # W_S N' W_Eᵀ
        root_ce = ce.sqrt()
        pscale = pscale / root_ce
    u, sig, vh = torch.linalg.svd(p, full_matrices=False)
    # α direction Wᵀ U (s, k) and ω direction Wₑᵀ V (t, k), in true units.
    a_dir = u if fs is None else fs.whiten_t(u)
    w_dir = vh.mT if fe is None else fe.whiten_t(vh.mT)
    a_dir = a_dir.to(f64) if fs is None else a_dir.to(f64) / root_c[:, None, None]
    w_dir = w_dir.to(f64) if fe is None else w_dir.to(f64) / root_ce[:, None, None]
    sigma = sig.to(f64) * pscale[:, None]
    k_max = sigma.shape[-1]
    if k_max:
        threshold = torch.minimum(torch.full_like(sigma[:, 0], statistical_threshold), sigma[:, 0])
        count = (sigma >= threshold[:, None]).sum(dim=-1)
    else:
        count = torch.zeros(big, dtype=torch.int64, device=n.device)
    if max_neurons is not None:
        count = count.clamp_max(max_neurons)
    # Deterministic sign per singular pair: largest-magnitude entry of α's direction positive
    # (of ω's when alpha_zero, since α is then identically 0); the other vector as fallback.
    first, second = (w_dir, a_dir) if alpha_zero else (a_dir, w_dir)
    sign = _column_sign(first)
    sign = torch.where(sign == 0, _column_sign(second), sign)
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    r = torch.ones_like(sigma) if ignore_singular_values else sigma.abs().sqrt()
    scale = (sign * r).unsqueeze(-2)
    alpha = (a_dir * scale).mT
    omega = w_dir * scale
    if alpha_zero:
        alpha = torch.zeros_like(alpha)
    if omega_zero:
        omega = torch.zeros_like(omega)
    bad = None
    if check:
        bad = ~_finite_rows(alpha, omega, sigma)
        if fs is not None:
            bad = bad | fs.deferred | fs.unresolved_in_fp32()
        if fe is not None:
            bad = bad | fe.deferred | fe.unresolved_in_fp32()
    return alpha.to(out_dtype), omega.to(out_dtype), sigma.to(out_dtype), count, bad


def optimal_added_neurons_torch(s, n, e, *, atol, rtol_s, rtol_e, statistical_threshold, max_neurons,
                                ignore_singular_values, alpha_zero, omega_zero, work_dtype,
                                out_dtype, exactly_symmetric=False) -> AddedOut:
    """GroMo §5.3 on a batch: s (B, s, s) or None, n (B, s, t), e (B, t, t) or None -> AddedOut.

    P = S^{+1/2} N E^{+1/2} (computed as W_S N W_Eᵀ, same singular values and vectors up to the
    orthogonal factor that cancels in α, ω); keep σ ≥ min(statistical_threshold, σ_max), at most
    ``max_neurons``; α = S^{+1/2} U r, ω = r Vᵀ E^{+1/2}, r = √σ or 1.
    """
    options = dict(statistical_threshold=statistical_threshold, max_neurons=max_neurons,
                   ignore_singular_values=ignore_singular_values, alpha_zero=alpha_zero,
                   omega_zero=omega_zero, out_dtype=out_dtype, exact=exactly_symmetric)

    def run(s_, n_, e_, atol_, rs_, re_, *, work):
        a_, o_, sg_, cnt_, _ = _added_core(s_, n_, e_, atol_, rs_, re_, work=work, check=False, **options)
        return a_, o_, sg_, cnt_

    alpha, omega, sigma, count, bad = _added_core(s, n, e, atol, rtol_s, rtol_e, work=work_dtype,
                                                  check=work_dtype == torch.float32, **options)
    if bad is None:
        return AddedOut(alpha, omega, sigma, count, torch.zeros_like(count, dtype=torch.bool))
    escalated = _escalate(run, (s, n, e, atol, rtol_s, rtol_e), bad, [alpha, omega, sigma, count])
    return AddedOut(alpha, omega, sigma, count, escalated)
