"""Unusual variables are never silently wrong: uninitialised, of unknown shape, scalars,
empty, non-numeric and narrow dtypes, reached twice, in look-alike models, and mirrored.

Every count is checked against Keras ``count_params()`` or the variable's own value, every
statistic against numpy, and every missing figure says why.  Each case is read twice: the
first read streams one variable at a time, the second is batched (one op per device).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import hubwidgets as hw
from hubwidgets.model import host_stats
from hubwidgets.model.errors import HubWidgetsError
from hubwidgets.model.watch import ReplicaDriftWarning

NUMBER_FIGURES = ("mean", "std", "min", "max", "l2_norm", "zero_fraction", "histogram")


def _uninitialised(tf, shape, name):
    from tensorflow.python.ops.resource_variable_ops import UninitializedVariable

    return UninitializedVariable(shape=shape, dtype=tf.float32, name=name)


def _module(tf, **variables):
    module = tf.Module(name="odd")
    for name, v in variables.items():
        setattr(module, name, v)
    return module


def _assert_matches_numpy(stats, values, bins=64):
    """Every figure of ``stats`` against numpy on the variable's own values."""
    a = np.asarray(values).astype(np.float64).reshape(-1)
    assert stats.count == a.size
    assert stats.mean == pytest.approx(a.mean(), rel=1e-12, abs=1e-12)
    assert stats.std == pytest.approx(a.std(), rel=1e-9, abs=1e-12)
    assert (stats.min, stats.max) == (a.min(), a.max())
    assert stats.l2_norm == pytest.approx(np.sqrt(np.dot(a, a)), rel=1e-12)
    assert stats.zero_fraction == np.count_nonzero(a == 0) / a.size
    counts, edges = np.histogram(a, bins=bins)
    np.testing.assert_array_equal(stats.counts, counts)
    np.testing.assert_array_equal(stats.edges, edges)
    assert stats.missing == {}


def test_uninitialised_variable_is_reported_as_not_initialised_not_empty(tf):
    """An uninitialised variable (what a SavedModel load or a checkpoint restore creates
    before assigning) keeps its declared size in the tree and in weight_stats, every figure
    is missing with "not initialised", and the variables read with it, streamed or in one
    batched read, still get their own numbers."""
    a = tf.Variable(np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5, name="a")
    u = _uninitialised(tf, (3, 4), "u")
    b = tf.Variable(np.linspace(-1, 1, 5, dtype=np.float32), name="b")
    module = _module(tf, a=a, u=u, b=b)

    tree = hw.inspect(module)
    assert tree.find_variable("odd/u").shape == (3, 4)
    assert tree.root.params == 6 + 12 + 5
    for read in ("streamed", "batched"):
        stats = hw.weight_stats(tree)
        assert stats["odd/u"].count == 12, read
        assert stats["odd/u"].shape == (3, 4)
        for figure in ("mean", "std", "min", "max", "l2_norm", "zero_fraction"):
            assert getattr(stats["odd/u"], figure) is None
        assert set(stats["odd/u"].missing) == set(NUMBER_FIGURES)
        assert all("not initialised" in why for why in stats["odd/u"].missing.values())
        _assert_matches_numpy(stats["odd/a"], a.numpy())
        _assert_matches_numpy(stats["odd/b"], b.numpy())

    arrays = host_stats.host_arrays([a, u, b])  # the batched read: one op for the group
    np.testing.assert_array_equal(arrays[0], a.numpy().reshape(-1))
    assert arrays[1] is None  # its empty read is not its values
    np.testing.assert_array_equal(arrays[2], b.numpy().reshape(-1))
    hw.LayerExplorer(module)  # builds its rows without error

    with pytest.raises(HubWidgetsError, match="not initialised"):
        hw.snapshot(module)  # an empty copy would be silently wrong

    u.assign(np.full((3, 4), 2.0, np.float32))
    _assert_matches_numpy(hw.weight_stats(tree)["odd/u"], u.numpy())


