"""Whole-model weight statistics of ResNet50 (25.6 M params), cold and warm, against
the seeds' way (get_weights + numpy) and the floor (one numpy sum over all weights).

Run in a fresh process: ``python -m bench.stats_bench``.
"""

from __future__ import annotations

import statistics
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

    start = time.perf_counter()
    first = hw.weight_stats(model, bins=64)  # cold: first call in this process
    cold = time.perf_counter() - start
    assert len(first) == len(model.weights)
    rng = np.random.default_rng(0)
    for w in model.weights:  # as a trained model: no variable holds one value any more (a
        # fresh one has 266 constant ones, biases and BatchNormalization statistics)
        w.assign(w + rng.normal(0.0, 1e-3, w.shape).astype(np.float32))
    assert all(w.numpy().min() < w.numpy().max() for w in model.weights)
    everything = np.concatenate([w.numpy().ravel() for w in model.weights])
    floor = median_time(lambda: np.sum(everything))

    seeds = median_time(lambda: seeds_way(model), repeat=3)

    def changed_then_stats():
        for w in model.weights:  # as after a training epoch: every value differs
            w.assign(w * 1.0001 + 1e-6)
        start = time.perf_counter()
        hw.weight_stats(model, bins=64)
        return time.perf_counter() - start

    def floor_now() -> float:
        return min(median_time(lambda: np.sum(everything), repeat=1) for _ in range(2))

    changed_then_stats()
    pairs = [(changed_then_stats(), floor_now()) for _ in range(9)]
    emit({"floor_s": floor, "cold_s": cold, "cold_ratio": cold / floor,
          "warm_s": statistics.median(w for w, _ in pairs),
          "warm_floor_s": statistics.median(f for _, f in pairs),
          "warm_ratio": statistics.median(w / f for w, f in pairs), "seeds_s": seeds,
          "params": int(everything.size)})


if __name__ == "__main__":
    main()
