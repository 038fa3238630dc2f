"""Weight edits with undo: scale, prune, reset, noise, restore; undo/redo bit for bit; flags
untouched; every replica; Hub module parts in place; the plain code reaches the right layer
when a name repeats; the undo history names the model as the user does, lives on its session
and dies with it, and keeps the explorer's "restore" copies inside its byte budget; an edit
never walks the model again; every bad input refused with the model unchanged.  Real Keras 3,
tf_keras, tensorflow_hub models."""

from __future__ import annotations

import gc
import math
import tracemalloc
import warnings
import weakref

import numpy as np
import pytest

import hubwidgets as hw
from hubwidgets.model.session import session_for


def dense_model(K, name="edit_model"):
    """Two Dense layers with known initializers; d2 frozen (flags must survive edits)."""
    model = K.Sequential([
        K.Input((8,)),
        K.layers.Dense(16, kernel_initializer=K.initializers.Constant(0.5),
                       bias_initializer="ones", name="d1"),
        K.layers.BatchNormalization(name="bn"),
        K.layers.Dense(4, name="d2"),
    ], name=name)
    model.get_layer("d2").trainable = False
    return model


@pytest.fixture(params=["keras3", "tf_keras"])
def K(request, keras, tf_keras):
    return keras if request.param == "keras3" else tf_keras


def values(model):
    """Every variable's bytes, by path (bitwise comparisons)."""
    return {v.path: v.numpy().tobytes() for v in hw.inspect(model).variables()}


def flags(model):
    tree = hw.inspect(model)
    return ([v.trainable for v in tree.variables()],
            [(n.path, n.trainable) for n in tree.root.walk()])


def randomize(model, seed=0):
    rng = np.random.default_rng(seed)
    for v in hw.inspect(model).variables():
        v.variable.assign(rng.normal(size=v.shape).astype(v.dtype))


def bits(a):
    a = np.asarray(a)
    return a.view(f"u{a.dtype.itemsize}")


def test_scale_is_bitwise_undo_redo_exact_flags_and_stats_follow(K):
    model = dense_model(K)
    randomize(model)
    kernel = model.get_layer("d1").kernel
    before, before_flags = values(model), flags(model)
    w = kernel.numpy()
    tree = hw.scale_weights(model, "d1", 2.5)
    assert isinstance(tree, hw.ModelTree)
    np.testing.assert_array_equal(bits(kernel.numpy()), bits(w * np.float32(2.5)))
    after = values(model)
    changed = {p for p in before if before[p] != after[p]}
    assert changed == {v.path for v in tree.find("d1").all_variables()}
    assert flags(model) == before_flags
    stats = hw.weight_stats(model)[tree.find("d1").variables[0].path]
    assert stats.mean == pytest.approx(float(kernel.numpy().astype(np.float64).mean()),
                                       rel=1e-12)
    assert hw.undo(model) is not None and values(model) == before
    hw.redo(model)
    assert values(model) == after and flags(model) == before_flags
    hw.undo(tree)  # the returned tree stands for its model
    assert values(model) == before
    with pytest.raises(hw.EditError, match="Nothing to undo"):
        hw.undo(model)


