"""weight_stats against numpy on the same values; caching; odd dtypes; NaN/Inf; empty."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

import hubwidgets as hw
from hubwidgets.model import host_stats
from model_state import GENERATIONS, model_state, repeated_names_model

needs_kernel = pytest.mark.skipif(host_stats._host_reduce is None,
                                  reason="the C kernel is not built here (or HUBWIDGETS_KERNEL=0)")


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
    with pytest.raises(hw.ArgumentError, match="lo < hi"):
        hw.weight_stats(k3_sequential, value_range=(1, 0))
    with pytest.raises(hw.ArgumentError, match="positive integer"):
        hw.weight_stats(k3_sequential, bins=0)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_changed_value_is_never_served_stale(tf, dtype):
    """float32 on the CPU is computed in place each time; bfloat16 goes through the
    TensorFlow kernels (the GPU path), which are not cached either (issue 14: a bit checksum
    could collide and serve stale statistics)."""
    v = tf.Variable(tf.cast(tf.random.stateless_normal((50, 20), seed=(0, 1)), dtype), name="w")
    first = hw.weight_stats([v])["w"]
    again = hw.weight_stats([v])["w"]
    assert again is not first  # recomputed: nothing is cached
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


def awkward_arrays():
    """Sizes around the kernel's chunk and block lengths, values on bin edges, constants,
    zeros, huge and tiny ranges, NaN/Inf: every case the fast loops must hand over."""
    rng = np.random.default_rng(7)
    edges = np.linspace(-1.0, 1.0, 65)
    awkward = {
        "empty": np.zeros(0, np.float32),
        "one": np.float32([3.5]),
        "seven": rng.standard_normal(7).astype(np.float32),
        "chunk_plus_one": rng.standard_normal((1 << 17) + 1).astype(np.float32) * 0.02,
        "two_chunks_f64": rng.standard_normal(300_001) * 3.0 + 1.0,
        "on_edges": np.tile(edges, 101).astype(np.float64),
        "on_edges_f32": np.tile(edges.astype(np.float32), 33),
        "constant": np.full(1000, 0.25, np.float32),
        "constant_pairs": np.full(40_000, -7.0, np.float32),  # the pair-count size
        "constant_f64": np.full(3333, 1e-30),
        "signed_zeros": np.float32([0.0, -0.0] * 20_000),  # min == max: one bin, as numpy
        # pruned weights: 90% zeros, and 0 is an edge (the range is [-1, 1])
        "sparse_zero_on_edge": np.concatenate([np.float32([-1, 1]), np.where(
            rng.random(50_000) < 0.9, 0, rng.uniform(-1, 1, 50_000)).astype(np.float32)]),
        "zeros_and_ones": np.float32([0, 1] * 500 + [0]),
        "huge_range": np.float32([-3e38, 3e38, 0, 1, -1] * 20),
        "tiny_range_f64": 1000.0 + rng.standard_normal(5000) * 1e-9,
        "nonfinite": np.float32([1.0, np.nan, 2.0, np.inf, -np.inf, 0.0, 5.0] * 30),
        "all_nan": np.full(9, np.nan, np.float32),
    }
    return awkward


def assert_like_numpy(stat, values, bins, value_range=None):
    finite, counts, edges = expected(values, bins, value_range)
    assert stat.count == values.size
    assert (stat.nan_count, stat.inf_count) == (np.isnan(values).sum(), np.isinf(values).sum())
    np.testing.assert_array_equal(stat.counts, counts)
    np.testing.assert_array_equal(stat.edges, edges)
    if finite.size == 0:
        assert stat.mean is None and stat.min is None
        return
    assert (stat.min, stat.max) == (finite.min(), finite.max())
    scale = max(abs(finite).max(), 1e-300)
    assert abs(stat.mean - finite.mean()) <= 1e-12 * scale
    assert stat.std == pytest.approx(finite.std(), rel=1e-9, abs=1e-12 * scale)
    assert stat.l2_norm == pytest.approx(np.linalg.norm(finite), rel=1e-9)
    assert stat.zero_fraction == (values == 0).sum() / values.size


@pytest.fixture(params=["avx512", "avx2", "plain"])
def moment_variant(request):
    """Run the kernel's moment pass in one variant (fused multiply-adds on AVX-512 or AVX2,
    or separate multiplies and adds, as on a CPU without FMA), then the best one again."""
    from hubwidgets.model import host_stats

    kernel = host_stats._host_reduce
    if kernel is None or not kernel.use_moments(request.param):
        pytest.skip(f"this CPU or build has no {request.param} moment pass")
    yield request.param
    assert any(kernel.use_moments(name) for name in ("avx512", "avx2", "fused", "plain"))


@pytest.mark.parametrize("value_range", [None, (-0.5, 0.5)])
def test_host_kernel_matches_numpy_on_awkward_arrays(tf, value_range, moment_variant):
    """The compiled kernel (built by pip install) gives numpy.histogram's exact counts and
    numpy's moments, for all of these at once, in each variant of its moment pass."""
    from hubwidgets.model import host_stats

    assert host_stats._host_reduce is not None, "the C kernel was not built by pip install"
    arrays = awkward_arrays()
    variables = [tf.Variable(a, name=name) for name, a in arrays.items()]
    with pytest.warns(hw.NonFiniteWeightsWarning):
        stats = hw.weight_stats(variables, bins=64, value_range=value_range)
    for name, values in arrays.items():
        assert_like_numpy(stats[name], values, 64, value_range)


