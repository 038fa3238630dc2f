"""Whole-model weight statistics of ResNet50 (25.6 M params), cold and warm, against
the seeds' way (get_weights + numpy) and the floor (one numpy sum over all weights).

Run in a fresh process: ``python -m bench.stats_bench``.
"""

from __future__ import annotations

import time

import numpy as np

from .common import median_time, emit


def seeds_way(model) -> None:
    for layer in model.layers:
        for w in layer.get_weights():
            w.mean(), w.std(), w.min(), w.max(), np.histogram(w, bins=64)


def main() -> None:
    import keras

    import hubwidgets as hw

    keras.utils.set_random_seed(0)
    model = keras.applications.ResNet50(weights=None)
    everything = np.concatenate([w.numpy().ravel() for w in model.weights])
    floor = median_time(lambda: np.sum(everything))

    start = time.perf_counter()
    first = hw.weight_stats(model, bins=64)  # cold: first call in this process
    cold = time.perf_counter() - start
    assert len(first) == len(model.weights)

    seeds = median_time(lambda: seeds_way(model), repeat=3)

    def changed_then_stats():
        for w in model.weights:  # as after a training epoch: every value differs
            w.assign(w * 1.0001 + 1e-6)
        start = time.perf_counter()
        hw.weight_stats(model, bins=64)
        return time.perf_counter() - start

    changed_then_stats()
    warm = sorted(changed_then_stats() for _ in range(5))[2]
    emit({"floor_s": floor, "cold_s": cold, "warm_s": warm, "seeds_s": seeds,
          "params": int(everything.size)})


if __name__ == "__main__":
    main()