def test_prune_exact_count_kept_magnitudes_and_ties(K):
    model = dense_model(K)
    randomize(model, seed=1)
    hw.undo_history(model).budget_bytes = 10 ** 6
    kernel = model.get_layer("d1").kernel
    w = kernel.numpy()
    hw.prune_weights(model, "d1", 0.3)
    new = kernel.numpy()
    count = math.floor(0.3 * w.size)
    dropped = new == 0
    assert dropped.sum() == count
    assert np.abs(w[~dropped]).min() >= np.abs(w[dropped]).max()
    np.testing.assert_array_equal(new[~dropped], w[~dropped])
    # ties: equal magnitudes go in C order, so the result is the same every time
    kernel.assign(np.full(w.shape, -1.0, np.float32))
    hw.prune_weights(model, "d1", 0.25)
    flat = kernel.numpy().reshape(-1)
    assert (flat[: w.size // 4] == 0).all() and (flat[w.size // 4:] == -1).all()
    hw.prune_weights(model, "d2", 1.0)
    assert not model.get_layer("d2").kernel.numpy().any()
    hw.prune_weights(model, "d2", 0.0)  # nothing pruned, still one undo step
    hw.undo(model)
    hw.undo(model)
    assert model.get_layer("d2").kernel.numpy().any()


def test_reset_uses_each_layers_own_initializers(K):
    model = dense_model(K)
    first = model.get_layer("d2").kernel.numpy()
    randomize(model, seed=2)
    hw.reset_weights(model, "d1")
    np.testing.assert_array_equal(model.get_layer("d1").kernel.numpy(), np.full((8, 16), 0.5))
    np.testing.assert_array_equal(model.get_layer("d1").bias.numpy(), np.ones(16))
    hw.reset_weights(model, "bn")
    bn = model.get_layer("bn")
    np.testing.assert_array_equal(bn.gamma.numpy(), np.ones(16))
    np.testing.assert_array_equal(bn.beta.numpy(), np.zeros(16))
    np.testing.assert_array_equal(bn.moving_mean.numpy(), np.zeros(16))
    np.testing.assert_array_equal(bn.moving_variance.numpy(), np.ones(16))
    before = model.get_layer("d2").kernel.numpy()
    hw.reset_weights(model, "d2")  # glorot_uniform: new values within its limit
    limit = math.sqrt(6 / (16 + 4))
    new = model.get_layer("d2").kernel.numpy()
    assert not np.array_equal(new, before) and np.abs(new).max() <= limit
    if K.__name__ == "tf_keras":  # unseeded tf_keras initializers repeat their first values
        np.testing.assert_array_equal(new, first)
    hw.undo(model)
    np.testing.assert_array_equal(model.get_layer("d2").kernel.numpy(), before)


def test_add_noise_is_absolute_and_seeded(K):
    model = dense_model(K)
    randomize(model, seed=3)
    layer = model.get_layer("d1")
    kernel, bias = layer.kernel.numpy(), layer.bias.numpy()
    hw.add_noise(model, "d1", 0.1, seed=7)
    rng = np.random.default_rng(7)  # variables in model order: kernel, then bias
    for old, var in ((kernel, layer.kernel), (bias, layer.bias)):
        expected = (old.astype(np.float64) + rng.normal(0.0, 0.1, old.shape)).astype(old.dtype)
        np.testing.assert_array_equal(bits(var.numpy()), bits(expected))
    hw.undo(model)
    np.testing.assert_array_equal(layer.kernel.numpy(), kernel)
    bias_path = hw.inspect(model).find("d1").variables[1].path  # one variable, by its path
    hw.add_noise(model, bias_path, 0.5, seed=1, relative=True)
    np.testing.assert_array_equal(layer.kernel.numpy(), kernel)
    rng = np.random.default_rng(1)  # relative: std x the variable's own std
    wide = bias.astype(np.float64)
    expected = (wide + rng.normal(0.0, 0.5 * wide.std(), bias.shape)).astype(np.float32)
    np.testing.assert_array_equal(bits(layer.bias.numpy()), bits(expected))
    hw.undo(model)
    np.testing.assert_array_equal(layer.bias.numpy(), bias)


def test_restore_a_snapshot_is_one_undo_step(K):
    model = dense_model(K)
    randomize(model, seed=4)
    snap = hw.snapshot(model)
    before = values(model)
    hw.undo_history(model).budget_bytes = 10 ** 6
    tree = hw.scale_weights(model, "d[12]$", 3.0)  # a regular expression: d1 and d2
    scaled = values(model)
    assert scaled != before
    bn = {v.path for v in tree.find("bn").variables}
    assert all(scaled[p] == before[p] for p in bn)  # bn was not a match
    hw.restore(model, snap)
    assert values(model) == before
    hw.undo(model)
    assert values(model) == scaled
    hw.undo(model)
    assert values(model) == before
    with pytest.raises(hw.EditError, match="Snapshot"):
        hw.restore(model, {"not": "a snapshot"})
    other = K.Sequential([K.Input((8,)), K.layers.Dense(3, name="d1")], name="edit_model")
    with pytest.raises(hw.EditError, match="Nothing was restored.*shape"):
        hw.restore(other, snap)  # same paths, other shapes: refused before any write
    with pytest.raises(hw.EditError, match="load it first"):
        hw.restore("model.keras", snap)


def test_bad_input_is_refused_and_nothing_changes(K, tf):
    model = dense_model(K)
    randomize(model, seed=5)
    before, before_flags = values(model), flags(model)
    history = len(hw.undo_history(model).undo_steps)
    bad_calls = [
        (lambda: hw.scale_weights(model, "d1", float("nan")), "finite"),
        (lambda: hw.scale_weights(model, "d1", float("inf")), "finite"),
        (lambda: hw.scale_weights(model, "d1", 1e40), "not finite in float32"),
        (lambda: hw.scale_weights(model, "d1", "2"), "number"),
        (lambda: hw.prune_weights(model, "d1", 1.5), "between 0 and 1"),
        (lambda: hw.prune_weights(model, "d1", -0.1), "between 0 and 1"),
        (lambda: hw.prune_weights(model, "d1", float("nan")), "finite"),
        (lambda: hw.add_noise(model, "d1", -1.0), ">= 0"),
        (lambda: hw.scale_weights(model, "no_such_layer", 2.0), "matches no"),
        (lambda: hw.scale_weights(model, "", 2.0), "non-empty"),
        (lambda: hw.scale_weights(model, ["d1"], 2.0), "non-empty"),
        (lambda: hw.scale_weights("model.keras", "d1", 2.0), "load it first"),
    ]
    for call, message in bad_calls:
        with pytest.raises(hw.EditError, match=message):
            call()
        assert values(model) == before and flags(model) == before_flags
    assert len(hw.undo_history(model).undo_steps) == history


def test_non_float_and_read_only_variables_are_refused(tf):
    class Counter(tf.Module):
        def __init__(self):
            super().__init__(name="counter_module")
            self.w = tf.Variable(tf.ones((3,)), name="w")
            self.steps = tf.Variable(5, dtype=tf.int64, name="steps")

    module = Counter()
    with pytest.raises(hw.EditError, match="float variables"):
        hw.scale_weights(module, ".*", 2.0)
    assert module.w.numpy().tolist() == [1, 1, 1] and int(module.steps.numpy()) == 5
    with pytest.raises(hw.EditError, match="no known initializer"):
        hw.reset_weights(module, "w")
    hw.scale_weights(module, "w", 2.0)
    assert module.w.numpy().tolist() == [2, 2, 2]

    class ReadOnly(tf.Module):
        """A module whose second variable refuses writes (as variables of a frozen graph do):
        the first one, already written, must be put back."""

        def __init__(self):
            super().__init__(name="read_only")
            self.a = tf.Variable(tf.ones((2,)), name="a")
            self.b = tf.Variable(tf.ones((2,)), name="b")

    ro = ReadOnly()
    tf_variable = type(ro.b)

    class Locked(tf_variable):
        def assign(self, *args, **kwargs):
            raise RuntimeError("this variable is read-only")

    ro.b.__class__ = Locked
    with pytest.raises(hw.EditError, match="cannot be written"):
        hw.scale_weights(ro, ".*", 3.0)
    assert ro.a.numpy().tolist() == [1, 1] and ro.b.numpy().tolist() == [1, 1]


def test_budget_drops_the_oldest_step_and_says_so(keras):
    model = dense_model(keras, name="budget_model")
    history = hw.undo_history(model)
    tree = hw.inspect(model)
    d1_bytes = sum(v.nbytes for v in tree.find("d1").all_variables())
    history.budget_bytes = d1_bytes  # room for one step of d1
    hw.scale_weights(model, "d1", 2.0)
    with pytest.warns(hw.UndoHistoryWarning, match="dropped the oldest undo step"):
        hw.scale_weights(model, "d1", 3.0)
    assert history.nbytes <= d1_bytes and len(history.undo_steps) == 1
    assert history.dropped == ["scale_weights(model, 'd1', 2.0)"]
    hw.undo(model)
    with pytest.raises(hw.EditError, match="1 older step"):
        hw.undo(model)
    with pytest.warns(hw.UndoHistoryWarning, match="cannot be undone"):
        hw.scale_weights(model, ".*", 2.0)  # bigger than the whole budget
    # the default budget is the model's weight bytes: a whole-model edit fits
    other = dense_model(keras, name="default_budget")
    with warnings.catch_warnings():
        warnings.simplefilter("error", hw.UndoHistoryWarning)
        hw.scale_weights(other, ".*", 2.0)
    assert hw.undo_history(other).nbytes == sum(v.nbytes for v in hw.inspect(other).variables())


def test_hub_module_part_is_edited_in_place(hub_backbone, hub, tf_keras, keras, tf):
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    layer = hub.KerasLayer(hub_backbone, trainable=False, name="hub")
    model = tf_keras.Sequential([tf_keras.Input((4,)), layer])
    out = model(x).numpy()
    before_flags = flags(model)
    tree = hw.inspect(model)
    part = tree.find("hub/block2_dense")
    kernel = part.variables[0]
    w = kernel.numpy()
    hw.scale_weights(model, "hub/block2_dense", 2.0)
    np.testing.assert_array_equal(kernel.numpy(), w * np.float32(2.0))
    assert any(v is kernel.variable for v in layer.variables)  # the module's own variable
    assert not np.array_equal(model(x).numpy(), out)
    assert flags(model) == before_flags
    with pytest.raises(hw.EditError, match="no known initializer"):
        hw.reset_weights(model, "hub/block2_dense")
    hw.undo(model)
    np.testing.assert_array_equal(bits(model(x).numpy()), bits(out))
    # Keras 3: hubwidgets.HubLayer
    k3 = keras.Sequential([keras.Input((4,)), hw.HubLayer(hub_backbone, name="hub"),
                           keras.layers.Dense(2, name="head")])
    out3 = k3(x).numpy()
    hw.prune_weights(k3, "hub/block1_dense", 0.5)
    assert not np.array_equal(k3(x).numpy(), out3)
    hw.undo(k3)
    np.testing.assert_array_equal(bits(k3(x).numpy()), bits(out3))


def test_mirrored_model_every_replica(mirrored, keras):
    with mirrored.scope():
        model = dense_model(keras, name="mirrored_model")
    randomize(model, seed=6)
    hw.undo_history(model).budget_bytes = 10 ** 6
    from hubwidgets.model.adapters.common import replica_components

    kernel = model.get_layer("d1").kernel
    replicas = replica_components(kernel)
    assert len(replicas) == 2
    w = [r.numpy() for r in replicas]
    hw.scale_weights(model, "d1", 2.0)
    for r, old in zip(replicas, w, strict=True):
        np.testing.assert_array_equal(bits(r.numpy()), bits(old * np.float32(2.0)))
    stats = hw.weight_stats(model)[hw.inspect(model).find("d1").variables[0].path]
    assert stats.replicas_agree and stats.mean == pytest.approx(
        float((w[0] * np.float32(2.0)).astype(np.float64).mean()), rel=1e-12)
    hw.prune_weights(model, "d1", 0.5)
    assert all((r.numpy() == 0).sum() == w[0].size // 2 for r in replicas)
    hw.undo(model)
    hw.undo(model)
    for r, old in zip(replicas, w, strict=True):
        np.testing.assert_array_equal(bits(r.numpy()), bits(old))
    hw.redo(model)
    for r, old in zip(replicas, w, strict=True):
        np.testing.assert_array_equal(bits(r.numpy()), bits(old * np.float32(2.0)))


def test_undo_and_redo_swap_values_so_a_step_holds_one_copy(keras):
    model = dense_model(keras, name="redo_budget")
    d1_bytes = sum(v.nbytes for v in hw.inspect(model).find("d1").all_variables())
    history = hw.undo_history(model)
    history.budget_bytes = 2 * d1_bytes
    hw.scale_weights(model, "d1", 2.0)
    hw.scale_weights(model, "d1", 3.0)
    kernel = model.get_layer("d1").kernel
    for move, expected in ((hw.undo, 1.0), (hw.undo, 0.5), (hw.redo, 1.0), (hw.redo, 3.0)):
        move(model)
        np.testing.assert_array_equal(kernel.numpy(), np.full((8, 16), expected))
        assert history.nbytes == 2 * d1_bytes
    history.budget_bytes = d1_bytes
    with pytest.warns(hw.UndoHistoryWarning, match="oldest undo step") as caught:
        hw.scale_weights(model, "d1", 0.5)
    assert caught[0].filename == __file__  # the warning points at the caller
    assert history.nbytes <= d1_bytes and history.redo_steps == []


@pytest.mark.parametrize("action, target, args, kwargs", [
    ("scale_weights", "d1", (2.5,), {}),
    ("scale_weights", "d[12]$", (-0.75,), {}),
    ("prune_weights", "d1", (0.3,), {}),
    ("add_noise", "d1", (0.1,), {"seed": 3}),
    ("add_noise", "bn", (0.5,), {"seed": 4, "relative": True}),
    ("reset_weights", "d1", (), {}),
    ("reset_weights", "bn", (), {}),
])
def test_plain_code_does_exactly_what_the_edit_does(K, action, target, args, kwargs):
    edited, by_hand = dense_model(K, name="edit_model"), dense_model(K, name="edit_model")
    randomize(edited, seed=8)
    randomize(by_hand, seed=8)
    call, plain = hw.edit_code(edited, action, target, *args, **kwargs)
    assert call == f"hubwidgets.{action}(model, " + ", ".join(
        [repr(target)] + [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]) \
        + ")"
    assert "hubwidgets" not in plain  # Keras layers: plain Keras code only
    getattr(hw, action)(edited, target, *args, **kwargs)
    exec(plain, {"model": by_hand})
    assert values(by_hand) == values(edited)


def test_plain_code_for_a_hub_module_part(hub_backbone, hub, tf_keras):
    def build():
        return tf_keras.Sequential([tf_keras.Input((4,)),
                                    hub.KerasLayer(hub_backbone, trainable=True, name="hub")],
                                   name="hub_model")

    edited, by_hand = build(), build()
    call, plain = hw.edit_code(edited, "scale_weights", "hub/block1_dense", 3.0)
    hw.scale_weights(edited, "hub/block1_dense", 3.0)
    exec(plain, {"model": by_hand, "hubwidgets": hw})
    assert values(by_hand) == values(edited)
    with pytest.raises(hw.EditError, match="not 'freeze'"):
        hw.edit_code(edited, "freeze", "hub")


# -- hostile cases (issue 27) ----------------------------------------------------------------
def half_model(keras, value=10.0):
    model = keras.Sequential([keras.Input((3,)),
                              keras.layers.Dense(4, dtype="float16", name="h")], name="half")
    model.layers[0].kernel.assign(np.full((3, 4), value, np.float16))
    return model


@pytest.mark.parametrize("edit, args", [
    (hw.scale_weights, (60000.0,)),       # 10 * 60000 is past float16's 65504
    (hw.add_noise, (1e6,)),               # noise of std 1e6 rounds to inf in float16
])
def test_an_edit_whose_result_overflows_is_refused_with_nothing_written(keras, edit, args):
    model = half_model(keras)
    before = values(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not only a numpy RuntimeWarning
        with pytest.raises(hw.EditError, match=r"inf or NaN.*overflows float16.*65504"):
            edit(model, "h", *args)
    assert values(model) == before and hw.undo_history(model).undo_steps == []
    assert np.isfinite(model.layers[0].kernel.numpy()).all()


def test_a_non_finite_value_already_there_does_not_block_an_edit(keras):
    model = half_model(keras)
    kernel = model.layers[0].kernel
    kernel.assign(np.array([[np.inf, 1, 2, 3]] * 3, np.float16))
    hw.scale_weights(model, "h/kernel", 2.0)  # inf stays inf: not made by the edit
    np.testing.assert_array_equal(kernel.numpy()[0], np.array([np.inf, 2, 4, 6], np.float16))


@pytest.mark.parametrize("pattern", ["d[", "(d1", "*d1", "d1)"])
def test_an_invalid_regex_is_called_an_invalid_pattern(K, pattern):
    model = dense_model(K)
    before = values(model)
    with pytest.raises(hw.EditError, match="invalid pattern.*not a valid regular expression"):
        hw.scale_weights(model, pattern, 2.0)
    assert values(model) == before


def test_lowering_the_budget_trims_older_steps_at_the_next_edit(keras):
    model = dense_model(keras, name="shrink")
    history = hw.undo_history(model)
    history.budget_bytes = 10 ** 6
    hw.scale_weights(model, "d1", 2.0)
    hw.scale_weights(model, "d2", 2.0)
    assert len(history.undo_steps) == 2
    history.budget_bytes = 0
    with pytest.warns(hw.UndoHistoryWarning):
        hw.scale_weights(model, "bn", 2.0)  # cannot be recorded; the older ones go too
    assert history.undo_steps == [] and history.nbytes <= history.budget_bytes == 0


def _fit_once(keras, model):
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    x = np.random.default_rng(0).normal(size=(8, 8)).astype(np.float32)
    model.fit(x, np.ones((8, 4), np.float32), epochs=1, batch_size=8, verbose=0)


def test_undo_after_fit_changed_the_variable_is_refused_not_silent(keras):
    model = dense_model(keras, name="fit_then_undo")
    hw.scale_weights(model, "d1", 2.0)
    _fit_once(keras, model)  # trains d1
    trained = values(model)
    with pytest.raises(hw.EditError, match=r"changed since it was made.*d1/kernel.*force=True"):
        hw.undo(model)
    assert values(model) == trained  # the training updates were not thrown away
    hw.undo(model, force=True)  # asked for: the edit's before-values come back
    kernel = model.get_layer("d1").kernel.numpy()
    np.testing.assert_array_equal(kernel, np.full((8, 16), 0.5, np.float32))


def test_undo_after_fit_that_left_the_variable_alone_still_works(keras):
    model = dense_model(keras, name="fit_frozen_then_undo")
    d2 = model.get_layer("d2")
    original = d2.kernel.numpy().copy()
    hw.scale_weights(model, "d2", 2.0)  # d2 is frozen: fit leaves it bit for bit
    _fit_once(keras, model)
    hw.undo(model)
    np.testing.assert_array_equal(d2.kernel.numpy(), original)


def test_redo_after_the_variable_changed_since_the_undo_is_refused(keras):
    model = dense_model(keras, name="undo_change_redo")
    hw.scale_weights(model, "d1", 2.0)
    hw.undo(model)
    model.get_layer("d1").kernel.assign(np.zeros((8, 16), np.float32))  # code changed it
    with pytest.raises(hw.EditError, match="changed since it was undone"):
        hw.redo(model)
    assert not model.get_layer("d1").kernel.numpy().any()


def test_reset_of_an_untrained_keras3_layer_draws_new_values(keras):
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, name="fresh")], name="r")
    kernel = model.layers[0].kernel
    first = kernel.numpy().copy()
    hw.undo_history(model).budget_bytes = 10 ** 6
    hw.reset_weights(model, "fresh/kernel")
    second = kernel.numpy().copy()
    hw.reset_weights(model, "fresh/kernel")
    assert not np.array_equal(first, second) and not np.array_equal(second, kernel.numpy())
    limit = np.sqrt(6 / (6 + 5))  # still glorot_uniform's distribution
    assert np.abs(kernel.numpy()).max() <= limit
    assert len(hw.undo_history(model).undo_steps) == 2
    keras.utils.set_random_seed(5)  # Keras' global seed makes the draws reproducible
    hw.reset_weights(model, "fresh/kernel")
    drawn = kernel.numpy().copy()
    hw.scale_weights(model, "fresh/kernel", 2.0)
    keras.utils.set_random_seed(5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # it changes the values: no "changed nothing"
        hw.reset_weights(model, "fresh/kernel")
    np.testing.assert_array_equal(kernel.numpy(), drawn)


def test_reset_with_a_seeded_initializer_keeps_its_seed(keras):
    init = keras.initializers.GlorotUniform(seed=7)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, kernel_initializer=init,
                                                                    name="seeded")], name="s")
    hw.scale_weights(model, "seeded/kernel", 3.0)
    hw.reset_weights(model, "seeded/kernel")
    np.testing.assert_array_equal(model.layers[0].kernel.numpy(),
                                  keras.initializers.GlorotUniform(seed=7)((6, 5)))