@pytest.mark.parametrize("bins", [1, 3, 64, 1000, 1024])
@pytest.mark.parametrize("lo, hi", [(-0.1, 0.1), (99.5, 100.5), (-3.0, 1e-3)])
def test_kernel_bins_values_beside_every_edge_as_numpy_does(tf, bins, lo, hi):
    """The kernel re-checks only values within (bins + 1) * 4e-7 bins of an edge: the
    float32 neighbours of every float64 edge (and the edges themselves), spread over many
    blocks, must still land where numpy.histogram puts them, whether counted one by one
    (1,000 bins) or in pairs (up to 80 bins)."""
    lo, hi = float(np.float32(lo)), float(np.float32(hi))  # the data's own min and max
    edges = np.linspace(lo, hi, bins + 1)
    near = np.concatenate([np.nextafter(edges.astype(np.float32), np.float32(-np.inf)),
                           edges.astype(np.float32),
                           np.nextafter(edges.astype(np.float32), np.float32(np.inf))])
    rng = np.random.default_rng(bins)
    filler = rng.uniform(lo, hi, 50_000).astype(np.float32)
    values = np.clip(np.concatenate([filler, np.tile(near, 40)]), np.float32(lo), np.float32(hi))
    # an odd count: a block's last value has no pair
    values = rng.permutation(np.concatenate([values, np.float32([lo, hi, near[bins]])]))
    for dtype in (np.float32, np.float64):
        column = values.astype(dtype)
        stat = only(hw.weight_stats([tf.Variable(column, name="w")], bins=bins))
        assert_like_numpy(stat, column, bins)


@needs_kernel
def test_kernel_reads_while_it_reduces_and_stops_cleanly_on_a_bad_read(tf):
    """The kernel's threads reduce the arrays already read while the caller reads the next;
    a read that fails, or gives an array of another dtype, is reported (never a hang or a
    crash) and the arrays read before it are still released."""
    from hubwidgets.model import host_stats

    arrays = [np.random.default_rng(i).standard_normal(50_000).astype(np.float32)
              for i in range(8)]
    tables = host_stats._stats_tables(len(arrays), 16)

    def failing(i):
        if i == 5:
            raise RuntimeError("read 5 failed")
        return arrays[i]

    with pytest.raises(RuntimeError, match="read 5 failed"):
        host_stats._host_reduce.stats(failing, len(arrays), 16, *tables, 2)
    with pytest.raises(TypeError, match="array 2: expected float32 or float64"):
        host_stats._host_reduce.stats(
            lambda i: arrays[i].astype(np.int32) if i == 2 else arrays[i], len(arrays), 16,
            *tables, 2)
    host_stats._host_reduce.stats(lambda i: None if i % 2 else arrays[i], len(arrays), 16,
                                  *tables, 2)
    moments, edges, counts, made = tables
    for i, a in enumerate(arrays):
        if i % 2:
            assert made[i] == 0 and moments[i][0] == 0  # left out: nothing counted
        else:
            expected_counts, expected_edges = np.histogram(a.astype(np.float64), 16)
            assert made[i] == 1
            np.testing.assert_array_equal(counts[i], expected_counts)
            np.testing.assert_array_equal(edges[i], expected_edges)


