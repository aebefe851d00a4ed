"""factorization_cache(): solves inside a block reuse factorisations and return what they return
outside it (the same factors and cutoffs: equal up to the last-bit effects of batching, which also
differ between a batched call and a loop outside a block); a changed matrix is never served a stale
factor."""

from __future__ import annotations

import pytest
import torch

import gromo_kernels as gk
from gromo_kernels.testing import random_psd
from gromo_kernels.torch_impl import factor_cache


def _network(generator, device, dims=(9, 17, 9, 33, 17), rank_deficient=(1,), dead=(3,)):
    """fp32 statistics of a small chain: S_l (D_l, D_l), M_l (D_l, o_l), N_l (D_{l-1}, o_l)."""
    s_list, m_list = [], []
    for layer, d in enumerate(dims):
        rank = d - 1 if layer in rank_deficient else None
        s = random_psd(d, "geometric", cond=1e3, rank=rank, generator=generator)
        if layer in dead:
            s[:2, :] = 0
            s[:, :2] = 0
        s_list.append(s.float().to(device))
        m_list.append((s @ torch.randn(d, 5, generator=generator, dtype=torch.float64)).float().to(device))
    n_list = [(s_list[i - 1].double().cpu() @ torch.randn(dims[i - 1], 4, generator=generator,
                                                           dtype=torch.float64)).float().to(device)
              for i in range(1, len(dims))]
    return s_list, m_list, n_list


def _step(s_list, m_list, n_list, dtype=None):
    deltas = gk.optimal_delta(s_list, m_list, dtype=dtype)
    neurons = gk.optimal_added_neurons(s_list[:-1], n_list, dtype=dtype)
    return deltas, neurons


def _assert_same(actual, expected):
    """Equal up to a few ulps of the result dtype (relative to the largest entry)."""
    eps = torch.finfo(expected.dtype).eps
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    torch.testing.assert_close(actual, expected, rtol=8 * eps, atol=8 * eps * scale)


def _assert_same_step(a, b):
    for x, y in zip(a[0], b[0]):
        _assert_same(x.delta, y.delta)
        _assert_same(x.decrease, y.decrease)
        assert bool(x.used_pinv) == bool(y.used_pinv)
    for x, y in zip(a[1], b[1]):
        _assert_same(x.alpha, y.alpha)
        _assert_same(x.omega, y.omega)
        _assert_same(x.sigma, y.sigma)


@pytest.mark.parametrize("dtype", [None, torch.float32], ids=["fp64", "fp32-escalate"])
def test_growth_step_in_a_block_equals_the_step_outside(generator, device, dtype):
    s_list, m_list, n_list = _network(generator, device)
    plain = _step(s_list, m_list, n_list, dtype)
    with gk.factorization_cache() as cache:
        cached = _step(s_list, m_list, n_list, dtype)
    _assert_same_step(plain, cached)
    # Every S of the delta call is factored once (plus an fp64 factor of each element fp32 escalates);
    # the four S_{l-1} of the neuron call are hits.
    if dtype is None:
        assert cache.misses == len(s_list)
    else:
        assert len(s_list) < cache.misses < 2 * len(s_list)
    assert cache.hits >= len(n_list)
    assert any(bool(r.used_pinv) for r in plain[0])  # the eigh path was exercised too


def test_a_second_identical_call_is_all_hits_and_identical(generator, device):
    s_list, m_list, _ = _network(generator, device)
    with gk.factorization_cache() as cache:
        first = gk.optimal_delta(s_list, m_list)
        misses = cache.misses
        # Fresh tensors with the same values (GroMo's tensor_s() divides anew each call) still hit.
        second = gk.optimal_delta([s.clone() for s in s_list], m_list)
    assert misses == len(s_list) and cache.misses == misses and cache.hits == len(s_list)
    for a, b in zip(first, second):
        _assert_same(a.delta, b.delta)