def test_uninitialised_variable_of_unknown_shape_says_its_count_is_unknown(tf):
    """An uninitialised variable whose declared shape is unknown cannot give its size: the
    count is 0 and ``missing["count"]`` says why."""
    u = _uninitialised(tf, tf.TensorShape(None), "unknown")
    stats = hw.weight_stats([u])["unknown"]
    assert stats.count == 0
    assert set(stats.missing) == set(NUMBER_FIGURES) | {"count"}
    assert "not initialised" in stats.missing["count"]


def test_variables_of_unknown_shape_show_the_shape_of_their_value(tf):
    """A variable declared with ``shape=None`` or ``[None, 3]`` holds a value of one shape:
    the tree and weight_stats give that shape and its size (not a scalar, not 0)."""
    unknown = tf.Variable(np.arange(5, dtype=np.float32), shape=tf.TensorShape(None),
                          name="unknown_rank")
    partial = tf.Variable(np.arange(6, dtype=np.float32).reshape(2, 3),
                          shape=tf.TensorShape([None, 3]), name="partial")
    module = _module(tf, unknown=unknown, partial=partial)
    tree = hw.inspect(module)
    assert tree.find_variable("odd/unknown").shape == (5,)
    assert tree.find_variable("odd/partial").shape == (2, 3)
    assert tree.find_variable("odd/partial").nbytes == 24
    assert tree.root.params == 5 + 6
    for _ in range(2):
        stats = hw.weight_stats(tree)
        assert stats["odd/unknown"].shape == (5,)
        assert stats["odd/partial"].shape == (2, 3)
        _assert_matches_numpy(stats["odd/unknown"], unknown.numpy())
        _assert_matches_numpy(stats["odd/partial"], partial.numpy())


def test_scalars_empty_and_narrow_dtypes_match_numpy(tf):
    """0-d scalars, float16, bfloat16, int8, uint8 and bool give numpy's figures; a zero-size
    variable has count 0 and says it is empty; string and complex64 variables give their
    element count and say statistics apply to numbers."""
    numeric = {
        "scalar": tf.Variable(3.5, name="scalar"),
        "half": tf.Variable(np.array([1.5, -2.25, 0, 65504], np.float16), name="half"),
        "brain": tf.Variable(tf.constant([1.5, -2.25, 0, 3e38], tf.bfloat16), name="brain"),
        "small_int": tf.Variable(np.array([-128, 127, 0, 5], np.int8), name="small_int"),
        "byte": tf.Variable(np.array([255, 0, 7], np.uint8), name="byte"),
        "flag": tf.Variable(np.array([True, False, True]), name="flag"),
    }
    empty = tf.Variable(np.zeros((0, 4), np.float32), name="empty")
    text = tf.Variable(["a", "bb"], name="text")
    pairs = tf.Variable(np.array([1 + 2j, 3 - 1j], np.complex64), name="pairs")
    module = _module(tf, empty=empty, text=text, pairs=pairs, **numeric)
    tree = hw.inspect(module)
    assert tree.root.params == 1 + 4 + 4 + 4 + 3 + 3 + 0 + 2 + 2
    assert tree.find_variable("odd/scalar").shape == ()
    for _ in range(2):
        stats = hw.weight_stats(tree)
        for name, v in numeric.items():
            _assert_matches_numpy(stats[f"odd/{name}"], np.asarray(v.numpy()))
        assert stats["odd/empty"].count == 0 and stats["odd/empty"].mean is None
        assert stats["odd/empty"].missing["mean"] == "the variable is empty"
        for name, dtype in (("text", "string"), ("pairs", "complex64")):
            s = stats[f"odd/{name}"]
            assert (s.count, s.dtype) == (2, dtype)
            assert set(s.missing) == set(NUMBER_FIGURES)
            assert all(dtype in why for why in s.missing.values())