def test_an_array_larger_than_one_task_is_cut_into_chunks(tf):
    """Arrays over 4 M values get their moments in chunks on every core and their histogram
    in a second pass: the same numbers as numpy."""
    values = np.random.default_rng(11).standard_normal((1 << 22) + 3).astype(np.float32)
    small = np.float32([1.0, 2.0, 2.5])
    stats = hw.weight_stats([tf.Variable(values, name="big"), tf.Variable(small, name="small")])
    assert_like_numpy(stats["big"], values, 64)
    assert_like_numpy(stats["small"], small, 64)


def test_many_variables_are_read_by_one_op_with_the_values_of_one_by_one_reads(tf, monkeypatch):
    """host_arrays reads every host variable of a device with one _ReadVariablesOp: the
    same values as reading each (float32/64, integers, bool, bfloat16, a scalar), views of
    the variables' buffers (nothing copied); where that op fails, each is read alone."""
    from hubwidgets.model import host_stats

    rng = np.random.default_rng(5)
    variables = [tf.Variable(rng.standard_normal((3, 4)).astype(np.float32), name="f32"),
                 tf.Variable(rng.standard_normal(7), name="f64"),
                 tf.Variable(np.arange(5, dtype=np.int32), name="i32"),
                 tf.Variable([True, False], name="flags"),
                 tf.Variable(tf.constant([1.5, -2.0], tf.bfloat16), name="bf16"),
                 tf.Variable(3.25, name="scalar")]
    [(_, handles, attrs)] = host_stats.read_plan(variables).groups
    assert host_stats._read_many(handles, attrs) is not None, \
        "this TensorFlow lost _ReadVariablesOp"
    batched = host_stats.host_arrays(variables)
    one_by_one = [host_stats.host_array(v) for v in variables]
    for v, a, b in zip(variables, batched, one_by_one, strict=True):
        expected_values = np.asarray(v.numpy()).astype(a.dtype).reshape(-1)
        np.testing.assert_array_equal(a, expected_values)
        np.testing.assert_array_equal(a, b)
    assert not batched[0].flags.owndata  # a view of the tensor's buffer
    monkeypatch.setattr(host_stats, "_read_many", lambda handles, attrs: None)  # older TF
    for a, b in zip(host_stats.host_arrays(variables), one_by_one, strict=True):
        np.testing.assert_array_equal(a, b)


@needs_kernel
def test_a_list_is_read_one_by_one_the_first_time_then_by_one_op(tf, monkeypatch):
    """TensorFlow builds a kernel per new list of input shapes (about 55 us per input for
    the batched read), so the first read of a list is one read per variable, streamed into
    the kernel; from the second on, one op for the largest few (the kernel's threads start
    on them) and one for the rest.  Both give numpy's numbers."""
    from hubwidgets.model import host_stats

    rng = np.random.default_rng(11)
    arrays = {f"w{i}": rng.standard_normal((i + 101, 7)).astype(np.float32) for i in range(6)}
    arrays["wide"] = rng.standard_normal(40_000).astype(np.float32)  # the pair-count path
    arrays["f64"] = rng.standard_normal(333)  # not every variable goes to the kernel:
    arrays["f16"] = rng.standard_normal(71).astype(np.float16)
    arrays["i32"] = rng.integers(-9, 9, 55).astype(np.int32)
    arrays["flags"] = rng.integers(0, 2, 17).astype(bool)
    arrays["empty"] = np.zeros((0, 3), np.float32)
    arrays["with_nan"] = np.float32([1.0, np.nan, -2.0, np.inf, 0.5] * 9)
    variables = [tf.Variable(a, name=name) for name, a in arrays.items()]
    batched_reads = []
    real = host_stats._read_many
    monkeypatch.setattr(host_stats, "_read_many",
                        lambda handles, attrs: batched_reads.append(len(handles))
                        or real(handles, attrs))
    with pytest.warns(hw.NonFiniteWeightsWarning):
        first = hw.weight_stats(variables, bins=48)
    assert batched_reads == []
    with pytest.warns(hw.NonFiniteWeightsWarning):
        second = hw.weight_stats(variables, bins=48)
    first_read = host_stats.FIRST_READ
    assert batched_reads == [first_read, len(variables) - first_read]
    for name, values in arrays.items():
        assert_like_numpy(first[name], values, 48)
        assert first[name].to_dict() == second[name].to_dict()
        finite = values[np.isfinite(values)].astype(np.float64)
        if finite.size:
            assert first[name].mean == pytest.approx(finite.mean(), rel=1e-12, abs=1e-15)


