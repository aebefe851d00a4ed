"""The cutoff pseudo-inverse factor of a batch of scaled symmetric PSD matrices, and the rule that
decides which eigen-directions it keeps.

Input: S' (B, d, d) = R·sym(S)·R from scaling.py. Output: a PsdFactor W with S'⁺ = WᵀW, so
S⁺ = R WᵀW R (the minimum-norm solution of the truncated system in the scaled units).

**Which directions are kept.** Two rules:

* *precision floor* (the default, Jacobi-scaled S'): fp32 rounding of an accumulated statistic is
  relative per entry, so once S is scaled by its diagonal its noise is uniform: measured on 105
  real layer statistics and 100 synthetic cases, the per-direction noise of S' is at most 13.5·ε
  (ε of the dtype S was accumulated in), noise eigenvalues of a null space lie within ±21·ε, and
  genuine eigenvalues are ≥ 212·ε in all but two cases. Kept: λ(S') > floor = max(32·ε,
  4·|most negative eigenvalue of S'|) — the negative eigenvalues are a direct measurement of the
  noise actually present; the factor 4 (not 2) because noise eigenvalues of a float64 Gram of few
  rows sit up to 3× above the most negative one (7 rows, 76 features: +9.6e-15 against −3.2e-15).
  The solve is the minimum-norm solution of the truncated system (the
  Euclidean pseudo-inverse of S_k, see _truncated_pinv). An absolute threshold ``atol`` on the
  eigenvalues of S itself (GroMo's ``numerical_threshold``) is applied to the eigenvalues of S_k;
  with nothing cut by the floor these are exactly S's eigenvalues, so GroMo's absolute rule is
  reproduced where it is right.
* *relative* (an explicit ``rtol``, uniform scaling): λ(S') > max(atol', rtol·‖S'‖₂).

**Cholesky fast path** ``W = L⁻¹``, taken only where it gives the eigh answer, i.e. every eigenvalue
is kept: Cholesky succeeded and λ_min — estimated from above by 3 steps of block inverse iteration
through the factor (4 fixed probes, measured ≤ 1.33·λ_min) — exceeds 3× the cutoff (for the
relative rule computed with 1.5× a block-power estimate of λ_max, measured ≥ 0.8·λ_max; for the
floor, also 3× the bound atol·max r² below which an absolute threshold could bite). The estimates
are not bounds in the worst case (a probe nearly orthogonal to an extreme eigenvector); then at
worst eigenvalues a small factor below the cutoff are inverted, never noise far below it. On CPU,
up to d = EXACT_SPECTRUM_MAX_DIM, the extreme eigenvalues are computed exactly instead (one
``eigvalsh`` costs less than the iterations' dozens of small operations there). Exactly
zero rows/columns (dead units) are deflated inside Cholesky: e_i is an exact eigenvector with
eigenvalue 0, dropped by every rule.

**Otherwise** ``W = diag(w) Vᵀ`` from ``eigh`` with ``w = λ^{-1/2}`` on kept eigenvalues and 0
elsewhere (negative and noise eigenvalues dropped, so ``tr(Mᵀ S⁺ M) = ‖W M‖² ≥ 0`` always). When
eigh fails to converge each element is retried alone, then decomposed through the SVD, instead of
perturbing the matrix; that fallback warns (EighFallbackWarning), since it is slower and rare.
"""

from __future__ import annotations

import functools
import warnings

import torch

from . import buffers
from .factor_cache import active_cache

__all__ = ["PsdFactor", "factor_psd_torch", "eigh_psd_torch", "precision_floor", "FLOOR_ULPS",
           "NEGATIVE_NOISE_FACTOR", "EighFallbackWarning"]


class EighFallbackWarning(RuntimeWarning):
    """``torch.linalg.eigh`` did not converge on a matrix, which was decomposed through the SVD."""

