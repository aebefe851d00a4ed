"""GPU run, in one go: the kernel tests on CUDA, then every statistic timed against its baselines.

    bench/gpu.sh                       (= python3 bench/gpu.py; see --help)
    python3 bench/gpu.py --skip-tests  timings only
    python3 bench/gpu.py --quick       fewer modes and sweep points (about a minute)

What it does on a CUDA machine:
1. ``GROMO_TEST_DEVICE=cuda pytest tests/kernels`` (compiled kernels, same tests as the interpreter
   job plus larger batches; GROMO_KERNELS_TRITON_AUTOTUNE=0 so each kernel variant compiles once);
   the pass/fail summary goes into the results.
2. Matmul ceilings measured on this device, per precision: torch.mm 8192³ in fp32 with TF32 off
   ("ieee"), TF32 on ("tf32"), bf16 ("bf16"); "tf32x3" = tf32 ceiling / 3 (three TF32 MMAs).
3. The benchmark pairs (linear 512→256→512 n=1024; Restricted 64→64→64 3×3 pad 1 32×32 n=64; Full
   n=16 and n=64): every statistic alone on the triton backend in every precision mode, the fused
   ``layer_statistics`` of the pair, the torch backend, and the GroMo-style baseline
   (bench/gromo_baseline.py). Each triton result is checked against an fp64 computation (torch
   backend on fp64 inputs) and its worst error / tolerance ratio is reported: a fast wrong answer
   cannot win.
4. A D sweep of conv S and M (D = C·k² + 1 ∈ {65, 129, 577, 1153, 2305}; n=64, 32×32, pad k//2):
   triton in every mode vs the GroMo-style unfold + einsum, torch's best (F.unfold + mm for S; the
   cuDNN weight gradient for M) and our torch backend.
5. Solves (bench/gpu_solves.py): one growth step of the 20-layer network, GroMo-style loop vs ours
   with accuracies, and eigh batched / looped / per linalg library vs Cholesky for D up to 1153.
Times are medians of ``triton.testing.do_bench`` (which flushes L2 before each call; inputs are
rotated among several copies as well). TFLOP/s use GEMM-equivalent FLOPs 2·R·D_A·D_B (a symmetric
S counts its full D², although only the upper half is computed; Full S_growth counts R, not R·kk) and are shown as a fraction of the
measured ceiling of the same precision. Results: bench/results/<device>_<date>.json and .md.

Without CUDA it prints why and exits with status 2; ``--smoke`` runs the same code on tiny shapes
under TRITON_INTERPRET=1 (CPU, wall-clock timer) to check the script itself.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO / "bench"
MODES = ("ieee", "tf32x3", "tf32", "bf16")
SWEEP_D = (65, 129, 577, 1153, 2305)
# D = C·k² + 1 for each sweep point: (C, k).
SWEEP_SHAPES = {65: (16, 2), 129: (32, 2), 577: (64, 3), 1153: (128, 3), 2305: (256, 3)}
ROTATE = 3


def _need_cuda_message() -> str:
    return ("bench/gpu.py needs a CUDA GPU (torch.cuda.is_available() is False here). Run it on a GPU "
            "machine, or pass --smoke to check the script on tiny shapes under TRITON_INTERPRET=1.")


# ----------------------------------------------------------------------------------------------
# Environment
# ----------------------------------------------------------------------------------------------


def _git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                             text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True,
                               timeout=10)
        sha = out.stdout.strip() or "unknown"
        return sha + ("-dirty" if dirty.stdout.strip() else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment(device) -> dict:
    import torch
    import triton

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu-{platform.machine()}"
    return {
        "device": name,
        "device_slug": re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-"),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "git_sha": _git_sha(),
        "interpreter": os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"),
    }


# ----------------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------------


def timer(device):
    """median milliseconds of fn(): do_bench on CUDA, a wall-clock median on CPU (smoke only)."""
    if device.type == "cuda":
        from triton.testing import do_bench

        def cuda_time(fn) -> float:
            return float(do_bench(fn, warmup=25, rep=100, return_mode="median"))

        return cuda_time

    def cpu_time(fn) -> float:
        fn()
        samples = []
        for _ in range(3):
            start = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - start) * 1e3)
        return statistics.median(samples)

    return cpu_time


def rotating(fn, inputs):
    """A zero-argument callable that applies fn to the next input set each call."""
    state = {"i": 0}

    def call():
        args = inputs[state["i"] % len(inputs)]
        state["i"] += 1
        return fn(*args)

    return call


def _gpu_solves():
    """bench/gpu_solves.py (a sibling module; this script is also loaded by path in the tests)."""
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    import gpu_solves

    return gpu_solves


def tflops(flops: float, ms: float) -> float:
    return flops / (ms * 1e-3) / 1e12 if ms > 0 else float("nan")


# ----------------------------------------------------------------------------------------------
# 1. tests on CUDA
# ----------------------------------------------------------------------------------------------


def run_tests(timeout_s: int) -> dict:
    # One block config per kernel variant: the suite compiles each variant once instead of autotuning
    # four configs per variant (the benchmark below autotunes).
    env = dict(os.environ, GROMO_TEST_DEVICE="cuda", GROMO_KERNELS_TRITON_AUTOTUNE="0")
    env.pop("TRITON_INTERPRET", None)
    cmd = [sys.executable, "-m", "pytest", "tests/kernels", "-q", "-p", "no:cacheprovider", "--maxfail=20"]
    start = time.time()
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as err:
        tail = (err.stdout or b"")[-3000:]
        return {"command": " ".join(cmd), "returncode": None, "timed_out": True,
                "seconds": round(time.time() - start, 1),
                "tail": tail.decode(errors="replace") if isinstance(tail, bytes) else str(tail)}
    lines = proc.stdout.strip().splitlines()
    summary = lines[-1] if lines else ""
    return {"command": " ".join(cmd), "returncode": proc.returncode, "timed_out": False,
            "seconds": round(time.time() - start, 1), "summary": summary,
            "tail": "\n".join(lines[-40:]) + ("\n" + proc.stderr[-2000:] if proc.returncode else "")}


# ----------------------------------------------------------------------------------------------
# 2. matmul ceilings
# ----------------------------------------------------------------------------------------------


def ceilings(device, size: int, time_ms) -> dict:
    """Measured TFLOP/s of a square torch.mm per precision mode."""
    import torch

    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    flops = 2.0 * size ** 3
    out = {}
    old = torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = False
        out["ieee"] = tflops(flops, time_ms(lambda: torch.mm(a, b)))
        torch.backends.cuda.matmul.allow_tf32 = True
        out["tf32"] = tflops(flops, time_ms(lambda: torch.mm(a, b)))
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old
    a16, b16 = a.bfloat16(), b.bfloat16()
    out["bf16"] = tflops(flops, time_ms(lambda: torch.mm(a16, b16)))
    out["tf32x3"] = out["tf32"] / 3.0
    return out


# ----------------------------------------------------------------------------------------------
# 3. the benchmark pairs
# ----------------------------------------------------------------------------------------------


def pair_cases(smoke: bool) -> list[dict]:
    import gromo_kernels as gk

    conv = gk.Conv2dGeometry(3, 1, 1)
    if smoke:
        return [
            dict(name="linear", kind="linear", n=64, widths=(12, 9, 7)),
            dict(name="restricted", kind="conv2d_restricted", n=2, channels=(3, 3, 3), hw=6, prev=conv, cur=conv),
            dict(name="full", kind="conv2d_full", n=2, channels=(3, 3, 3), hw=6, prev=conv, cur=conv),
        ]
    return [
        dict(name="linear_n1024", kind="linear", n=1024, widths=(512, 256, 512)),
        dict(name="restricted_n64", kind="conv2d_restricted", n=64, channels=(64, 64, 64), hw=32, prev=conv,
             cur=conv),
        dict(name="full_n16", kind="conv2d_full", n=16, channels=(64, 64, 64), hw=32, prev=conv, cur=conv),
        dict(name="full_n64", kind="conv2d_full", n=64, channels=(64, 64, 64), hw=32, prev=conv, cur=conv),
    ]


def pair_inputs(case: dict, device, seed: int):
    """(x_prev, x, grad) for the pair; fresh per seed."""
    import torch

    g = torch.Generator().manual_seed(seed)
    n = case["n"]
    if case["kind"] == "linear":
        dp, d, o = case["widths"]
        shapes = [(n, dp), (n, d), (n, o)]
    else:
        cp, c, co = case["channels"]
        hw = case["hw"]
        shapes = [(n, cp, hw, hw), (n, c, hw, hw), (n, co, hw, hw)]
    return tuple(torch.randn(*s, generator=g).to(device) for s in shapes)


def statistic_flops(case: dict, name: str, shapes: dict) -> float:
    """GEMM-equivalent FLOPs 2·rows·(entries of the result) of one statistic.

    Full S_growth counts the rows once (its tap-weighted form: each row weighted by its tap count), not rows·kk.
    """
    rows = case["n"] if case["kind"] == "linear" else case["n"] * case["hw"] ** 2
    entries = 1
    for size in shapes[name]:
        entries *= size
    return 2.0 * rows * entries


def bench_pairs(device, time_ms, ceiling: dict, modes, smoke: bool) -> list[dict]:
    import torch

    import gromo_kernels as gk

    sys.path.insert(0, str(BENCH_DIR))
    try:
        import gromo_baseline as baseline
    except ImportError:
        baseline = None

    rows_out = []
    for case in pair_cases(smoke):
        kind = case["kind"]
        geo = {} if kind == "linear" else dict(prev=case["prev"], cur=case["cur"])
        sets = [pair_inputs(case, device, seed) for seed in range(ROTATE)]
        x_prev, x, grad = sets[0]
        exact = gk.layer_statistics(kind, x.double(), grad.double(), x_prev=x_prev.double(), backend="torch",
                                    **geo)
        shapes = {k: tuple(v.shape) for k, v in exact.items()}
        lengths = _reduction_lengths(case, exact)
        record = {"case": case["name"], "kind": kind, "n": case["n"], "statistics": {}, "pair": {}}
        for name in exact:
            flops = statistic_flops(case, name, shapes)
            per_mode = {}
            for mode in modes:
                fn = rotating(lambda xp, xx, gg, mode=mode, name=name: gk.layer_statistics(
                    kind, xx, gg, x_prev=xp, want=(name,), backend="triton", precision=mode, **geo), sets)
                out = fn()[name]
                ratio = _error_ratio(out, exact[name], mode, lengths[name], x, x_prev, grad, kind, name, geo)
                ms = time_ms(fn)
                per_mode[mode] = {"ms": ms, "tflops": tflops(flops, ms),
                                  "of_ceiling": tflops(flops, ms) / ceiling[mode] if ceiling.get(mode) else None,
                                  "error_over_tolerance": ratio}
            record["statistics"][name] = {"shape": shapes[name], "gemm_flops": flops, "modes": per_mode}
            print(f"  {case['name']:>16} {name:>10}: " + "  ".join(
                f"{m} {v['ms']:.3f} ms ({v['tflops']:.1f} TF/s, err {v['error_over_tolerance']:.2g})"
                for m, v in per_mode.items()), flush=True)
        pair = {}
        for mode in modes:
            fn = rotating(lambda xp, xx, gg, mode=mode: gk.layer_statistics(
                kind, xx, gg, x_prev=xp, backend="triton", precision=mode, **geo), sets)
            pair[f"triton_fused_{mode}"] = time_ms(fn)
        pair["torch_backend"] = time_ms(rotating(lambda xp, xx, gg: gk.layer_statistics(
            kind, xx, gg, x_prev=xp, backend="torch", **geo), sets))
        if baseline is not None:
            pair["gromo_baseline"] = time_ms(rotating(_baseline_pair(baseline, case, x), sets))
        record["pair"] = pair
        print(f"  {case['name']:>16} pair: " + "  ".join(f"{k} {v:.3f} ms" for k, v in pair.items()), flush=True)
        rows_out.append(record)
        del sets, exact
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows_out


def _reduction_lengths(case: dict, exact: dict) -> dict:
    n = case["n"]
    rows = n if case["kind"] == "linear" else n * case["hw"] ** 2
    out = dict.fromkeys(exact, rows)
    if case["kind"] == "conv2d_full":
        out["s_growth"] = rows * case["cur"].kernel_area
    return out


def _error_ratio(out, exact64, mode, length, x, x_prev, grad, kind, name, geo) -> float:
    """max |out − ref| / bound with the testing tolerance; ref = fp64 on operands rounded like the mode."""
    import gromo_kernels as gk
    from gromo_kernels import testing

    if mode in ("tf32", "bf16"):
        rounded = [testing.round_reference(t, mode).to(t.device) for t in (x, grad, x_prev)]
        ref = gk.layer_statistics(kind, rounded[0], rounded[1], x_prev=rounded[2], want=(name,),
                                  backend="torch", **geo)[name]
    else:
        ref = exact64
    tol = testing.tolerance(mode, out.dtype, length)
    err = (out.double() - ref.double()).abs()
    bound = tol.atol + tol.rtol * ref.double().abs()
    return float((err / bound).max())


def _baseline_pair(baseline, case: dict, like):
    kind = case["kind"]
    if kind == "linear":
        return lambda xp, xx, gg: baseline.linear_pair_statistics(xp, xx, gg)
    prev, cur = case["prev"], case["cur"]
    if kind == "conv2d_restricted":
        d_prev = case["channels"][0] * prev.kernel_area + 1
        weight = baseline.bordering_weight(d_prev, cur, like.device)
        return lambda xp, xx, gg: baseline.restricted_pair_statistics(xp, xx, gg, prev=prev, cur=cur,
                                                                      weight=weight)
    mask = baseline.mask_tensor_t(like.shape[2], like.shape[3], cur).to(like.device)
    return lambda xp, xx, gg: baseline.full_pair_statistics(xp, xx, gg, prev=prev, cur=cur, mask=mask)


# ----------------------------------------------------------------------------------------------
# 4. D sweep of conv S and M
# ----------------------------------------------------------------------------------------------


def _unfold_rows(x, geometry):
    """GroMo-free torch best for S: F.unfold, ones row, (D, R) layout for one mm."""
    import torch
    import torch.nn.functional as F

    g = geometry.normalized()
    u = F.unfold(x, g.kernel_size, dilation=g.dilation, padding=g.padding, stride=g.stride)
    u = torch.cat([u, torch.ones(u.shape[0], 1, u.shape[2], device=x.device, dtype=x.dtype)], dim=1)
    return u.transpose(0, 1).reshape(u.shape[1], -1)


def bench_sweep(device, time_ms, ceiling: dict, modes, smoke: bool, quick: bool = False) -> list[dict]:
    import torch

    import gromo_kernels as gk

    sys.path.insert(0, str(BENCH_DIR))
    try:
        from gromo_baseline import unfolded_extended as unfold_baseline
    except ImportError:
        def unfold_baseline(x, geometry):
            """Minimal GroMo-style unfold (F.unfold + ones row) when bench/gromo_baseline.py is absent."""
            u = _unfold_rows(x, geometry)
            return u.reshape(u.shape[0], x.shape[0], -1).transpose(0, 1)

    n, hw, c_out = (2, 6, 5) if smoke else (64, 32, 64)
    points = {65: (2, 2), 129: (4, 2)} if smoke else dict(SWEEP_SHAPES)
    if quick and not smoke:
        points = {d: points[d] for d in (65, 577, 2305)}
    results = []
    for d, (c, k) in points.items():
        geometry = gk.Conv2dGeometry(k, 1, k // 2)
        ho, wo = geometry.output_size(hw, hw)
        g = torch.Generator().manual_seed(d)
        sets = [(torch.randn(n, c, hw, hw, generator=g).to(device),
                 torch.randn(n, c_out, ho, wo, generator=g).to(device)) for _ in range(ROTATE)]
        rows = n * ho * wo
        dd = c * k * k + 1
        flops_s, flops_m = 2.0 * rows * dd * dd, 2.0 * rows * dd * c_out
        entry = {"D": dd, "C": c, "k": k, "n": n, "rows": rows, "S": {}, "M": {}}
        for mode in modes:
            entry["S"][f"triton_{mode}"] = time_ms(rotating(
                lambda x, gr, mode=mode: gk.conv2d_input_cov(x, geometry, backend="triton", precision=mode), sets))
            entry["M"][f"triton_{mode}"] = time_ms(rotating(
                lambda x, gr, mode=mode: gk.conv2d_input_grad(x, gr, geometry, backend="triton", precision=mode),
                sets))
        entry["S"]["torch_backend"] = time_ms(rotating(
            lambda x, gr: gk.conv2d_input_cov(x, geometry, backend="torch"), sets))
        entry["M"]["torch_backend"] = time_ms(rotating(
            lambda x, gr: gk.conv2d_input_grad(x, gr, geometry, backend="torch"), sets))
        entry["S"]["gromo_baseline"] = time_ms(rotating(
            lambda x, gr: torch.einsum("iam,ibm->ab", unfold_baseline(x, geometry), unfold_baseline(x, geometry)),
            sets))
        entry["M"]["gromo_baseline"] = time_ms(rotating(
            lambda x, gr: torch.einsum("iam,icm->ac", unfold_baseline(x, geometry), gr.flatten(2)), sets))
        entry["S"]["torch_best_unfold_mm"] = time_ms(rotating(
            lambda x, gr: (lambda u: torch.mm(u, u.T))(_unfold_rows(x, geometry)), sets))
        entry["M"]["torch_best_cudnn_wgrad"] = time_ms(rotating(
            lambda x, gr: _wgrad_m(x, gr, geometry), sets))
        entry["tflops_S"] = {k2: tflops(flops_s, v) for k2, v in entry["S"].items()}
        entry["tflops_M"] = {k2: tflops(flops_m, v) for k2, v in entry["M"].items()}
        entry["S_of_ceiling"] = {m: entry["tflops_S"][f"triton_{m}"] / ceiling[m] for m in modes if ceiling.get(m)}
        print(f"  D={dd:>5}: S " + "  ".join(f"{k2} {v:.3f}" for k2, v in entry["S"].items()) + " ms", flush=True)
        print(f"  D={dd:>5}: M " + "  ".join(f"{k2} {v:.3f}" for k2, v in entry["M"].items()) + " ms", flush=True)
        results.append(entry)
    return results


def _wgrad_m(x, grad, geometry):
    """M through torch's convolution weight gradient (cuDNN on GPU) plus the bias row."""
    import torch

    g = geometry.normalized()
    w = torch.nn.grad.conv2d_weight(x, (grad.shape[1], x.shape[1], *g.kernel_size), grad, stride=g.stride,
                                    padding=g.padding, dilation=g.dilation)
    m = w.reshape(grad.shape[1], -1).T
    return torch.cat([m, grad.sum(dim=(0, 2, 3))[None, :]], dim=0)


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------


