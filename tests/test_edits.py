"""Weight edits with undo (issue 17): scale, prune, reset, noise, restore; undo/redo bit for
bit; flags untouched; every replica; Hub module parts in place; the memory budget; every bad
input refused with the model unchanged.  Real Keras 3, tf_keras, tensorflow_hub models."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import hubwidgets as hw


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