def test_numpy_path_gives_the_kernels_numbers(tf, monkeypatch):
    """Where no C compiler was found at install time, numpy computes the same statistics."""
    from hubwidgets.model import host_stats

    arrays = {k: v for k, v in awkward_arrays().items() if np.isfinite(v).all()}
    variables = [tf.Variable(a, name=name) for name, a in arrays.items()]
    with_kernel = hw.weight_stats(variables, bins=32)
    monkeypatch.setattr(host_stats, "_host_reduce", None)
    without = hw.weight_stats(variables, bins=32)
    for name, values in arrays.items():
        assert_like_numpy(without[name], values, 32)
        np.testing.assert_array_equal(without[name].counts, with_kernel[name].counts)


def test_kernel_results_do_not_depend_on_the_thread_count(tf, monkeypatch):
    from hubwidgets.model import host_stats

    values = np.random.default_rng(3).standard_normal(5 * (1 << 17) + 11).astype(np.float32)
    v = tf.Variable(values, name="w")
    results = []
    for threads in (1, 2, 5):
        monkeypatch.setattr(host_stats, "THREADS", threads)
        s = hw.weight_stats([v])["w"]
        results.append((s.mean, s.std, s.l2_norm, s.min, s.max, tuple(s.counts)))
    assert results[0] == results[1] == results[2]


# ---- issue 14: figures that overflowed, unbounded bins, a colliding cache key ----


def only(stats):
    [s] = stats.values()
    return s


def test_float16_ones_have_mean_one_not_nan(tf):
    """issue 14.4: 100,000 float16 ones were summed in float16 (max 65504): mean NaN."""
    s = only(hw.weight_stats([tf.Variable(np.ones(100_000, np.float16), name="h")]))
    assert (s.mean, s.std, s.nan_count) == (1.0, 0.0, 0)
    assert s.l2_norm == pytest.approx(math.sqrt(100_000), rel=1e-12)
    assert s.counts.sum() == 100_000 and s.missing == {}


@pytest.mark.parametrize("use_kernel", [True, False])
def test_float64_near_1e200_gives_finite_std_and_l2(tf, monkeypatch, use_kernel):
    """issue 14.4: squares of +-1e200 overflowed: std and L2 were NaN."""
    from hubwidgets.model import host_stats

    if not use_kernel:
        monkeypatch.setattr(host_stats, "_host_reduce", None)
    s = only(hw.weight_stats([tf.Variable(np.array([1e200, -1e200, 1e200]), name="big")]))
    assert s.mean == pytest.approx(1e200 / 3, rel=1e-12)
    assert s.std == pytest.approx(math.sqrt(8 / 9) * 1e200, rel=1e-12)
    assert s.l2_norm == pytest.approx(math.sqrt(3) * 1e200, rel=1e-12)
    _, counts, edges = expected([1e200, -1e200, 1e200])
    np.testing.assert_array_equal(s.counts, counts)
    np.testing.assert_array_equal(s.edges, edges)


def test_figures_beyond_float64_are_none_with_a_reason(tf):
    top = float(np.finfo(np.float64).max)
    s = only(hw.weight_stats([tf.Variable(np.array([top, -top, top]), name="huge")]))
    assert s.mean == pytest.approx(top / 3, rel=1e-12)
    assert s.std == pytest.approx(math.sqrt(8 / 9) * top, rel=1e-12)
    assert s.l2_norm is None and "exceeds float64" in s.missing["l2_norm"]
    assert s.counts.size == 0 and "wider than float64" in s.missing["histogram"]
    with pytest.raises(ValueError):  # numpy cannot bin it either
        np.histogram(np.array([top, -top]), bins=64)


def test_int64_near_2_62_has_exact_mean_and_spread(tf):
    """issue 14.4: int64 values near 2**62 were averaged in float64 (ulp 1024 there)."""
    values = [2 ** 62, 2 ** 62 + 1, 2 ** 62 + 3]
    s = only(hw.weight_stats([tf.Variable(np.array(values, np.int64), name="ids")]))
    assert s.mean == float(Fraction(sum(values), 3)) == (3 * 2 ** 62 + 4) / 3
    assert s.std == pytest.approx(math.sqrt(14 / 9), rel=1e-12)
    # numpy cannot cut [2**62 - 0.5, 2**62 + 3.5] into 64 float64 edges: no silent histogram
    assert s.counts.size == 0 and "too narrow" in s.missing["histogram"]


