"""When ``torch.linalg.eigh`` fails, the solves decompose the unmodified matrix through the SVD and
say so with an EighFallbackWarning; the answer is still the float64 reference."""

import pytest
import torch

import gromo_kernels as gk


def _rank_deficient_psd(d: int, rank: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=generator, dtype=torch.float64))
    lam = torch.zeros(d, dtype=torch.float64)
    lam[:rank] = torch.rand(rank, generator=generator, dtype=torch.float64) * 4 + 0.5
    s = (q * lam) @ q.T
    return (s + s.T) / 2, lam, q


@pytest.fixture
def failing_eigh(monkeypatch):
    calls = []

    def failing(matrix, *args, **kwargs):
        calls.append(tuple(matrix.shape))
        raise torch.linalg.LinAlgError("linalg.eigh: the algorithm failed to converge")

    monkeypatch.setattr(torch.linalg, "eigh", failing)
    return calls


def test_psd_inv_sqrt_falls_back_to_the_svd_and_warns(failing_eigh):
    s, lam, q = _rank_deficient_psd(7, 4, seed=11)
    before = s.clone()
    with pytest.warns(gk.EighFallbackWarning, match="did not converge on 1 of 1 matrices of size 7"):
        result = gk.psd_inv_sqrt(s, threshold=1e-9, rtol=0.0)
    assert failing_eigh, "the test must exercise the eigh path"
    keep = lam > 1e-9
    reference = (q[:, keep] * lam[keep] ** -0.5) @ q[:, keep].T
    assert int(result.rank) == 4
    torch.testing.assert_close(result.r, reference, rtol=1e-10, atol=1e-10)
    assert torch.equal(s, before)


def test_a_batch_warns_once_for_the_elements_that_failed(failing_eigh):
    triples = [_rank_deficient_psd(6, 3, seed=seed) for seed in (1, 2, 3)]
    s = torch.stack([t[0] for t in triples])
    with pytest.warns(gk.EighFallbackWarning, match="on 3 of 3 matrices") as record:
        result = gk.psd_inv_sqrt(s, threshold=1e-9, rtol=0.0)
    assert sum(issubclass(w.category, gk.EighFallbackWarning) for w in record) == 1
    for r, (_, lam, q) in zip(result.r, triples):
        keep = lam > 1e-9
        torch.testing.assert_close(r, (q[:, keep] * lam[keep] ** -0.5) @ q[:, keep].T, rtol=1e-10, atol=1e-10)