@pytest.mark.parametrize("batch", [1, 2])
def test_large_factors_held_in_pooled_buffers_serve_the_same_solves(generator, device, batch):
    # d = 300: a Cholesky factor of 720 kB (held in a pooled buffer, not cloned) and above the size
    # up to which cached factors are stacked (so it is applied as it is held).
    s = torch.stack([random_psd(300, "geometric", cond=1e3, generator=generator) for _ in range(batch)]).float()
    m = torch.randn(batch, 300, 7, generator=generator).to(device)
    s = s.to(device)
    plain = gk.optimal_delta(s, m)
    with gk.factorization_cache() as cache:
        first = gk.optimal_delta(s, m)
        second = gk.optimal_delta(s.clone(), m)
    assert cache.misses == batch and cache.hits == batch
    assert not bool(plain.used_pinv.any())  # the Cholesky path
    for result in (first, second):
        _assert_same(result.delta, plain.delta)
        _assert_same(result.decrease, plain.decrease)


def test_a_matrix_changed_in_place_is_refactored(generator, device):
    s = random_psd(12, "geometric", cond=1e2, generator=generator).float().to(device)
    m = torch.randn(12, 3, generator=generator).to(device)
    with gk.factorization_cache() as cache:
        before = gk.solve_psd(s, m).x
        s.mul_(4.0).add_(torch.eye(12, device=device))
        after = gk.solve_psd(s, m).x
    assert cache.misses == 2 and cache.hits == 0
    reference = gk.solve_psd(s, m).x
    _assert_same(after, reference)
    assert not torch.allclose(before, after)


def test_different_cutoffs_share_an_entry_and_match_their_own_uncached_results(generator, device):
    # λ from 1 to 1e-6: the default cutoff keeps everything (Cholesky), rtol=1e-3 needs eigh.
    s = random_psd(20, "geometric", cond=1e6, generator=generator).to(device)
    m = torch.randn(20, 4, generator=generator, dtype=torch.float64).to(device)
    plain_default, plain_cut = gk.solve_psd(s, m), gk.solve_psd(s, m, rtol=1e-3)
    root = gk.psd_inv_sqrt(s, rtol=1e-3)
    with gk.factorization_cache() as cache:
        default, cut = gk.solve_psd(s, m), gk.solve_psd(s, m, rtol=1e-3)
        cached_root = gk.psd_inv_sqrt(s, rtol=1e-3)
    assert cache.misses == 1 and cache.hits == 2
    assert int(default.rank) == 20 and int(cut.rank) < 20
    _assert_same(default.x, plain_default.x)
    _assert_same(cut.x, plain_cut.x)
    _assert_same(cached_root.r, root.r)


def test_batched_calls_and_fisher_matrices_are_cached_per_element(generator, device):
    s = torch.stack([random_psd(10, "geometric", cond=1e2, generator=generator) for _ in range(3)]).to(device)
    m = torch.randn(3, 10, 4, generator=generator, dtype=torch.float64).to(device)
    e = torch.stack([random_psd(4, "geometric", cond=10.0, generator=generator) for _ in range(3)]).to(device)
    plain = gk.optimal_delta(s, m, E=e)
    with gk.factorization_cache() as cache:
        gk.optimal_delta(s[[2, 0]], m[[2, 0]], E=e[[2, 0]])
        cached = gk.optimal_delta(s, m, E=e)
    assert cache.misses == 6  # S[2], S[0], E[2], E[0] first; then S[1], E[1]
    assert cache.hits == 4
    _assert_same(cached.delta, plain.delta)
    _assert_same(cached.decrease, plain.decrease)


def test_nested_blocks_share_one_cache_and_nothing_is_kept_after(generator, device):
    s = random_psd(8, "geometric", cond=1e2, generator=generator).to(device)
    m = torch.randn(8, 2, generator=generator, dtype=torch.float64).to(device)
    with gk.factorization_cache() as outer:
        gk.solve_psd(s, m)
        with gk.factorization_cache() as inner:
            gk.solve_psd(s, m)
        assert inner is outer and outer.hits == 1
    assert factor_cache.active_cache() is None and len(outer) == 0
    gk.solve_psd(s, m)  # outside a block: nothing recorded
    assert outer.hits == 1 and outer.misses == 1