def test_a_variable_reached_twice_is_counted_once(keras):
    """A layer shared by two sub-models and a variable tracked by two layers are counted
    once (Keras count_params agrees) and given statistics once, also when a list names the
    same variable twice or holds overlapping Nodes."""
    shared = keras.layers.Dense(3, name="shared")
    inputs = keras.Input((4,))
    first = keras.Sequential([keras.Input((4,)), shared], name="first")
    second = keras.Sequential([keras.Input((4,)), shared, keras.layers.Dense(2, name="head")],
                              name="second")
    outer = keras.Model(inputs, [first(inputs), second(inputs)], name="outer")
    tree = hw.inspect(outer)
    assert tree.root.params == outer.count_params() == 23
    stats = hw.weight_stats(outer)
    assert len(stats) == len(outer.weights) == 4

    overlapping = hw.weight_stats([tree.root, tree.find("outer/first")])
    assert sorted(overlapping) == sorted(stats)

    kernel = shared.kernel
    twice = hw.weight_stats([kernel, kernel])
    assert len(twice) == 1
    _assert_matches_numpy(next(iter(twice.values())), kernel.numpy())

    class Scale(keras.layers.Layer):
        def __init__(self, weight, **kwargs):
            super().__init__(**kwargs)
            self.w = weight

        def call(self, x):
            return x * self.w

    tied = keras.Variable(np.ones(4, np.float32), name="tied")
    x = keras.Input((4,))
    model = keras.Model(x, Scale(tied, name="b")(Scale(tied, name="a")(x)), name="tied_model")
    assert hw.inspect(model).root.params == model.count_params() == 4
    assert len(hw.weight_stats(model)) == 1


def test_look_alike_models_and_changed_weights_get_their_own_numbers(keras):
    """Two models of identical architecture (same shapes, so TensorFlow's kernel caches are
    shared) each get their own numbers, and a weight changed in place gives new numbers."""
    def model(seed):
        keras.utils.set_random_seed(seed)
        return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="d")],
                                name="look_alike")

    a, b = model(1), model(2)
    for m in (a, b, a, b):
        stats = hw.weight_stats(m)
        _assert_matches_numpy(stats["look_alike/d/kernel"], m.layers[0].kernel.numpy())
    kernel = a.layers[0].kernel
    kernel.assign(kernel * 2.0 + 1.0)
    _assert_matches_numpy(hw.weight_stats(a)["look_alike/d/kernel"], kernel.numpy())


def test_mirrored_replicas_are_each_read_and_drift_is_reported(mirrored, keras):
    """A mirrored model's variables are read on each replica's device; replicas that agree
    raise nothing, and a replica that drifts makes ``replicas_agree`` false and warns with
    the variable's path, the drifted replica's own numbers given."""
    with mirrored.scope():
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="d")],
                                 name="odd_mirrored")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stats = hw.weight_stats(model)["odd_mirrored/d/kernel"]
    components = model.layers[0].kernel.value.values
    assert [s.device.rsplit("/", 1)[-1] for s in stats.replicas] == [
        "device:CPU:0", "device:CPU:1"]
    assert stats.replicas_agree
    for replica, component in zip(stats.replicas, components, strict=True):
        _assert_matches_numpy(replica, component.numpy())

    components[1].assign(components[1] * 3.0 - 0.5)
    with pytest.warns(ReplicaDriftWarning, match="odd_mirrored/d/kernel"):
        stats = hw.weight_stats(model)["odd_mirrored/d/kernel"]
    assert not stats.replicas_agree
    _assert_matches_numpy(stats, components[0].numpy())
    _assert_matches_numpy(stats.replicas[1], components[1].numpy())


def test_keras_variable_created_in_a_stateless_scope_is_not_initialised(keras):
    """A Keras 3 variable created under ``keras.StatelessScope()`` holds no value until the
    scope ends (reading it draws fresh values from its initializer): weight_stats inside the
    scope says "not initialised" instead of giving statistics of a random draw."""
    with keras.StatelessScope():
        deferred = keras.Variable(initializer=keras.initializers.RandomNormal(), shape=(2, 3),
                                  name="deferred")
        stats = hw.weight_stats([deferred])["deferred"]
        assert stats.count == 6 and stats.mean is None
        assert set(stats.missing) == set(NUMBER_FIGURES)
        assert "not initialised" in stats.missing["mean"]
    _assert_matches_numpy(hw.weight_stats([deferred])["deferred"], deferred.numpy())


