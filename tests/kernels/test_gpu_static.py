"""bench/gpu_static.py's fast subset (S and M at the default config, AOT-compiled for sm_90 on
this CPU): no spills, S's main loop within 12 instructions per gathered element, and the modelled
S at D=577, R=65 536 at or above 35 % of the TF32 dense peak.

Runs the script in a subprocess: the suite's TRITON_INTERPRET=1 would turn the kernels into
interpreted functions, which cannot be compiled.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_fast_static_check_meets_the_targets():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_static.py"), "--fast", "--summary",
                           "--jobs", "1"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    m = re.fullmatch(r"spills=(\d+) smem_over=(\d+) instr_per_elem_S=([\d.]+) modelled_S_tf32=([\d.]+)", last)
    assert m, last
    spills, smem_over, per_elem, modelled = int(m[1]), int(m[2]), float(m[3]), float(m[4])
    assert spills == 0
    assert smem_over == 0
    assert 0 < per_elem <= 12.0
    assert 35.0 <= modelled <= 100.0  # upper-triangle flops: at most the whole peak
