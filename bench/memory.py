"""Peak extra memory, and single-thread CPU time, of one "update statistics" call, each measured in
a fresh subprocess.

tracemalloc does not see torch's CPU allocations, and torch has no CPU allocator statistics, so we
measure the process's resident memory:

1. a fresh Python process builds the inputs and runs the call once on 2 batch items (warm-up:
   one-time allocations such as thread pools and kernel caches are not charged to the call);
2. glibc is told to serve every allocation of 64 KiB or more with mmap and to trim freed memory at
   once (``mallopt``), and ``malloc_trim(0)`` returns what it still caches, so resident memory
   follows live allocations instead of the allocator's free lists;
3. the kernel's peak-RSS counter is reset (``echo 5 > /proc/self/clear_refs``), the call runs, and
   the peak extra memory is ``VmHWM − VmRSS_before``: the exact peak of resident pages, outputs
   included, inputs and cached constants (GroMo's mask T, bordering kernel) excluded.

Where /proc/self/clear_refs is not writable, a thread samples /proc/self/statm every 0.2 ms instead
(the method is reported with the number).

Single-thread CPU time (mode "cpu1"): a fresh process with ``torch.set_num_threads(1)``, default
allocator settings, one warm-up call on 2 batch items, then the best of ``rounds`` calls measured
with ``time.process_time``. On a machine shared with other jobs, wall time measures the neighbours
as much as the code; the CPU time of one thread barely depends on them, so its ratio is the stable
one (it ignores how well each side uses a second core).

Run ``python bench/memory.py CASE IMPL [memory|cpu1 ROUNDS]`` (IMPL in ours, gromo); it prints one
JSON line.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def _libc():
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def _status_kib(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE).group(1))


def _rss_bytes_statm() -> int:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


class _Sampler:
    """Fallback: max RSS sampled by a thread (misses peaks shorter than the interval)."""

    def __init__(self, interval_s: float = 2e-4):
        self.interval_s = interval_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes_statm())
            time.sleep(self.interval_s)

    def __enter__(self):
        self.peak = _rss_bytes_statm()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes_statm())


def peak_extra_bytes(fn, *args) -> tuple[int, str]:
    """Run ``fn(*args)`` once; return (peak resident bytes above the level before the call, method)."""
    libc = _libc()
    gc.collect()
    if libc is not None:
        libc.malloc_trim(0)
    before = _status_kib("VmRSS") * 1024
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        with _Sampler() as sampler:
            result = fn(*args)
        del result
        return max(sampler.peak - before, 0), "RSS sampled every 0.2 ms"
    result = fn(*args)
    peak = _status_kib("VmHWM") * 1024
    del result
    return max(peak - before, 0), "VmHWM after clear_refs"


def _main(case_name: str, impl: str, mode: str = "memory", rounds: int = 1) -> None:
    libc = _libc()
    if mode == "memory" and libc is not None:
        # Big blocks from mmap, freed memory returned at once: RSS then tracks live allocations.
        libc.mallopt(_M_MMAP_THRESHOLD, 64 * 1024)
        libc.mallopt(_M_TRIM_THRESHOLD, 64 * 1024)
    sys.path[:0] = [str(BENCH_DIR), str(REPO_ROOT)]
    import torch  # noqa: E402
    from cases import CASES  # noqa: E402  (needs bench/ on the path)

    if mode == "cpu1":
        torch.set_num_threads(1)
    case = CASES[case_name]
    inputs = case.inputs()
    fn = case.ours() if impl == "ours" else case.gromo(inputs)
    fn(inputs.head(2))
    record = {"case": case_name, "impl": impl, "mode": mode}
    if mode == "memory":
        extra, method = peak_extra_bytes(fn, inputs)
        record.update(peak_extra_bytes=extra, method=method)
    elif mode == "cpu1":
        times = []
        for _ in range(rounds):
            start = time.process_time()
            fn(inputs)
            times.append(time.process_time() - start)
        record.update(cpu1_time_s=min(times), rounds=rounds)
    else:
        raise ValueError(f"unknown mode {mode!r}")
    print(json.dumps(record))


def _run(case_name: str, impl: str, args: list[str], timeout_s: float) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), str(BENCH_DIR), env.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), case_name, impl, *args],
                          capture_output=True, text=True, timeout=timeout_s, cwd=REPO_ROOT, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"measurement {args} of {case_name}/{impl} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_in_subprocess(case_name: str, impl: str, timeout_s: float = 900) -> dict:
    """Peak extra memory of ``impl`` on ``case_name`` measured in a fresh interpreter (see module doc)."""
    return _run(case_name, impl, ["memory"], timeout_s)


def cpu_time_in_subprocess(case_name: str, impl: str, rounds: int, timeout_s: float = 900) -> dict:
    """Best-of-``rounds`` single-thread CPU time of ``impl`` on ``case_name`` in a fresh interpreter."""
    return _run(case_name, impl, ["cpu1", str(rounds)], timeout_s)


if __name__ == "__main__":
    _main(sys.argv[1], sys.argv[2], *(sys.argv[3:4]), *(int(a) for a in sys.argv[4:5]))