def test_eviction_keeps_the_cache_under_max_bytes_and_results_exact(generator, device):
    s_list, m_list, n_list = _network(generator, device)
    plain = _step(s_list, m_list, n_list)
    with gk.factorization_cache(max_bytes=5000) as cache:
        cached = _step(s_list, m_list, n_list)
        held = cache.nbytes()
    _assert_same_step(plain, cached)
    assert cache.misses > len(s_list)  # evicted entries were factored again
    largest = max(s.shape[0] for s in s_list) ** 2 * 8 * 2
    assert held <= max(5000, largest)


def test_results_do_not_alias_pooled_buffers(generator, device):
    s_list, m_list, n_list = _network(generator, device)
    with gk.factorization_cache():
        first = _step(s_list, m_list, n_list)
    kept = [r.delta.clone() for r in first[0]]
    other, m_other, n_other = _network(generator, device)
    with gk.factorization_cache():  # takes the pooled buffers of the first block
        _step(other, m_other, n_other)
    for r, k in zip(first[0], kept):
        assert torch.equal(r.delta, k)


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-5, ValueError), (1.5, TypeError), (True, TypeError)])
def test_max_bytes_is_checked(bad, error):
    with pytest.raises(error, match="max_bytes"):
        gk.factorization_cache(max_bytes=bad)


def test_evicted_entries_release_their_memory(generator, device):
    import gc
    import weakref

    m = torch.randn(40, 2, generator=generator, dtype=torch.float64).to(device)
    matrices = [random_psd(40, "geometric", cond=10.0, generator=generator).to(device) for _ in range(12)]
    with gk.factorization_cache(max_bytes=40 * 40 * 8 * 3) as cache:
        gk.solve_psd(matrices[0], m)
        (first,) = [entry for _, entry in cache._entries.values()]
        held = [weakref.ref(t) for t in (first.matrix, first.cholesky[0], *first.buffers)]
        del first
        for s in matrices[1:]:
            gk.solve_psd(s, m)
        gc.collect()
        assert len(cache) == 1 and cache.nbytes() <= 40 * 40 * 8 * 3
        assert all(ref() is None for ref in held)  # the evicted entry's tensors are gone, not parked


def test_a_small_matrix_does_not_pin_a_large_pooled_buffer(generator, device):
    big = random_psd(200, "geometric", cond=10.0, generator=generator).to(device)
    with gk.factorization_cache():
        gk.solve_psd(big, torch.randn(200, 2, generator=generator, dtype=torch.float64).to(device))
    small = random_psd(3, "geometric", cond=10.0, generator=generator).to(device)
    with gk.factorization_cache() as cache:
        gk.solve_psd(small, torch.randn(3, 2, generator=generator, dtype=torch.float64).to(device))
        assert cache.nbytes() < 1000


def test_buffers_made_in_inference_mode_do_not_break_later_blocks(generator, device):
    s = random_psd(30, "geometric", cond=10.0, generator=generator).to(device)
    m = torch.randn(30, 2, generator=generator, dtype=torch.float64).to(device)
    reference = gk.solve_psd(s, m).x
    with torch.inference_mode(), gk.factorization_cache():
        gk.solve_psd(s, m)
    with gk.factorization_cache():
        _assert_same(gk.solve_psd(s, m).x, reference)


def test_a_context_copied_inside_a_block_stops_caching_when_it_closes():
    import contextvars

    with gk.factorization_cache() as cache:
        inherited = contextvars.copy_context()
        assert inherited.run(factor_cache.active_cache) is cache
    assert inherited.run(factor_cache.active_cache) is None and cache.closed