def test_value_range_wider_than_float64_is_refused(tf):
    """issue 14.4: value_range=(-1e308, 1e308) gave NaN edges and zero counts, silently."""
    v = tf.Variable([1.0, 2.0, 3.0], name="v")
    with pytest.raises(ValueError, match="wider than float64"):
        hw.weight_stats([v], value_range=(-1e308, 1e308))
    with pytest.raises(ValueError, match="too narrow"):
        hw.weight_stats([v], bins=64, value_range=(1.0, 1.0 + 1e-15))
    s = only(hw.weight_stats([v], bins=4, value_range=(-1e307, 1e307)))
    _, counts, edges = expected(v.numpy(), bins=4, value_range=(-1e307, 1e307))
    assert s.counts.tolist() == counts.tolist() == [0, 0, 3, 0]
    np.testing.assert_array_equal(s.edges, edges)


def test_bins_are_capped_with_a_clear_error(tf):
    """issue 14.8: bins=10**7 over 20 variables took 5.7 GB."""
    from hubwidgets.model.stats import MAX_BINS

    v = tf.Variable(np.linspace(-1, 1, 50), name="v")
    with pytest.raises(ValueError, match="at most 10,000"):
        hw.weight_stats([v], bins=10 ** 7)
    with pytest.raises(ValueError, match="positive integer"):
        hw.weight_stats([v], bins=2.5)
    with pytest.raises(ValueError, match="positive integer"):
        hw.weight_stats([v], bins=True)
    assert only(hw.weight_stats([v], bins=MAX_BINS)).counts.size == MAX_BINS
    s = only(hw.weight_stats([v], bins=np.int64(7)))  # numpy integers are accepted
    _, counts, _ = expected(v.numpy(), bins=7)
    np.testing.assert_array_equal(s.counts, counts)


def test_bfloat16_checksum_collision_is_not_served_stale(tf):
    """issue 14.10: the device path cached by two bit sums (plain, and weighted by
    position % 127 + 1); +1 on one value's bits and -1 on another's 127 places later left
    both sums unchanged, and the old statistics came back."""
    bf16 = tf.bfloat16.as_numpy_dtype
    values = np.ones(254, bf16)
    v = tf.Variable(values, name="b")
    assert only(hw.weight_stats([v])).max == 1.0
    bits = values.view(np.int16).copy()
    bits[0] += 1
    bits[127] -= 1
    v.assign(bits.view(bf16))
    s = only(hw.weight_stats([v]))
    assert s.max == float(bits.view(bf16).astype(np.float64).max()) > 1.0
    assert s.min < 1.0


def _figures_match_numpy(stats, values, bins=64):
    """Every figure of one variable's statistics against numpy on its own values."""
    a = np.asarray(values, dtype=np.float64).reshape(-1)
    counts, edges = np.histogram(a, bins=bins)
    assert (stats.count, stats.shape) == (a.size, tuple(np.shape(values)))
    assert stats.mean == pytest.approx(a.mean(), rel=1e-12, abs=1e-12)
    assert stats.std == pytest.approx(a.std(), rel=1e-9, abs=1e-12)
    assert (stats.min, stats.max) == (a.min(), a.max())
    assert stats.l2_norm == pytest.approx(np.sqrt(np.dot(a, a)), rel=1e-12)
    assert stats.zero_fraction == np.count_nonzero(a == 0) / a.size
    np.testing.assert_array_equal(stats.counts, counts)
    np.testing.assert_array_equal(stats.edges, edges)