def test_a_reset_that_changes_nothing_says_so_and_records_no_step(K):
    model = dense_model(K, name="noop_reset")
    with pytest.warns(UserWarning, match="changed nothing"):
        hw.reset_weights(model, "d1/bias")  # ones, reset to ones
    assert hw.undo_history(model).undo_steps == []


def test_a_bfloat16_overflow_is_refused_too(keras):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, dtype="bfloat16",
                                                                    name="b")], name="bf")
    model.layers[0].kernel.assign(np.full((3, 2), 10.0))
    before = values(model)
    with pytest.raises(hw.EditError, match=r"overflows bfloat16"):
        hw.scale_weights(model, "b/kernel", 1e38)
    assert values(model) == before


# -- plain code on a layer whose name repeats ----------------------------------------------
def arrays(model):
    """Every variable's value, by path (numpy copies)."""
    return {v.path: v.numpy().copy() for v in hw.inspect(model).variables()}


def twin_dense(K):
    """A subclassed model whose two Dense layers are both called "dense"."""
    class Twin(K.Model):
        def __init__(self):
            super().__init__(name="twin")
            self.first = K.layers.Dense(3, name="dense",
                                        kernel_initializer=K.initializers.Constant(0.25))
            self.second = K.layers.Dense(3, name="dense",
                                         kernel_initializer=K.initializers.Constant(0.75))

        def call(self, x):
            return self.second(self.first(x))

    model = Twin()
    model(np.zeros((1, 3), np.float32))
    return model


