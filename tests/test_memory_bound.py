"""Memory is bounded on a model of about 0.5 GB (issue 25): explore() with all its
statistics, weight_stats, a snapshot streamed to a file and a diff of that file against the
model add at most 10% of the weight bytes + 300 MB to the kernel's resident memory
(measured in a fresh process, sampled every 2 ms)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent / "scripts" / "memory_bound.py"


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_explore_statistics_snapshot_and_diff_stay_within_the_bound(dtype):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.pathsep.join([str(SCRIPT.parent.parent.parent),
                                           os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, str(SCRIPT), dtype], capture_output=True, text=True,
                         env=env, timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    bound = figures["weight_bytes"] // 10 + 300 * 2**20
    assert figures["weight_bytes"] > 2**27  # the model is the size the issue asks for
    assert figures["added"] <= bound, (
        f"{figures['added'] / 2**20:.0f} MB added to a {figures['weight_bytes'] / 2**20:.0f} MB "
        f"model; bound {bound / 2**20:.0f} MB")
