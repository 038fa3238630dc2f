"""16-bit weights (bfloat16, float16) are reduced in place, block by block: the figures are
numpy's on the same values in float64 (through ml_dtypes), on the kernel and on the numpy
path, and no call holds a float32 copy of a whole variable."""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pytest

import hubwidgets as hw
from hubwidgets.model import host_stats, stats


@pytest.fixture(params=["kernel", "numpy"])
def path(request, monkeypatch):
    if request.param == "kernel" and host_stats._host_reduce is None:
        pytest.skip("the C kernel is not built here (or HUBWIDGETS_KERNEL=0)")
    if request.param == "numpy":
        monkeypatch.setattr(host_stats, "_host_reduce", None)
    return request.param


def _check(stats, variable, bins):
    values = np.asarray(variable.numpy()).astype(np.float64).reshape(-1)
    finite = values[np.isfinite(values)]
    counts, edges = np.histogram(finite, bins)
    assert stats.count == values.size
    assert stats.nan_count == int(np.isnan(values).sum())
    assert stats.inf_count == int(np.isinf(values).sum())
    assert stats.mean == pytest.approx(finite.mean(), rel=1e-12, abs=1e-12)
    assert stats.std == pytest.approx(finite.std(), rel=1e-9)
    assert (stats.min, stats.max) == (finite.min(), finite.max())
    assert stats.l2_norm == pytest.approx(np.linalg.norm(finite), rel=1e-9)
    assert stats.zero_fraction == (values == 0).sum() / values.size
    np.testing.assert_array_equal(stats.counts, counts)
    np.testing.assert_array_equal(stats.edges, edges)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_16_bit_weights_match_numpy_in_float64(tf, dtype, path):
    rng = np.random.default_rng(3)
    variables = [tf.Variable(tf.constant(rng.normal(0, 2, shape), dtype))
                 for shape in [(10,), (300, 7), (70_000,), (5_000_001,)]]  # > a fused task
    with_nan = rng.normal(0, 1, 4096)
    with_nan[[3, 700]] = [np.nan, np.inf]
    with_nan[10:20] = 0.0
    variables.append(tf.Variable(tf.constant(with_nan, dtype)))
    variables.append(tf.Variable(tf.fill([50_000], tf.constant(1.5, dtype))))  # constant
    for _ in range(2):  # the first read (one by one) and the batched one
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", hw.NonFiniteWeightsWarning)
            stats = hw.weight_stats(variables, bins=48)
        for variable, s in zip(variables, stats.values(), strict=True):
            assert s.dtype == dtype
            _check(s, variable, 48)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_16_bit_statistics_never_widen_a_whole_variable(tf, dtype, path):
    """A float32 copy of this variable is 32 MB; numpy's allocations (tracemalloc sees
    them) stay a few blocks."""
    variable = tf.Variable(tf.random.normal([8_000_000], dtype=dtype))
    hw.weight_stats([variable], bins=64)  # TensorFlow's first-use allocations
    tracemalloc.start()
    try:
        hw.weight_stats([variable], bins=64)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20, f"{peak / 2**20:.1f} MB allocated for one 16 MB variable"


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_device_variables_are_reduced_in_pieces_with_numpys_figures(tf, dtype, monkeypatch):
    """A variable off the host (a GPU's) is reduced in pieces of DEVICE_CHUNK values, never
    converted whole: the merged figures are numpy's (here the device path is taken on the
    CPU, with pieces of 1,000 values)."""
    monkeypatch.setattr(stats, "DEVICE_CHUNK", 1000)
    monkeypatch.setattr(host_stats, "host_array", lambda var: None)
    monkeypatch.setattr(host_stats, "host_arrays", lambda variables: [None] * len(variables))
    rng = np.random.default_rng(7)
    with_nan = rng.normal(3, 2, 4321)
    with_nan[[5, 2000, 4000]] = [np.nan, np.inf, -np.inf]
    variables = [tf.Variable(tf.constant(values, dtype)) for values in (
        rng.normal(0, 1, 5003), with_nan, np.full(2500, 0.25), rng.normal(0, 1, 999))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hw.NonFiniteWeightsWarning)
        found = hw.weight_stats(variables, bins=40)
    for variable, s in zip(variables, found.values(), strict=True):
        _check(s, variable, 40)
    fixed = hw.weight_stats(variables[:1], bins=10, value_range=(-1.0, 1.0))
    values = np.asarray(variables[0].numpy()).astype(np.float64)
    np.testing.assert_array_equal(next(iter(fixed.values())).counts,
                                  np.histogram(values, 10, range=(-1.0, 1.0))[0])


def test_the_first_bfloat16_statistics_of_a_session_warn_of_nothing(tf):
    """The table of the 65,536 bfloat16 values holds NaN patterns; making it must not show
    the user numpy's "invalid value encountered in cast" (seen on a KerasHub Gemma
    backbone in bfloat16, the first time its statistics were asked for)."""
    variable = tf.Variable(tf.cast(tf.linspace(-2.0, 2.0, 64), tf.bfloat16))
    host_stats._pattern_table.cache_clear()  # as in a fresh kernel
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        [figures] = hw.weight_stats(variable).values()
    values = np.asarray(variable.numpy()).astype(np.float64)
    assert figures.mean == pytest.approx(values.mean(), abs=1e-12)