def twin_blocks(K):
    """Two nested sub-models with one name ("block"), each holding a layer called "dense"."""
    def block():
        return K.Sequential([K.Input((3,)), K.layers.Dense(
            3, name="dense", kernel_initializer=K.initializers.Constant(0.5))], name="block")

    class TwinBlocks(K.Model):
        def __init__(self):
            super().__init__(name="twins")
            self.first, self.second = block(), block()

        def call(self, x):
            return self.second(self.first(x))

    model = TwinBlocks()
    model(np.zeros((1, 3), np.float32))
    return model


@pytest.mark.parametrize("build", [twin_dense, twin_blocks])
@pytest.mark.parametrize("action, args", [
    ("scale_weights", (3.0,)), ("prune_weights", (0.5,)), ("reset_weights", ())])
def test_plain_code_edits_the_second_of_two_layers_with_one_name(K, build, action, args):
    edited, by_hand = build(K), build(K)
    randomize(edited, seed=1)
    randomize(by_hand, seed=1)
    tree = hw.inspect(edited)
    second = edited.second if build is twin_dense else edited.second.layers[-1]
    target = next(n for n in tree.root.walk() if n.obj is second)
    assert [n.name for n in tree.root.walk()].count(target.name) == 2  # the name repeats
    wanted = {v.path for v in target.all_variables()}
    before = arrays(edited)

    call, plain = hw.edit_code(edited, action, target.path, *args)
    assert "hubwidgets" not in plain, plain  # Keras layers: plain Keras code only
    getattr(hw, action)(edited, target.path, *args)
    exec(plain, {"model": by_hand})

    after, by_hand_values = arrays(edited), arrays(by_hand)
    for path, old in before.items():  # every variable of the model
        np.testing.assert_array_equal(by_hand_values[path], after[path], err_msg=path)
        assert np.array_equal(after[path], old) == (path not in wanted), path


