"""``import hubwidgets`` in a fresh interpreter: its time, against a bare interpreter start,
and whether TensorFlow came with it.  ``python -m bench.import_bench``
"""

from __future__ import annotations

import subprocess
import sys

from .common import ROOT, emit

PROBE = ("import time, sys; t = time.perf_counter(); {stmt}; "
         "print(time.perf_counter() - t, 'tensorflow' in sys.modules, 'keras' in sys.modules)")


def timed(stmt: str) -> tuple[float, bool, bool]:
    out = subprocess.run([sys.executable, "-c", PROBE.format(stmt=stmt)], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), out[1] == "True", out[2] == "True"


def main() -> None:
    runs = [timed("import hubwidgets") for _ in range(7)]
    baseline = sorted(timed("import json")[0] for _ in range(7))[3]
    seconds = sorted(r[0] for r in runs)[3]
    emit({"import_s": seconds, "json_import_s": baseline,
          "imports_tensorflow": any(r[1] for r in runs), "imports_keras": any(r[2] for r in runs)})


if __name__ == "__main__":
    main()
