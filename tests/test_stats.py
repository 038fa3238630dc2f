"""weight_stats against numpy on the same values; caching; odd dtypes; NaN/Inf; empty."""

from __future__ import annotations

import numpy as np
import pytest

import hubwidgets as hw


def expected(values, bins=64, value_range=None):
    values = np.asarray(values, dtype=np.float64).ravel()
    finite = values[np.isfinite(values)]
    counts, edges = np.histogram(finite, bins=bins, range=value_range)
    return finite, counts, edges


def test_stats_match_numpy(k3_sequential):
    stats = hw.weight_stats(k3_sequential)
    assert list(stats) == [v.path for v in hw.inspect(k3_sequential).variables()]
    kernel = k3_sequential.get_layer("dense_layer_1").kernel.numpy()
    s = stats["seed_sequential/dense_layer_1/kernel"]
    finite, counts, edges = expected(kernel)
    assert s.count == kernel.size
    assert s.mean == pytest.approx(finite.mean(), rel=1e-9, abs=1e-12)
    assert s.std == pytest.approx(finite.std(), rel=1e-9)
    assert (s.min, s.max) == (pytest.approx(finite.min()), pytest.approx(finite.max()))
    assert s.l2_norm == pytest.approx(np.linalg.norm(finite), rel=1e-9)
    assert s.zero_fraction == 0.0
    np.testing.assert_array_equal(s.counts, counts)
    np.testing.assert_allclose(s.edges, edges)
    bias = stats["seed_sequential/dense_layer_1/bias"]  # all zeros: numpy's constant range
    _, counts, edges = expected(np.zeros(10))
    assert bias.zero_fraction == 1.0 and bias.std == 0.0
    np.testing.assert_array_equal(bias.counts, counts)
    np.testing.assert_allclose(bias.edges, edges)


def test_shared_value_range_and_bins(k3_sequential):
    kernel = k3_sequential.get_layer("dense_layer_2").kernel
    s = hw.weight_stats([kernel], bins=10, value_range=(-0.1, 0.1))
    [stat] = s.values()
    _, counts, edges = expected(kernel.numpy(), bins=10, value_range=(-0.1, 0.1))
    np.testing.assert_array_equal(stat.counts, counts)
    np.testing.assert_allclose(stat.edges, edges)
    with pytest.raises(ValueError, match="lo < hi"):
        hw.weight_stats(k3_sequential, value_range=(1, 0))
    with pytest.raises(ValueError, match="positive integer"):
        hw.weight_stats(k3_sequential, bins=0)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_changed_value_is_never_served_stale(tf, dtype):
    """float32 on the CPU is computed in place with numpy each time; bfloat16 goes through
    the TensorFlow kernels (the GPU path), whose results are cached by a bit checksum."""
    v = tf.Variable(tf.cast(tf.random.stateless_normal((50, 20), seed=(0, 1)), dtype), name="w")
    first = hw.weight_stats([v])["w"]
    again = hw.weight_stats([v])["w"]
    assert (again is first) == (dtype == "bfloat16")  # cached only where a pass is costly
    assert again.mean == first.mean
    value = v.numpy()
    bits = value.view(np.uint16 if dtype == "bfloat16" else np.uint32)
    bits[7, 3] += 1  # one ulp away from zero, in the variable's own precision
    v.assign(tf.constant(value))
    second = hw.weight_stats([v])["w"]
    assert second is not first
    assert second.mean == pytest.approx(v.numpy().astype(np.float64).mean(), rel=1e-6)
    assert second.mean != first.mean


def test_non_float_variables_report_what_applies(tf):
    counter = tf.Variable(7, dtype=tf.int64, name="step")
    flags = tf.Variable([True, False, False, True], name="mask")
    words = tf.Variable(["a", "b", "c"], name="vocab")
    empty = tf.Variable(tf.zeros((0, 4)), name="empty")
    stats = hw.weight_stats([counter, flags, words, empty])
    assert (stats["step"].count, stats["step"].mean, stats["step"].max) == (1, 7.0, 7.0)
    assert stats["mask"].mean == 0.5 and stats["mask"].zero_fraction == 0.5
    assert stats["vocab"].count == 3 and stats["vocab"].mean is None
    assert stats["empty"].count == 0 and stats["empty"].mean is None
    assert stats["empty"].counts.sum() == 0


def test_nan_and_inf_are_counted_and_warned(tf):
    v = tf.Variable([1.0, np.nan, np.inf, -np.inf, 3.0], name="bad")
    with pytest.warns(hw.NonFiniteWeightsWarning, match="NaN or Inf values in 1 variable"):
        s = hw.weight_stats([v])["bad"]
    assert (s.nan_count, s.inf_count) == (1, 2)
    assert s.mean == 2.0 and (s.min, s.max) == (1.0, 3.0)
    assert s.counts.sum() == 2
    np.testing.assert_allclose(v.numpy()[[0, 4]], [1.0, 3.0])  # the model is untouched


def test_stats_of_a_node_and_a_restored_module(text_module):
    tree = hw.inspect(text_module)
    stats = hw.weight_stats(tree.root)
    assert sum(s.count for s in stats.values()) == tree.root.params
    for var in tree.variables():
        values = var.numpy()
        assert stats[var.path].mean == pytest.approx(values.astype(np.float64).mean(), abs=1e-12)