# -- the user's variable name in the history -----------------------------------------------
def small(K, name):
    return K.Sequential([K.Input((4,)), K.layers.Dense(3, name="d1"),
                         K.layers.Dense(2, name="d2")], name=name)


def test_history_and_code_name_the_model_as_the_user_does(K):
    model = small(K, "named")
    explorer = hw.LayerExplorer(model, var_name="net")
    hw.undo_history(model).budget_bytes = 10 ** 6
    explorer.handle_action({"action": "scale_weights", "path": "named/d1", "factor": 2.0})
    assert explorer.code.startswith("hubwidgets.scale_weights(net, 'named/d1', 2.0)")
    hw.prune_weights(model, "d2", 0.5)
    hw.add_noise(model, "d2", 0.1, seed=3)
    hw.restore(model, hw.snapshot(model))
    history = hw.undo_history(model)
    assert [s.description for s in history.undo_steps] == [
        "scale_weights(net, 'named/d1', 2.0)", "prune_weights(net, 'd2', 0.5)",
        "add_noise(net, 'd2', 0.1, seed=3)", "restore(net, snapshot)"]
    call, plain = hw.edit_code(model, "scale_weights", "d1", 2.0)
    assert call == "hubwidgets.scale_weights(net, 'd1', 2.0)"
    assert plain.startswith("layer = net.get_layer('d1')")
    history.budget_bytes = 1
    with pytest.warns(hw.UndoHistoryWarning, match=r"scale_weights\(net, 'd1', 2\.0\)"):
        hw.scale_weights(model, "d1", 2.0)