# Block power / inverse iteration that estimates λ_max and λ_min on the Cholesky path.
POWER_ITERATIONS = 3
POWER_BLOCK = 4
# The λ_max estimate is a lower bound (measured ≥ 0.8·λ_max for κ 1…1e12, d ≤ 1153, 3 steps): the
# relative cutoff uses this multiple of it.
LAMBDA_MAX_SAFETY = 1.5
# Cholesky is used only when the λ_min estimate (an upper bound, measured ≤ 1.33·λ_min) clears the
# cutoff by this factor; everything closer goes through eigh, which is exact.
CHOLESKY_MARGIN = 3.0
# fp32 resolves eigenvalues down to about d·ε₃₂·‖S‖; this factor widens the band it is not trusted in.
RESOLUTION_FACTOR = 8.0
# The precision floor in Jacobi units: FLOOR_ULPS·ε, or NEGATIVE_NOISE_FACTOR × the most negative
# eigenvalue (both measured, see the module docstring).
FLOOR_ULPS = 32.0
# On CPU up to this size λ_min and λ_max come from one exact ``eigvalsh``, which costs less than the
# iterations' ~40 small operations there (measured crossover near d = 97; bench/README.md). CUDA
# keeps the iterations: a small eigvalsh there is not measured to be cheaper than their launches.
EXACT_SPECTRUM_MAX_DIM = 80
# Cached factors up to this size are stacked and applied in one batched call (not one by one).
STACK_CACHED_MAX_DIM = 256
NEGATIVE_NOISE_FACTOR = 4.0


def _eps(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).eps


def precision_floor(dtype: torch.dtype) -> float:
    """FLOOR_ULPS·ε of the dtype a statistic was accumulated (or rounded) in."""
    return FLOOR_ULPS * _eps(dtype)