def test_a_model_built_in_a_stateless_scope_gets_numbers_once_the_scope_ends(keras):
    """A model's statistics plan is kept for its tree, but not past the moment its Keras 3
    variables get their values: inside the scope every figure is "not initialised", after
    it numpy's, on the same model and tree."""
    with keras.StatelessScope():
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d")],
                                 name="stateless_model")
        inside = hw.weight_stats(model)
        assert all(s.mean is None and "not initialised" in s.missing["mean"]
                   for s in inside.values())
    tree = hw.inspect(model)
    after = hw.weight_stats(model)
    assert hw.inspect(model) is tree
    layer = model.get_layer("d")
    _assert_matches_numpy(after["stateless_model/d/kernel"], layer.kernel.numpy())
    _assert_matches_numpy(after["stateless_model/d/bias"], layer.bias.numpy())


def test_a_module_whose_variables_are_added_replaced_or_reshaped_gets_their_numbers(tf):
    """A tf.Module's statistics plan is kept for its tree only while it holds the same
    variables: one added later, one replaced by a new variable of the same name and shape,
    and an unknown-shape variable given values of other shapes each get numpy's figures
    (with the shape of the value) on the next call, the warm one included."""
    a = tf.Variable(np.arange(6, dtype=np.float32).reshape(2, 3) - 2.0, name="a")
    free = tf.Variable(np.linspace(-1, 1, 4, dtype=np.float32), shape=tf.TensorShape(None),
                       name="free")
    module = _module(tf, a=a, free=free)

    def assert_every_figure_is_numpys(expected):
        for _ in range(2):
            stats = hw.weight_stats(module)
            assert sorted(stats) == sorted(f"odd/{name}" for name in expected)
            for name, v in expected.items():
                assert stats[f"odd/{name}"].shape == v.numpy().shape
                _assert_matches_numpy(stats[f"odd/{name}"], v.numpy())

    assert_every_figure_is_numpys({"a": a, "free": free})
    module.b = tf.Variable(np.array([3.0, -4.0, 0.0], np.float32), name="b")
    assert_every_figure_is_numpys({"a": a, "free": free, "b": module.b})
    module.a = tf.Variable(np.arange(6, dtype=np.float32).reshape(2, 3) * 10.0 + 1.0, name="a")
    assert_every_figure_is_numpys({"a": module.a, "free": free, "b": module.b})
    for value in (np.arange(12, dtype=np.float32).reshape(3, 4) - 5.0,
                  np.array([[7.5]], np.float32), np.linspace(0, 2, 50, dtype=np.float32)):
        free.assign(value)
        assert free.numpy().shape == value.shape
        assert_every_figure_is_numpys({"a": module.a, "free": free, "b": module.b})


def test_string_variables_count_the_bytes_of_their_strings(tf):
    """TensorFlow gives strings no fixed size, so size x itemsize said 0 bytes for a
    vocabulary: a string variable counts the bytes of its strings, in the totals too; an
    uninitialised one counts 0 (there is nothing to read)."""
    from tensorflow.python.ops.resource_variable_ops import UninitializedVariable

    module = _module(tf, vocab=tf.Variable(["hello", "wörld", ""]), token=tf.Variable("abc"),
                     w=tf.Variable(tf.zeros([2, 3])))
    tree = hw.inspect(module)
    sizes = {v.name: v.nbytes for v in tree.variables()}
    assert sizes == {"vocab": len(b"hello") + len("wörld".encode()), "token": 3, "w": 24}
    assert tree.root.nbytes == sum(sizes.values())
    empty = _module(tf, later=UninitializedVariable(shape=[4], dtype=tf.string, name="later"))
    assert [v.nbytes for v in hw.inspect(empty).variables()] == [0]
