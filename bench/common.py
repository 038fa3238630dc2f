"""Shared helpers: run a benchmark body in a fresh Python process, take medians."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).parent.parent


def fresh_process(module: str, *args: str) -> dict[str, Any]:
    """Run ``python -m bench.<module> args`` in a new interpreter; it prints one JSON line.
    The package's bytecode is compiled first, as an installed package has it (a shell with
    PYTHONDONTWRITEBYTECODE would otherwise charge every fresh process ~40 ms of compiling
    hubwidgets' sources to its first call)."""
    compile_package()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-m", f"bench.{module}", *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"bench.{module} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def compile_package() -> None:
    """Write the package's ``__pycache__`` (what ``pip install`` does), once per process."""
    if not _COMPILED:
        import compileall

        compileall.compile_dir(ROOT / "hubwidgets", quiet=1)
        _COMPILED.append(True)


_COMPILED: list[bool] = []


def median_of(runs: list[dict[str, Any]]) -> dict[str, float]:
    """The median of every numeric field over several runs."""
    keys = [k for k, v in runs[0].items() if isinstance(v, (int, float))]
    return {k: statistics.median(r[k] for r in runs) for k in keys}


def median_time(fn: Callable[[], Any], repeat: int = 5) -> float:
    """The median wall time of ``fn`` over ``repeat`` calls, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def emit(result: dict[str, Any]) -> None:
    print(json.dumps(result))