@functools.lru_cache(maxsize=64)
def _probe(d: int, p: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Fixed pseudo-random unit probe vectors (d, p): deterministic results, no global RNG."""
    g = torch.Generator().manual_seed(0x5EED + d)
    v = torch.randn(d, p, generator=g, dtype=torch.float64)
    v = v / v.norm(dim=0, keepdim=True)
    return v.to(device=device, dtype=dtype)


def _extreme_eigenvalue_estimates(sp: torch.Tensor, chol: torch.Tensor, *,
                                  power_iteration: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """λ_max(S') estimated from below (or bounded from above, see ``power_iteration``) and λ_min(S')
    estimated from above: sp, chol (B, d, d) -> (B,), (B,).

    Block power iteration on S' and block inverse iteration through its Cholesky factor, from the
    same fixed probes. For symmetric positive A the growth ‖A v_{j+1}‖ / ‖A v_j‖ never decreases,
    so after q steps the last growth is ≥ ‖A^q v₀‖^{1/q} ≥ ‖A‖·|c₁|^{1/q} (c₁ = component of the
    unit probe on A's top eigenvector): within d^{1/(2q)} of the truth in the worst case, much
    closer in practice (3 steps, 4 probes: λ_min over-estimated ≤ 1.33×, λ_max under-estimated
    ≤ 1.25×, over geometric/linear/clustered/repeated spectra, κ 1…1e12, d ≤ 1153).
    ``power_iteration=False`` (no cutoff reads λ_max): ‖S'‖_F, an upper bound, instead.
    """
    b, d = sp.shape[0], sp.shape[-1]
    p = min(POWER_BLOCK, d)
    probe = _probe(d, p, sp.dtype, sp.device).expand(b, d, p)
    tiny = torch.finfo(sp.dtype).tiny
    v, w = probe, probe
    up = down = torch.ones(b, p, dtype=sp.dtype, device=sp.device)
    for _ in range(POWER_ITERATIONS):
        if power_iteration:
            # = sp @ v for the symmetric sp; in this order BLAS reads sp without a packing copy
            # (0.60 -> 0.36 ms at d = 577, one thread).
            y = (v.mT @ sp).mT
            up = y.norm(dim=-2)
            v = y / up.clamp_min(tiny).unsqueeze(-2)
        # Two triangular solves: torch.cholesky_solve is ~4× slower than this on CPU for few columns.
        z = torch.linalg.solve_triangular(chol.mT, torch.linalg.solve_triangular(chol, w, upper=False),
                                          upper=True)
        down = z.norm(dim=-2)
        w = z / down.clamp_min(tiny).unsqueeze(-2)
    top = up.amax(dim=-1) if power_iteration else torch.linalg.matrix_norm(sp)
    return top, 1.0 / down.amax(dim=-1)


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

    Warns:
        EighFallbackWarning: once per call in which an element went through the SVD.
    """
    try:
        return torch.linalg.eigh(a)
    except RuntimeError:
        lams, vecs, failed = [], [], 0
        for element in a:
            try:
                lam, vec = torch.linalg.eigh(element)
            except RuntimeError:
                lam, vec = _svd_eigh(element)
                failed += 1
            lams.append(lam)
            vecs.append(vec)
        if failed:
            warnings.warn(EighFallbackWarning(
                f"torch.linalg.eigh did not converge on {failed} of {a.shape[0]} matrices of size "
                f"{a.shape[-1]}; they were decomposed through the SVD instead (the matrices were not "
                "modified)"
            ), stacklevel=2)
        return torch.stack(lams), torch.stack(vecs)


def _as_batch(value, b: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.to(device=device, dtype=dtype).expand(b)
    full = torch.full((b,), float(value), dtype=torch.float64, device=device)
    return full if dtype == torch.float64 else full.to(dtype)  # inf beyond dtype's range, no error


def _each(fn, mats, t: torch.Tensor) -> torch.Tensor:
    """fn(mats, t) on a batch: one batched call when mats is a (B, d, d) tensor, one call per element
    when it is a list of (d, d) tensors (factors reused from a cache: not stacked, not copied)."""
    if isinstance(mats, torch.Tensor):
        return fn(mats, t)
    if mats[0].shape[-1] <= STACK_CACHED_MAX_DIM:
        # Small factors: one batched call on a stacked copy is cheaper than a Python loop, and gives
        # the very bits of the uncached batched call.
        return fn(torch.stack(mats), t)
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
    elements. Per element: ``rank`` (int64), ``lam_max`` (‖S'‖₂; on the Cholesky path an upper
    bound: 1.5× its estimate, or 1.5·‖S'‖_F where no cutoff reads it), ``lam_min`` (λ_min, an upper
    estimate on the Cholesky path), ``lam_min_kept`` (smallest kept eigenvalue on the eigh path; inf
    on the Cholesky path and where none is kept), ``cutoff`` (in S' units), ``used_eigh`` (bool).
    """

    # Per-element records and their value where no path set them: (dtype, or None for the factor's).
    _RECORDS = {"rank": (torch.int64, 0), "lam_max": (None, 0.0), "lam_min": (None, 0.0),
                "lam_min_kept": (None, float("inf")), "cutoff": (None, 0.0), "used_eigh": (torch.bool, False),
                "deferred": (torch.bool, False)}

    def __init__(self, b, d, dtype, device):
        self.b, self.d = b, d
        self.dtype, self.device = dtype, device
        self.chol_idx = self.eig_idx = None
        self.chol = self.live = None
        self.vecs = self.weights = self.keep = None

    def __getattr__(self, name):
        # A record no path has set: its default for every element, made on first read (small
        # batches are dominated by the number of tensor operations).
        if name not in PsdFactor._RECORDS:
            raise AttributeError(name)
        dtype, value = PsdFactor._RECORDS[name]
        record = torch.full((self.b,), value, dtype=dtype or self.dtype, device=self.device)
        setattr(self, name, record)
        return record

    def put(self, name: str, idx, value) -> None:
        """Set record ``name`` on the elements idx (a tensor, or None for the whole batch) to value."""
        if idx is None and isinstance(value, torch.Tensor):
            setattr(self, name, value)
        else:
            getattr(self, name)[slice(None) if idx is None else idx] = value

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
        # The triangular solve runs in place on the masked copy (ours): solving into a separate
        # output would first copy the right-hand side into LAPACK's column-major layout.
        return self._dispatch(
            y,
            lambda t: _each(lambda chol, x: torch.linalg.solve_triangular(chol, x, upper=False, out=x),
                            self.chol, t * self.live),
            lambda t: self.weights * _each(lambda vecs, x: vecs.mT @ x, self.vecs, t),
        )

    def whiten_t(self, z: torch.Tensor, *, overwrite: bool = False) -> torch.Tensor:
        """Wᵀ z: z (B, d, k) -> (B, d, k). ``overwrite``: z is the caller's scratch (it may be
        overwritten, which spares LAPACK a copy of it on the Cholesky path)."""
        def solve(chol, x):
            return torch.linalg.solve_triangular(chol.mT, x, upper=True, out=x if overwrite else None)

        return self._dispatch(
            z,
            lambda t: _each(solve, self.chol, t).mul_(self.live),
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

    def sqrt_pinv_scaled(self, r: torch.Tensor) -> torch.Tensor:
        """The symmetric square root of X = R·S'⁺·R (the truncated pseudo-inverse of S in its own
        units), for a non-uniform scaling r (B, d): X = B·Bᵀ with B = R·Wᵀ, so X^{1/2} =
        B (BᵀB)^{+1/2} Bᵀ (one (d, d) eigh of the Gram matrix, in float64). Eigh elements only."""
        vecs = self.vecs if isinstance(self.vecs, torch.Tensor) else torch.stack(list(self.vecs))
        basis = (vecs * self.weights.mT).to(torch.float64) * r.unsqueeze(-1)
        gram = basis.mT @ basis
        # Dropped columns are exactly zero: a unit diagonal there decouples them (B·e_j = 0).
        dropped = (self.weights.squeeze(-1) == 0)
        gram = gram + torch.diag_embed(dropped.to(torch.float64))
        gamma, q = torch.linalg.eigh(gram)
        tiny = torch.finfo(torch.float64).tiny
        bq = basis @ q
        return (bq * gamma.clamp_min(tiny).rsqrt().unsqueeze(-2)) @ bq.mT


def _cholesky_parts(sp: torch.Tensor, name: str, *, power_iteration: bool = True) -> tuple:
    """(chol, dead, ok, λ_max estimate, λ_min estimate) of sp (B, d, d): the cutoff-independent part
    of the Cholesky path. ``chol`` is a reused workspace (a cache keeps its own copy).
    ``power_iteration`` False (no cutoff reads λ_max: the precision floor in float64): ‖S'‖_F, an
    upper bound, stands in for the λ_max estimate.

    Exactly zero rows/columns (dead units) get a unit diagonal for the factorisation only (sp is
    ours: added and subtracted in place, exactly, instead of copying a (B, d, d) tensor). A failed
    factor only produces inf/NaN estimates in its own batch element.
    """
    dtype = sp.dtype
    dead = (sp.amax(dim=-1) == 0) & (sp.amin(dim=-1) == 0)  # 3× faster than (sp == 0).all at d = 577
    unit = dead.to(dtype)
    diagonal = sp.diagonal(dim1=-2, dim2=-1)
    diagonal.add_(unit)
    # Column-major (each matrix's transpose contiguous), the layout LAPACK writes: a row-major
    # ``out=`` costs a transposing copy of the factor (timings: bench/README.md, solves section).
    chol = buffers.workspace(f"{name}:chol", tuple(sp.shape), dtype, sp.device).mT
    info = torch.empty(sp.shape[0], dtype=torch.int32, device=sp.device)
    torch.linalg.cholesky_ex(sp, out=(chol, info))
    exact = sp.device.type == "cpu" and sp.shape[-1] <= EXACT_SPECTRUM_MAX_DIM
    spectrum = _exact_spectrum(sp) if exact else None
    diagonal.sub_(unit)
    if spectrum is None:
        lam_max_est, lam_min_est = _extreme_eigenvalue_estimates(sp, chol, power_iteration=power_iteration)
    else:
        lam_max_est, lam_min_est = spectrum[..., -1], spectrum[..., 0]
    return chol, dead, info == 0, lam_max_est, lam_min_est


def _exact_spectrum(sp: torch.Tensor) -> torch.Tensor | None:
    """The eigenvalues (B, d) of sp as factored (dead units at a unit diagonal: their eigenvalue 1
    stands where the inverse iteration through the factor would find it), or None where eigvalsh
    does not converge (the iterations estimate them instead). With dead units and a largest live
    eigenvalue below 1 (uniform scaling only), λ_max reads 1: a larger cutoff, never a smaller one."""
    try:
        return torch.linalg.eigvalsh(sp)
    except RuntimeError:
        return None


def _cached_parts(sp: torch.Tensor, entries, attribute: str, compute, name: str) -> tuple:
    """``compute(sp)`` for every element of sp (B, d, d), taking what the cache entries already
    hold (their parts under the key ``attribute``: kind and scaling rule, since S' differs between
    the rules) and storing a copy of what was computed.

    Returns the parts batched: tensors when all were computed here; otherwise (d, d) parts as lists
    of per-element tensors (applied element by element, never stacked) and small parts stacked.
    """
    if entries is None:
        return compute(sp, name=name)
    b = sp.shape[0]
    missing = [i for i, entry in enumerate(entries) if entry.get(attribute) is None]
    computed = None
    if missing:
        if len(missing) == b:
            sub = sp
        else:
            sub = buffers.workspace(f"{name}:missing", (len(missing), *sp.shape[1:]), sp.dtype, sp.device)
            torch.index_select(sp, 0, torch.tensor(missing, device=sp.device), out=sub)
        computed = compute(sub, name=name)
        for j, i in enumerate(missing):
            entries[i].set(attribute, tuple(part[j] for part in computed))
    if len(missing) == b:
        return computed
    held = [entry.get(attribute) for entry in entries]
    return tuple([h[k] for h in held] if held[0][k].dim() == 2 else torch.stack([h[k] for h in held])
                 for k in range(len(held[0])))


def _eigh_parts(sp: torch.Tensor, name: str) -> tuple:
    """(λ, V) of sp (B, d, d): the cutoff-independent part of the eigh path (always new tensors)."""
    return eigh_psd_torch(sp)


def factor_psd_torch(sp: torch.Tensor, *, atol, rtol, floor=None, r: torch.Tensor | None = None,
                     atol_true=None, force_eigh: bool = False, defer_eigh: bool = False, name: str = "S",
                     source: torch.Tensor | None = None) -> PsdFactor:
    """The cutoff pseudo-inverse factor of sp (B, d, d) (symmetric, scaled, work dtype).

    ``sp`` is briefly modified in place (its zero diagonal entries) and restored exactly.

    Args:
        sp: the scaled matrices S' = R·S·R.
        atol: absolute cutoff in S' units, float or (B,) tensor (relative rule only).
        rtol: relative cutoff (times ‖S'‖₂), float or (B,) tensor; None selects the precision floor.
        floor: the precision floor FLOOR_ULPS·ε (float), with ``rtol=None``.
        r: the scaling (B, d) float64 with S' = R·S·R (needed for ``atol_true``).
        atol_true: absolute threshold on the eigenvalues of S itself, (B,) tensor or None (floor
            rule only; applied by a Rayleigh–Ritz step where it can bite).
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
    use_floor = rtol is None
    if use_floor:
        # A threshold of exactly 0 drops nothing the floor keeps: no threshold.
        if atol_true is not None and (isinstance(atol_true, torch.Tensor) or atol_true > 0):
            atol_true = _as_batch(atol_true, b, torch.float64, device)
            # Below this bound (in S' units) no eigenvalue of S can fall under atol_true: μ ≥ λ'·min S_ii.
            bite = (atol_true * (r.amax(dim=-1) ** 2)).to(dtype)
            atol = torch.clamp_min(bite, float(floor))
        else:
            atol_true = None
            atol = torch.full((b,), float(floor), dtype=dtype, device=device)
    else:
        atol = _as_batch(atol, b, dtype, device)
        rtol = _as_batch(rtol, b, dtype, device)
    cache = active_cache() if source is not None else None
    entries = cache.entries(source, dtype) if cache is not None else None
    f = PsdFactor(b, d, dtype, device)
    if force_eigh:
        accept = torch.zeros(b, dtype=torch.bool, device=device)
        n_accept = 0
    else:
        # λ_max enters the relative rule's cutoff and float32's resolution check, not the floor's
        # cutoff. Cached parts stay right: use_floor is in their key and the work dtype in the entry's.
        estimate_lam_max = not use_floor or dtype != torch.float64
        chol, dead, ok, lam_max_est, lam_min = _cached_parts(
            sp, entries, ("cholesky", use_floor),
            functools.partial(_cholesky_parts, power_iteration=estimate_lam_max), name)
        live = (~dead).to(dtype)
        lam_max_ub = LAMBDA_MAX_SAFETY * lam_max_est
        cutoff_ub = atol if use_floor else torch.maximum(atol, rtol * lam_max_ub)
        # NaN and +inf estimates are refused by the comparisons: a failed factor, or (estimated
        # spectrum only) NaN above the diagonal with check_finite off.
        finite = (lam_min < float("inf")) & (lam_max_ub < float("inf"))
        accept = ok & finite & (lam_min > CHOLESKY_MARGIN * cutoff_ub)
        n_accept = int(accept.sum())  # host sync: splits the batch between the two paths
    # Index tensors exist only for a batch split between the paths (the scatter is skipped otherwise).
    if n_accept:
        idx = accept.nonzero().squeeze(1) if n_accept < b else None
        f.chol_idx = idx
        f.chol = _select(chol, idx)
        f.live = _select(live, idx).unsqueeze(-1)
        f.put("rank", idx, d - _select(dead, idx).sum(dim=-1))
        f.put("lam_max", idx, _select(lam_max_ub, idx))
        f.put("lam_min", idx, _select(lam_min, idx))
        f.put("cutoff", idx, _select(cutoff_ub, idx))
    if n_accept < b:
        idx = (~accept).nonzero().squeeze(1) if n_accept else None
        sel = slice(None) if idx is None else idx
        f.eig_idx = idx
        if defer_eigh:
            n_left = b - n_accept
            f.vecs = torch.eye(d, dtype=dtype, device=device).expand(n_left, d, d)
            f.keep = torch.zeros(n_left, d, dtype=torch.bool, device=device)
            f.weights = torch.zeros(n_left, d, 1, dtype=dtype, device=device)
            f.put("deferred", idx, True)
            return f
        sub_entries = entries
        if entries is not None and idx is not None:
            sub_entries = [entries[i] for i in idx.tolist()]
        lam, vecs = _cached_parts(sp[sel], sub_entries, ("eigh", use_floor), _eigh_parts, name)
        lam_max = lam.abs().amax(dim=-1)
        if use_floor:
            negative = (-lam.amin(dim=-1)).clamp_min(0)
            cutoff = torch.maximum(torch.full_like(lam_max, float(floor)), NEGATIVE_NOISE_FACTOR * negative)
        else:
            cutoff = torch.maximum(atol[sel], rtol[sel] * lam_max)
        keep = lam > cutoff.unsqueeze(-1)
        tiny = torch.finfo(dtype).tiny
        f.vecs = vecs
        f.keep = keep
        f.weights = torch.where(keep, lam.clamp_min(tiny).rsqrt(), torch.zeros_like(lam)).unsqueeze(-1)
        f.put("rank", idx, keep.sum(dim=-1))
        f.put("lam_max", idx, lam_max)
        f.put("lam_min", idx, lam.amin(dim=-1))
        lam_min_kept = torch.where(keep, lam, torch.full_like(lam, float("inf"))).amin(dim=-1)
        f.put("lam_min_kept", idx, lam_min_kept)
        f.put("cutoff", idx, cutoff)
        f.put("used_eigh", idx, True)
        if use_floor:
            # Only dead features dropped (and no absolute threshold that can bite): R·S'⁺·R is
            # already the inverse of the live block, i.e. S⁺; otherwise the truncated S's own.
            live_count = (r[sel] > 0).sum(dim=-1)
            bites = torch.zeros_like(keep[:, 0])
            if atol_true is not None:
                bites = (atol_true[sel] > 0) & (
                    lam_min_kept.to(torch.float64) * r[sel].amax(dim=-1) ** -2 <= atol_true[sel])
            needs = (keep.sum(dim=-1) < live_count) | bites
            if bool(needs.any()):  # host sync
                _truncated_pinv(f, lam, vecs, keep, r[sel], None if atol_true is None else atol_true[sel], needs)
    return f


def _truncated_pinv(f: PsdFactor, lam, vecs, keep, r: torch.Tensor, atol_true, needs: torch.Tensor) -> None:
    """Precision-floor eigh elements: the factor of the Euclidean pseudo-inverse of the truncated S.

    Truncating S' = R S R to its kept eigenpairs (λ_k, V_k) truncates S to S_k = R⁻¹V_k Λ_k V_kᵀR⁻¹;
    its minimum-norm solve S_k⁺ (not R·S'_k⁺·R, whose null-space component would differ) comes
    from A = R⁻¹V_k = QT (QR, float64): S_k = Q·TΛ_kTᵀ·Qᵀ, so S_k⁺ = W_trueᵀW_true with W_true =
    Λ_k^{-1/2}T⁻¹Qᵀ. Where an absolute threshold on λ(S) can bite, K = TΛ_kTᵀ = ZΓZᵀ instead (Γ the
    eigenvalues of S_k) and W_true = diag(γ > atol)·Γ^{-1/2}ZᵀQᵀ. Stored in S' units (W = W_true·R⁻¹)
    so the drivers' R scaling applies unchanged. lam (n, d) ascending, vecs (n, d, d) or a list,
    keep (n, d), r (n, d) float64, atol_true (n,) float64 or None; only the elements ``needs``
    (n,) are changed (the others keep R·S'⁺·R, so a batched call equals a loop of single ones).
    """
    f64 = torch.float64
    sub = needs.nonzero().squeeze(1)
    vecs_all = vecs if isinstance(vecs, torch.Tensor) else torch.stack(list(vecs))
    lam, vecs, keep, r = lam[sub], vecs_all[sub], keep[sub], r[sub]
    atol_true = None if atol_true is None else atol_true[sub]
    lam_d, vecs_d, keep_d = lam.flip(-1).to(f64), vecs.flip(-1).to(f64), keep.flip(-1)
    r_inv = torch.where(r > 0, 1.0 / torch.where(r > 0, r, torch.ones_like(r)), torch.zeros_like(r))
    a = r_inv.unsqueeze(-1) * vecs_d * keep_d.unsqueeze(-2).to(f64)
    q, t = torch.linalg.qr(a)
    tiny = torch.finfo(f64).tiny
    w = torch.where(keep_d, lam_d.clamp_min(tiny).rsqrt(), torch.zeros_like(lam_d))
    diag = t.diagonal(dim1=-2, dim2=-1)
    t = t + torch.diag_embed(torch.where(keep_d, torch.zeros_like(diag), 1.0 - diag))
    # W_trueᵀ = Q T⁻ᵀ diag(w): T⁻ᵀ solves as lower-triangular on Qᵀ's rows.
    vecs_true = torch.linalg.solve_triangular(t, q.mT, upper=True).mT
    weights = w
    if atol_true is not None:
        bite = (atol_true > 0) & (
            torch.where(keep_d, lam_d, torch.full_like(lam_d, float("inf"))).amin(dim=-1) * (r.amax(dim=-1) ** -2)
            <= atol_true)
        if bool(bite.any()):  # host sync only where an absolute threshold is given
            idx = bite.nonzero().squeeze(1)
            tk = t[idx] * (keep_d[idx].to(f64) * lam_d[idx].clamp_min(0).sqrt()).unsqueeze(-2)
            k_mat = tk @ tk.mT
            dropped = ~keep_d[idx]
            k_mat = k_mat - torch.diag_embed(dropped.to(f64))  # decoupled, eigenvalue −1: stays dropped
            gamma, z = torch.linalg.eigh(k_mat)
            keep2 = gamma > atol_true[idx].unsqueeze(-1)
            vecs_true = vecs_true.clone()
            weights = weights.clone()
            vecs_true[idx] = q[idx] @ z
            weights[idx] = torch.where(keep2, gamma.clamp_min(tiny).rsqrt(), torch.zeros_like(gamma))
            keep_d = keep_d.clone()
            keep_d[idx] = keep2
    full = sub if f.eig_idx is None else f.eig_idx[sub]
    # W_true in S' units, in eigh's ascending order (so project_kept and the kept mask line up).
    new_vecs = (r_inv.unsqueeze(-1) * vecs_true).flip(-1).to(f.dtype)
    f.vecs = vecs_all.clone()
    f.vecs[sub] = new_vecs
    f.weights = f.weights.clone()
    f.weights[sub] = weights.flip(-1).to(f.dtype).unsqueeze(-1)
    f.keep = f.keep.clone()
    f.keep[sub] = keep_d.flip(-1)
    f.rank[full] = keep_d.sum(dim=-1)
