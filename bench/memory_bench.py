"""Peak resident memory added by ``explore(ResNet50)`` with every statistic computed, against
the model's weight bytes.  A sampling thread reads the RSS every millisecond.
``python -m bench.memory_bench``
"""

from __future__ import annotations

import gc
import threading
import time

from .common import emit
from .models import many_layers, resnet50

PAGE = 4096


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class PeakRSS:
    """The highest RSS seen while the block runs."""

    def __enter__(self) -> "PeakRSS":
        self.peak = self.start = rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss())
            time.sleep(0.001)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss())


def main() -> None:
    import hubwidgets as hw

    model = resnet50()
    weight_bytes = sum(int(w.numpy().nbytes) for w in model.weights)
    hw.explore(many_layers(3))  # import plotly, ipywidgets, TF kernels: not what is measured
    gc.collect()
    with PeakRSS() as peak:
        dashboard = hw.explore(model)
        stats = hw.weight_stats(model)
    assert dashboard is not None and len(stats) == len(model.weights)
    emit({"weight_bytes": weight_bytes, "peak_added_bytes": peak.peak - peak.start})


if __name__ == "__main__":
    main()