# -- one history per live model, on its session --------------------------------------------
def test_history_lives_on_the_session_and_dies_with_the_model(K):
    model = small(K, "mortal")
    hw.scale_weights(model, "d1", 2.0)
    history = hw.undo_history(model)
    assert history is session_for(model).edit_history
    assert len(history.undo_steps) == 1
    assert hw.undo_history(hw.inspect(model)) is history  # a tree stands for its model
    import hubwidgets.model.edits as edits

    assert not hasattr(edits, "_HISTORIES")  # no second registry keyed by id()
    gone = weakref.ref(history)
    del model, history
    gc.collect()
    assert gone() is None


def test_a_new_model_at_a_dead_models_address_starts_with_no_history(tf):
    class Module(tf.Module):
        def __init__(self):
            super().__init__(name="m")
            self.w = tf.Variable(np.ones(4, np.float32), name="w")

    old = Module()
    hw.scale_weights(old, ".*", 2.0)
    address = id(old)
    del old
    gc.collect()
    reused = None
    for _ in range(200):  # CPython usually hands the freed address to the next object
        candidate = Module()
        if id(candidate) == address:
            reused = candidate
            break
    fresh = reused if reused is not None else Module()
    history = hw.undo_history(fresh)
    assert history.undo_steps == [] and history.dropped == []
    with pytest.raises(hw.EditError, match="Nothing to undo"):
        hw.undo(fresh)
    np.testing.assert_array_equal(fresh.w.numpy(), np.ones(4, np.float32))