def markdown(result: dict) -> str:
    meta = result["meta"]
    lines = [f"# gromo_kernels GPU benchmark — {meta['device']}", "",
             f"date {meta['date']} · torch {meta['torch']} · triton {meta['triton']} · CUDA {meta['cuda']} · "
             f"git {meta['git_sha']}", ""]
    tests = result.get("tests")
    if tests:
        lines += [f"Tests on CUDA: `{tests.get('summary', '')}` (rc={tests.get('returncode')}, "
                  f"{tests.get('seconds')} s)", ""]
    ceil = result["ceilings"]
    lines += ["Matmul ceilings (TFLOP/s): " + ", ".join(f"{k} {v:.1f}" for k, v in ceil.items()), ""]
    for record in result["pairs"]:
        modes = list(next(iter(record["statistics"].values()))["modes"])
        lines += [f"## {record['case']} ({record['kind']}, n={record['n']})", "",
                  "| statistic | shape | " + " | ".join(f"{m} ms (TF/s, % ceil, err/tol)" for m in modes) + " |",
                  "|---|---|" + "---|" * len(modes)]
        for name, stat in record["statistics"].items():
            cells = []
            for m in modes:
                v = stat["modes"][m]
                frac = f"{100 * v['of_ceiling']:.0f}%" if v["of_ceiling"] is not None else "-"
                cells.append(f"{v['ms']:.3f} ({v['tflops']:.1f}, {frac}, {v['error_over_tolerance']:.2g})")
            lines.append(f"| {name} | {tuple(stat['shape'])} | " + " | ".join(cells) + " |")
        pair = record["pair"]
        lines += ["", "| whole pair | ms | vs GroMo-style |", "|---|---|---|"]
        base = pair.get("gromo_baseline")
        for k, v in pair.items():
            lines.append(f"| {k} | {v:.3f} | {base / v:.1f}× |" if base else f"| {k} | {v:.3f} | - |")
        lines.append("")
    if result["sweep"]:
        keys = list(result["sweep"][0]["S"])
        lines += ["## D sweep: conv S (ms; TF/s)", "", "| D | " + " | ".join(keys) + " |",
                  "|---|" + "---|" * len(keys)]
        for e in result["sweep"]:
            lines.append(f"| {e['D']} | " + " | ".join(
                f"{e['S'][k]:.3f} ({e['tflops_S'][k]:.1f})" for k in keys) + " |")
        keys = list(result["sweep"][0]["M"])
        lines += ["", "## D sweep: conv M (ms; TF/s)", "", "| D | " + " | ".join(keys) + " |",
                  "|---|" + "---|" * len(keys)]
        for e in result["sweep"]:
            lines.append(f"| {e['D']} | " + " | ".join(
                f"{e['M'][k]:.3f} ({e['tflops_M'][k]:.1f})" for k in keys) + " |")
    if result.get("solves"):
        lines += _gpu_solves().markdown_solves(result["solves"])
    lines.append("")
    return "\n".join(lines)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--skip-tests", action="store_true", help="do not run pytest on CUDA first")
    p.add_argument("--tests-timeout", type=int, default=400, help="seconds for the CUDA test run")
    p.add_argument("--quick", action="store_true", help="modes ieee/tf32x3/bf16, sweep 65, 577, 2305")
    p.add_argument("--no-sweep", action="store_true", help="skip the D sweep")
    p.add_argument("--no-pairs", action="store_true", help="skip the pair benchmarks")
    p.add_argument("--no-solves", action="store_true", help="skip the solves benchmark")
    p.add_argument("--smoke", action="store_true",
                   help="tiny shapes; runs on CPU under TRITON_INTERPRET=1 (checks this script)")
    p.add_argument("--out", type=Path, default=BENCH_DIR / "results", help="output folder")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.smoke:
        os.environ.setdefault("TRITON_INTERPRET", "1")
    import torch

    if not args.smoke and not torch.cuda.is_available():
        print(_need_cuda_message(), file=sys.stderr)
        return 2
    try:
        import triton  # noqa: F401
    except ImportError:
        print("bench/gpu.py needs triton (pip install triton)", file=sys.stderr)
        return 2
    sys.path.insert(0, str(REPO))
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    time_ms = timer(device)
    modes = ("ieee", "tf32x3", "bf16") if args.quick else MODES

    result = {"meta": environment(device), "tests": None}
    print(f"device {result['meta']['device']}, torch {result['meta']['torch']}, "
          f"triton {result['meta']['triton']}, git {result['meta']['git_sha']}", flush=True)
    if not args.skip_tests and not args.smoke:
        print("running GROMO_TEST_DEVICE=cuda pytest tests/kernels ...", flush=True)
        result["tests"] = run_tests(args.tests_timeout)
        print(f"  {result['tests'].get('summary', result['tests'])}", flush=True)
    result["ceilings"] = ceilings(device, 256 if args.smoke else 8192, time_ms)
    print("  ceilings TFLOP/s: " + ", ".join(f"{k} {v:.1f}" for k, v in result["ceilings"].items()), flush=True)
    result["pairs"] = [] if args.no_pairs else bench_pairs(device, time_ms, result["ceilings"], modes,
                                                            args.smoke)
    result["sweep"] = [] if args.no_sweep else bench_sweep(device, time_ms, result["ceilings"], modes,
                                                            args.smoke, args.quick)
    if not args.no_solves:
        result["solves"] = _gpu_solves().bench_solves(device, time_ms, args.smoke)

    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"{result['meta']['device_slug']}_{result['meta']['date'][:10]}" + ("_smoke" if args.smoke else "")
    json_path = args.out / f"{stem}.json"
    md_path = args.out / f"{stem}.md"
    json_path.write_text(json.dumps(result, indent=1, default=str))
    md_path.write_text(markdown(result))
    print(f"wrote {json_path} and {md_path}")
    tests_failed = result["tests"] is not None and result["tests"].get("returncode") != 0
    return 1 if tests_failed else 0


if __name__ == "__main__":
    sys.exit(main())