@pytest.mark.parametrize("generation", ["keras", "tf_keras"])
def test_a_models_kept_plan_reads_the_values_of_every_update(generation, request, tmp_path):
    """A model's statistics plan is made once and kept for its tree (the speed of warm
    calls), but never its values: after an assign, set_weights, load_weights, and one
    optimizer step each with SGD and with a new Adam (BatchNormalization's moving
    statistics move too), every variable's figures are numpy's on its own values, on the
    first call and on the warm (batched: more than 8 variables) calls after it."""
    from hubwidgets.model.stats import _plan_of

    K = request.getfixturevalue(generation)
    model = K.Sequential([K.Input((4,)), K.layers.Dense(5, name="a"),
                          K.layers.BatchNormalization(name="bn"), K.layers.Dense(3, name="b"),
                          K.layers.Dense(2, name="c")], name=f"kept_plan_{generation}")
    weights = {f"{model.name}/{layer.name}/{w.name.split('/')[-1].split(':')[0]}": w
               for layer in model.layers for w in layer.weights}
    assert len(weights) == 10
    plan = _plan_of(model)
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32") * 3.0
    y = np.random.default_rng(1).normal(size=(8, 2)).astype("float32")
    suffix = ".weights.h5" if generation == "keras" else ".h5"
    saved = str(tmp_path / f"kept{suffix}")

    def train(optimizer):
        model.compile(optimizer=optimizer, loss="mse")
        model.fit(x, y, epochs=1, batch_size=8, verbose=0)

    a, b = model.get_layer("a"), model.get_layer("b")
    updates = [  # (the update, whether it changes values)
        (lambda: None, False),
        (lambda: a.kernel.assign(np.arange(20, dtype="float32").reshape(4, 5) - 7.5), True),
        (lambda: b.set_weights([np.full((5, 3), 0.25, "float32"), np.arange(3, dtype="float32")]),
         True),
        (lambda: model.save_weights(saved), False),
        (lambda: a.kernel.assign(np.zeros((4, 5), "float32")), True),
        (lambda: model.load_weights(saved), True),
        (lambda: train(K.optimizers.SGD(0.1)), True),
        (lambda: train(K.optimizers.Adam(0.5)), True),
    ]
    for update, changes in updates:
        before = {path: w.numpy().copy() for path, w in weights.items()}
        update()
        assert changes == any(not np.array_equal(before[p], w.numpy())
                              for p, w in weights.items())
        for _ in range(2):
            stats = hw.weight_stats(model)
            assert sorted(stats) == sorted(weights)
            for path, w in weights.items():
                _figures_match_numpy(stats[path], w.numpy())
    assert _plan_of(model) is plan  # the values moved, the plan stayed


def test_a_warm_call_after_a_layer_was_added_gives_the_new_models_figures(keras):
    """A warm weight_stats(model) reads with the plan kept from the last call; an unchanged
    model tells its views nothing, and when its layers changed (a layer added) the views are
    told of the new structure once and the figures are the new model's, by numpy."""
    from hubwidgets.model.session import existing_session

    model = keras.Sequential([keras.Input((5,))] + [keras.layers.Dense(4 + i, name=f"d{i}")
                                                    for i in range(6)], name="grows")
    hw.weight_stats(model)
    hw.weight_stats(model)  # the batched reads from here on
    told: list[str] = []
    existing_session(model).observe(lambda _, what: told.append(what))
    before = hw.weight_stats(model)
    assert told == []
    for layer in model.layers:
        assert_like_numpy(before[f"grows/{layer.name}/kernel"], layer.kernel.numpy(), 64)
    model.add(keras.layers.Dense(3, name="added"))
    after = hw.weight_stats(model)
    assert told == ["structure"]
    assert set(after) == set(before) | {"grows/added/kernel", "grows/added/bias"}
    layer = model.get_layer("added")
    assert_like_numpy(after["grows/added/kernel"], layer.kernel.numpy(), 64)
    assert_like_numpy(after["grows/d5/kernel"], model.get_layer("d5").kernel.numpy(), 64)


# -- Hostile models: repeated names, NaN weights -------------------------------------------
@pytest.mark.parametrize("generation", GENERATIONS)
def test_weight_stats_returns_every_variable_of_repeated_names(generation, request, tf):
    K = request.getfixturevalue(generation)
    model = repeated_names_model(K, tf)
    stats = hw.weight_stats(model)
    assert len(stats) == len(model.weights) == 6
    tree = hw.inspect(model)
    for var in tree.variables():
        values = var.variable.numpy().astype(np.float64)
        assert stats[var.path].mean == pytest.approx(values.mean(), rel=1e-12, abs=1e-12)
        assert stats[var.path].max == values.max()
    assert sorted(stats) == sorted(v.path for v in tree.variables())


def test_nan_weights_are_badged_and_left_alone(keras):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, name="bad"),
                              keras.layers.Dense(2, name="good")], name="nan")
    kernel = model.get_layer("bad").kernel
    kernel.assign(np.array([[np.nan, 1.0], [np.inf, -np.inf]], "float32"))
    before = model_state(model)
    with pytest.warns(hw.NonFiniteWeightsWarning):
        hw.weight_stats(model)
    dash = hw.explore(model)
    rows = {r["path"]: r for r in dash.explorer.visible_rows()}
    assert "NaN/Inf" in rows["nan/bad"]["badges"] and "NaN/Inf" not in rows["nan/good"]["badges"]
    assert model_state(model) == before