# -- the explorer's restore copies only what an edit changes, inside the budget -------------
def head_and_big(keras):
    return keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, name="d1"),
                             keras.layers.Dense(4096, name="big")], name="budgeted")


def numpy_bytes_alive():
    domain = np.lib.tracemalloc_domain
    snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.DomainFilter(True, domain)])
    return sum(t.size for t in snap.traces)


def test_explorer_edit_keeps_only_the_edited_values_within_the_budget(keras):
    model = head_and_big(keras)
    tree = hw.inspect(model)
    d1_bytes = sum(v.nbytes for v in tree.find("d1").all_variables())
    big_bytes = sum(v.nbytes for v in tree.find("big").all_variables())
    assert big_bytes > 100 * d1_bytes
    budget = 2 * d1_bytes
    hw.undo_history(model).budget_bytes = budget
    explorer = hw.LayerExplorer(model)
    kernel = model.get_layer("d1").kernel
    original = kernel.numpy().copy()

    gc.collect()
    tracemalloc.start()
    try:
        start = numpy_bytes_alive()
        explorer.handle_action({"action": "scale_weights", "path": "budgeted/d1",
                                "factor": 2.0})
        gc.collect()
        held = numpy_bytes_alive() - start
    finally:
        tracemalloc.stop()
    assert explorer.message.startswith("Done"), explorer.message
    # d1's undo copy, and d1's new value (TF keeps the converted array as the variable's
    # buffer); before the fix, a copy of every weight (big's too) was kept as well
    assert held <= 2 * d1_bytes < big_bytes, f"{held:,} host bytes kept"
    history = hw.undo_history(model)
    assert history.nbytes == d1_bytes  # the undo step and the originals share one copy

    explorer.handle_action({"action": "scale_weights", "path": "budgeted/d1", "factor": 3.0})
    assert history.nbytes <= budget
    with pytest.warns(hw.UndoHistoryWarning, match="dropped the oldest undo step"):
        explorer.handle_action({"action": "restore_snapshot", "path": "budgeted/d1"})
    np.testing.assert_array_equal(kernel.numpy(), original)
    explorer.handle_action({"action": "undo"})  # the restore is one undo step
    np.testing.assert_array_equal(kernel.numpy(), original * np.float32(6.0))

    # an edit bigger than the whole budget: done, said, neither undoable nor restorable
    big = model.get_layer("big").kernel
    big_before = big.numpy().copy()
    with pytest.warns(hw.UndoHistoryWarning, match="cannot be undone or restored"):
        explorer.handle_action({"action": "scale_weights", "path": "budgeted/big",
                                "factor": 2.0})
    np.testing.assert_array_equal(big.numpy(), big_before * np.float32(2.0))
    # the view says so too, and offers no undo it cannot give
    assert "cannot be undone or restored" in explorer.message, explorer.message
    assert "Undo: hubwidgets.undo" not in explorer.message
    assert history.nbytes <= budget
    explorer.handle_action({"action": "restore_snapshot", "path": "budgeted/big"})
    assert "were not kept" in explorer.message and "budget_bytes" in explorer.message
    np.testing.assert_array_equal(big.numpy(), big_before * np.float32(2.0))


