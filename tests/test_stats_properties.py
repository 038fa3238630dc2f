"""Property tests for ``weight_stats`` (issue 14): random arrays of every float and int dtype,
of any shape (0-d and empty included), with values across the dtype's whole range and
NaN/Inf, held in real ``tf.Variable``s and Keras variables.

The oracle is exact arithmetic (``fractions.Fraction``) on the values as float64 (numpy's
own float64 mean/std overflow at +-1e200 and underflow at 1e-310, so they cannot be the
judge there); histograms must equal ``numpy.histogram`` of the finite float64 values, or be
left out with a reason exactly where numpy refuses.  Each test runs on the three paths that
compute statistics: the C kernel, its numpy fallback, and the TensorFlow kernels (the path
of GPU variables, forced here on the CPU).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import hubwidgets as hw
from hubwidgets.model import host_stats

FLOATS = ["float16", "bfloat16", "float32", "float64"]
INTS = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool"]
FLOAT64_MAX = float(np.finfo(np.float64).max)
SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6)
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(params=["kernel", "numpy", "device"])
def stats_path(request, monkeypatch, tf):
    """Route every variable through one of the three paths."""
    if request.param == "kernel" and host_stats._host_reduce is None:
        pytest.skip("the C kernel is not built here")
    if request.param == "numpy":
        monkeypatch.setattr(host_stats, "_host_reduce", None)
    if request.param == "device":
        monkeypatch.setattr(host_stats, "host_array", lambda var: None)
        monkeypatch.setattr(host_stats, "host_arrays", lambda variables: [None] * len(variables))
    return request.param


def float_arrays(draw, dtype):
    """Values across the whole range of ``dtype``, with NaN/Inf, or small integers (which
    land exactly on bin edges)."""
    base = "float32" if dtype == "bfloat16" else dtype
    elements = st.one_of(hnp.from_dtype(np.dtype(base), allow_nan=True, allow_infinity=True),
                         st.integers(-4, 4).map(float))
    values = draw(hnp.arrays(np.dtype(base), SHAPES, elements=elements))
    if dtype == "bfloat16":
        import tensorflow as tf

        values = values.astype(tf.bfloat16.as_numpy_dtype)
    return values


def int_arrays(draw, dtype):
    if dtype == "bool":
        return draw(hnp.arrays(np.bool_, SHAPES))
    info = np.iinfo(dtype)
    elements = st.one_of(hnp.from_dtype(np.dtype(dtype)),
                         st.integers(max(info.min, -3), 3),  # small: many on the edges
                         st.integers(info.max - 3, info.max))  # near the top: 2**62 and up
    return draw(hnp.arrays(np.dtype(dtype), SHAPES, elements=elements))


def as_variable(values, keras_variable, tf, keras):
    if keras_variable:
        return keras.Variable(values, dtype=str(values.dtype), trainable=False, name="w")
    return tf.Variable(tf.constant(values), trainable=False, name="w")


def exact_sqrt(x: Fraction) -> float | None:
    """sqrt of a non-negative Fraction, correctly scaled; None when it overflows float64."""
    if x == 0:
        return 0.0
    half = (x.numerator.bit_length() - x.denominator.bit_length()) // 2
    try:
        return math.ldexp(math.sqrt(float(x / Fraction(4) ** half)), half)
    except OverflowError:
        return None


def expected_histogram(finite, bins, value_range):
    """numpy.histogram of the finite float64 values, or None where numpy refuses."""
    try:
        with np.errstate(all="ignore"):
            counts, edges = np.histogram(finite, bins=bins, range=value_range)
    except ValueError:
        return None
    return (counts, edges) if np.isfinite(edges).all() else None


def check_against_exact(stats, values, bins, value_range):
    flat = values.reshape(-1)
    as64 = flat.astype(np.float64)
    is_finite = np.isfinite(as64)
    finite = as64[is_finite]
    exact = [Fraction(int(v)) for v in flat[is_finite]] if flat.dtype.kind in "iub" \
        else [Fraction(float(v)) for v in finite]
    assert stats.count == flat.size
    assert stats.nan_count == int(np.isnan(as64).sum())
    assert stats.inf_count == int(np.isinf(as64).sum())
    if flat.size:
        assert stats.zero_fraction == int((as64 == 0).sum()) / flat.size
    else:
        assert stats.zero_fraction is None and "zero_fraction" in stats.missing
    if not exact:
        assert stats.mean is None and stats.std is None and stats.min is None
        assert "mean" in stats.missing
    else:
        n = len(exact)
        mean = sum(exact) / n
        magnitude = float(max(abs(v) for v in exact))
        if flat.dtype.kind in "iub":
            assert stats.mean == float(mean)  # exact, rounded once
        else:
            assert abs(stats.mean - float(mean)) <= 1e-12 * magnitude
        std = exact_sqrt(sum((v - mean) ** 2 for v in exact) / n)
        assert abs(stats.std - std) <= 1e-9 * std + 1e-12 * magnitude
        assert (stats.min, stats.max) == (finite.min(), finite.max())
        l2 = exact_sqrt(sum(v * v for v in exact))
        if l2 is None:
            assert stats.l2_norm is None and "L2" in stats.missing["l2_norm"]
        elif l2 < 0.999 * FLOAT64_MAX:
            assert stats.l2_norm == pytest.approx(l2, rel=1e-9)
    histogram = expected_histogram(finite, bins, value_range)
    if histogram is None:
        assert "histogram" in stats.missing
        assert stats.counts.size == 0 and stats.edges.size == 0
    else:
        np.testing.assert_array_equal(stats.counts, histogram[0])
        np.testing.assert_array_equal(stats.edges, histogram[1])


def value_ranges():
    bound = st.floats(-1e6, 1e6, allow_nan=False)
    return st.one_of(st.none(), st.tuples(bound, bound).filter(lambda r: r[0] < r[1]))


def run_case(values, bins, value_range, keras_variable, tf, keras, stats_path):
    if stats_path == "device":
        # TensorFlow's CPU kernels treat subnormal numbers as zero (denormals-are-zero), in
        # float32 casts and float64 comparisons alike; the device path there cannot see them
        wide = values.astype(np.float64)
        tiny = np.finfo(np.float32 if values.dtype != np.float64 else np.float64).tiny
        assume(not np.any((wide != 0) & (np.abs(wide) < tiny)))
        assume(value_range is None or not any(0 < abs(b) < 2.3e-308 for b in value_range))
    variable = as_variable(values, keras_variable, tf, keras)
    finite = values.reshape(-1).astype(np.float64)
    if value_range is not None and expected_histogram(finite[:0], bins, value_range) is None:
        with pytest.raises(ValueError, match="value_range"):
            hw.weight_stats([variable], bins=bins, value_range=value_range)
        return
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hw.NonFiniteWeightsWarning)
        host_stats._READ_BEFORE.clear()  # a first read: one read per variable, streamed
        [first] = hw.weight_stats([variable], bins=bins, value_range=value_range).values()
        [again] = hw.weight_stats([variable], bins=bins, value_range=value_range).values()
    check_against_exact(first, values, bins, value_range)
    check_against_exact(again, values, bins, value_range)  # read before: read by host_arrays


@pytest.mark.parametrize("kind", ["float", "int"])
@SETTINGS
@given(data=st.data())
def test_statistics_are_exact_or_missing_with_a_reason(kind, stats_path, tf, keras, data):
    dtypes, arrays = (FLOATS, float_arrays) if kind == "float" else (INTS, int_arrays)
    values = arrays(data.draw, data.draw(st.sampled_from(dtypes), label="dtype"))
    run_case(values, data.draw(st.integers(1, 40), label="bins"),
             data.draw(value_ranges(), label="value_range"),
             data.draw(st.booleans(), label="keras_variable"), tf, keras, stats_path)
