"""Review of the weight edits: the plain code reaches the right layer when a name repeats, the
undo history names the user's variable and lives on the model's session, the explorer's
"restore" stays inside the undo budget, and one edit looks at the model's structure once.
Real Keras 3 and tf_keras models, built here."""

from __future__ import annotations

import gc
import tracemalloc
import warnings
import weakref

import numpy as np
import pytest

import hubwidgets as hw
from hubwidgets.model.session import session_for


@pytest.fixture(params=["keras3", "tf_keras"])
def K(request, keras, tf_keras):
    return keras if request.param == "keras3" else tf_keras


def values(model):
    """Every variable's value, by path (numpy copies)."""
    return {v.path: v.numpy().copy() for v in hw.inspect(model).variables()}


def randomize(model, seed):
    rng = np.random.default_rng(seed)
    for v in hw.inspect(model).variables():
        v.variable.assign(rng.normal(size=v.shape).astype(v.dtype))


# -- 1. plain code on a layer whose name repeats ----------------------------------------------
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
    before = values(edited)

    call, plain = hw.edit_code(edited, action, target.path, *args)
    assert "hubwidgets" not in plain, plain  # Keras layers: plain Keras code only
    getattr(hw, action)(edited, target.path, *args)
    exec(plain, {"model": by_hand})

    after, by_hand_values = values(edited), values(by_hand)
    for path, old in before.items():  # every variable of the model
        np.testing.assert_array_equal(by_hand_values[path], after[path], err_msg=path)
        assert np.array_equal(after[path], old) == (path not in wanted), path


# -- 2. the user's variable name in the history -----------------------------------------------
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


# -- 3. one history per live model, on its session --------------------------------------------
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


# -- 4. the explorer's restore copies only what an edit changes, inside the budget -------------
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


def test_restore_survives_undo_and_redo_inside_the_default_budget(keras):
    model = small(keras, "undo_restore")
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
    weights = sum(v.nbytes for v in hw.inspect(model).variables())
    assert hw.undo_history(model).nbytes <= 2 * weights


# -- 5. one edit, one look at the structure --------------------------------------------------
def count_structure_walks(model, monkeypatch):
    adapter = session_for(model).tree.adapter
    calls = {"fingerprint": 0, "trainable_keys": 0}
    for name in calls:
        real = getattr(adapter, name)

        def counted(*a, _real=real, _name=name, **k):
            calls[_name] += 1
            return _real(*a, **k)
        monkeypatch.setattr(adapter, name, counted)
    return calls


def test_one_edit_walks_the_structure_once(K, monkeypatch):
    model = small(K, "walked")
    explorer = hw.LayerExplorer(model)
    calls = count_structure_walks(model, monkeypatch)
    for label, do in (
            ("scale_weights", lambda: hw.scale_weights(model, "d1", 2.0)),
            ("explorer scale", lambda: explorer.handle_action(
                {"action": "scale_weights", "path": "walked/d1", "factor": 2.0})),
            ("explorer reset", lambda: explorer.handle_action(
                {"action": "reset_weights", "path": "walked/d2"})),
            ("explorer undo", lambda: explorer.handle_action({"action": "undo"})),
            ("undo", lambda: hw.undo(model)),
            ("redo", lambda: hw.redo(model))):
        for name in calls:
            calls[name] = 0
        do()
        assert calls == {"fingerprint": 1, "trainable_keys": 1}, label
    for name in calls:
        calls[name] = 0
    hw.freeze(model, "d1")  # one structure check; the flags are read again after the change
    assert calls["fingerprint"] == 1 and calls["trainable_keys"] >= 2
    assert model.get_layer("d1").trainable is False
    assert hw.inspect(model).find("d1").trainable is False