@pytest.mark.parametrize("budget", [-5, "10", True, 2.5])
def test_a_budget_that_is_not_a_byte_count_is_refused_when_set(keras, budget):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d")],
                             name="budget_check")
    history = hw.undo_history(model)
    with pytest.raises(hw.EditError, match="whole number of bytes"):
        history.budget_bytes = budget
    assert history.budget_bytes is None  # unchanged
    history.budget_bytes = np.int64(64)
    assert history.budget_bytes == 64 and type(history.budget_bytes) is int
    explorer = hw.LayerExplorer(model)
    explorer.handle_action({"action": "scale_weights", "path": "budget_check/d",
                            "factor": 2.0})
    assert explorer.message.endswith("Undo: hubwidgets.undo(model)."), explorer.message


def test_restore_survives_undo_and_redo_inside_a_budget_of_the_weight_bytes(keras):
    model = small(keras, "undo_restore")
    weights = sum(v.nbytes for v in hw.inspect(model).variables())
    hw.undo_history(model).budget_bytes = 2 * weights  # as the explorer's default was here
    explorer = hw.LayerExplorer(model)
    kernel = model.get_layer("d1").kernel
    original = kernel.numpy().copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error", hw.UndoHistoryWarning)
        explorer.handle_action({"action": "scale_weights", "path": "undo_restore",
                                "factor": 2.0})  # the whole model
        explorer.handle_action({"action": "undo"})
        assert explorer.totals["can_redo"]
        explorer.handle_action({"action": "redo"})
        explorer.handle_action({"action": "prune_weights", "path": "undo_restore/d1",
                                "fraction": 0.5})
    assert hw.undo_history(model).originals  # kept through undo and redo
    with pytest.warns(hw.UndoHistoryWarning, match="oldest undo step"):  # scale's, then
        explorer.handle_action({"action": "restore_snapshot", "path": "undo_restore/d1"})
    np.testing.assert_array_equal(kernel.numpy(), original)
    assert hw.undo_history(model).nbytes <= 2 * weights


# -- an edit changes values, never the structure ---------------------------------------------
def test_an_edit_undo_or_redo_does_not_walk_the_model_again(K):
    """Every edit, undo and redo (from Python or the explorer) leaves the model's tree the
    one walked first, with the values each step asks for; a freeze then updates that same
    tree's flags."""
    model = small(K, "walked")
    randomize(model, seed=2)
    explorer = hw.LayerExplorer(model)
    tree = hw.inspect(model)
    d1, d2 = model.get_layer("d1").kernel, model.get_layer("d2").kernel
    d1_before, d2_before = d1.numpy().copy(), d2.numpy().copy()
    for label, do, d1_factor, d2_reset in (
            ("scale_weights", lambda: hw.scale_weights(model, "d1", 2.0), 2, False),
            ("explorer scale", lambda: explorer.handle_action(
                {"action": "scale_weights", "path": "walked/d1", "factor": 2.0}), 4, False),
            ("explorer reset", lambda: explorer.handle_action(
                {"action": "reset_weights", "path": "walked/d2"}), 4, True),
            ("explorer undo", lambda: explorer.handle_action({"action": "undo"}), 4, False),
            ("undo", lambda: hw.undo(model), 2, False),
            ("redo", lambda: hw.redo(model), 4, False)):
        do()
        assert hw.inspect(model) is tree and explorer.tree is tree, label
        np.testing.assert_array_equal(d1.numpy(), d1_before * np.float32(d1_factor),
                                      err_msg=label)
        assert np.array_equal(d2.numpy(), d2_before) != d2_reset, label
    hw.freeze(model, "d1")
    assert model.get_layer("d1").trainable is False
    assert hw.inspect(model) is tree and tree.find("d1").trainable is False


def test_a_small_models_default_history_keeps_many_steps(keras):
    """The default budget is at least 64 MB: on a small model a second edit does not drop
    the first (the weight bytes alone held one whole-model edit)."""
    model = dense_model(keras, name="small_history")
    with warnings.catch_warnings():
        warnings.simplefilter("error", hw.UndoHistoryWarning)
        for factor in (2.0, 3.0, 0.5):
            hw.scale_weights(model, ".*", factor)
        hw.prune_weights(model, ".*", 0.5)
    assert len(hw.undo_history(model).undo_steps) == 4
