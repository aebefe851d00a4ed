"""`python -m gromo_kernels`: statistics of a real conv layer and their error against float64.

Builds a small conv pair (8→16→16 channels, 3×3, padding 1, 16×16 images), runs a real forward and
a sum-reduced backward, computes every statistic of the pair with the fast path and prints its
largest relative error against the brute-force float64 reference of gromo_kernels.testing.
"""

from __future__ import annotations

import argparse
import time

import torch

from . import Conv2dGeometry, layer_statistics, testing


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gromo_kernels", description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--backend", default="auto", choices=["auto", "torch", "triton"])
    parser.add_argument("--precision", default=None, choices=["ieee", "tf32x3", "tf32", "bf16"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    g = torch.Generator().manual_seed(args.seed)
    prev = Conv2dGeometry(3, padding=1)
    cur = Conv2dGeometry(3, padding=1)
    conv1 = torch.nn.Conv2d(8, 16, 3, padding=1)
    conv2 = torch.nn.Conv2d(16, 16, 3, padding=1)
    x_prev = torch.randn(args.batch, 8, 16, 16, generator=g)
    x = torch.relu(conv1(x_prev)).detach().requires_grad_(False)
    pre = conv2(x)
    pre.retain_grad()
    loss = (pre - torch.randn(pre.shape, generator=g)).pow(2).sum()
    loss.backward()
    grad = pre.grad.detach()

    for kind in ("conv2d_restricted", "conv2d_full"):
        t0 = time.perf_counter()
        stats = layer_statistics(kind, x, grad, x_prev=x_prev, prev=prev, cur=cur,
                                 backend=args.backend, precision=args.precision)
        elapsed = time.perf_counter() - t0
        ref_s = testing.conv2d_input_cov_reference(x, cur, precision=args.precision)
        ref_m = testing.conv2d_input_grad_reference(x, grad, cur, precision=args.precision)
        ref_e = testing.grad_cov_reference(grad, channel_dim=1, precision=args.precision)
        if kind == "conv2d_restricted":
            ref_growth = testing.conv2d_restricted_growth_stats_reference(
                x_prev, x, grad, prev=prev, cur=cur, precision=args.precision)
            refs = {"s": ref_s, "m": ref_m, "e": ref_e,
                    "s_growth": testing.conv2d_input_cov_reference(x_prev, prev, precision=args.precision),
                    "m_prev": ref_growth.m_prev, "cross_cov": ref_growth.cross_cov}
        else:
            ref_growth = testing.conv2d_full_growth_stats_reference(
                x_prev, x, grad, prev=prev, cur=cur, precision=args.precision)
            refs = {"s": ref_s, "m": ref_m, "e": ref_e, "s_growth": ref_growth.s_growth,
                    "m_prev": ref_growth.m_prev, "cross_cov": ref_growth.cross_cov}
        print(f"{kind}: all statistics in {elapsed * 1e3:.1f} ms")
        for name, ref in refs.items():
            out = stats[name].double().cpu()
            rel = float((out - ref).abs().max() / ref.abs().max().clamp_min(1e-300))
            print(f"  {name:9s} shape {str(tuple(out.shape)):18s} max |err| / max |ref| = {rel:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
