"""The weight edits are one table (hubwidgets.model.edit_specs.EDITS): one entry gives the
``hubwidgets.<edit>`` function, its code, the explorer's action and the row menu's entry."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import hubwidgets as hw
from hubwidgets import EditField, EditSpec, register_edit
from hubwidgets.model.edit_specs import EDITS, unregister_edit
from recording_comm import recording_comms


def _negate(_tree):
    return lambda old, _info: -old


def _shift(_tree, offset):
    value = float(offset)
    return lambda old, _info: old + np.asarray(value, old.dtype)


NEGATE = EditSpec(name="negate", label="Negate", make_compute=_negate,
                  layer_code="layer.set_weights([-w for w in layer.get_weights()])",
                  variable_code="-w", doc="Flip the sign of every weight of ``target``.")
SHIFT = EditSpec(name="shift_weights", label="Shift\u2026", make_compute=_shift,
                 fields=(EditField("offset", "Add to every weight", "0.1"),),
                 layer_code="layer.set_weights([w + {offset!r} for w in layer.get_weights()])",
                 variable_code="w + {offset!r}", doc="Add ``offset`` to every weight.")


@pytest.fixture
def added_edits():
    register_edit(NEGATE)
    register_edit(SHIFT)
    yield
    unregister_edit("negate")
    unregister_edit("shift_weights")


def _message(widget, content) -> None:
    """An action, as the browser's view sends it through the widget's comm (an anywidget
    request, answered by the ``_action_request`` command)."""
    request = {"id": "1", "kind": "anywidget-command", "name": "_action_request", "msg": content}
    widget._handle_msg({"content": {"data": {"method": "custom", "content": request}},
                        "buffers": []})


def _model(keras, name):
    keras.utils.set_random_seed(1)
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name="d1"),
                             keras.layers.Dense(2, name="d2")], name=name)


def test_the_built_in_edits_are_the_table():
    assert list(EDITS) == ["scale_weights", "reset_weights", "prune_weights", "add_noise"]
    for name in EDITS:  # the hw functions, the explorer's actions and menu come from it
        assert getattr(hw, name).__doc__ == EDITS[name].doc
    assert list(hw.LayerExplorer.generated_actions()) == list(EDITS)


def test_a_new_edit_is_one_entry(keras, added_edits):
    model = _model(keras, "table_edit")
    before = [w.numpy().copy() for w in model.weights]

    # the hubwidgets function, with the spec's parameters
    assert callable(hw.negate) and hw.negate.__doc__ == NEGATE.doc
    assert list(inspect.signature(hw.shift_weights).parameters) == [
        "model", "target", "offset"]
    hw.shift_weights(model, "table_edit/d2", 0.5)
    np.testing.assert_array_equal(model.get_layer("d2").kernel.numpy(), before[2] + 0.5)
    assert hw.undo_history(model).undo_steps[-1].description == \
        "shift_weights(model, 'table_edit/d2', 0.5)"
    hw.undo(model)
    np.testing.assert_array_equal(model.get_layer("d2").kernel.numpy(), before[2])

    # the code shown for it
    call, plain = hw.edit_code(model, "negate", "table_edit/d1")
    assert call == "hubwidgets.negate(model, 'table_edit/d1')"
    assert plain == ("layer = model.get_layer('d1')\n"
                     "layer.set_weights([-w for w in layer.get_weights()])")

    # the explorer: its synced menu, and the action run from a browser message
    with recording_comms() as recorder:
        dashboard = hw.explore(model)
        explorer = dashboard.explorer
        menu = {e["action"]: e for e in explorer.row_menu}
        assert menu["negate"] == {"action": "negate", "label": "Negate", "fields": []}
        assert menu["shift_weights"]["fields"] == [
            {"name": "offset", "question": "Add to every weight", "example": "0.1"}]
        assert list(menu)[:4] == ["scale_weights", "reset_weights", "prune_weights",
                                  "add_noise"]
        sent = recorder.bytes_sent()
        _message(explorer, {"action": "negate", "path": "table_edit/d1"})
        assert recorder.bytes_sent() > sent  # the new code and rows went to the browser
    assert explorer.code.startswith("hubwidgets.negate(model, 'table_edit/d1')\n")
    assert "layer.set_weights([-w for w in layer.get_weights()])" in explorer.code
    assert explorer.message.startswith("Done: hubwidgets.negate(model, 'table_edit/d1').")
    np.testing.assert_array_equal(model.get_layer("d1").kernel.numpy(), -before[0])
    np.testing.assert_array_equal(model.get_layer("d1").bias.numpy(), -before[1])
    np.testing.assert_array_equal(model.get_layer("d2").kernel.numpy(), before[2])

    # its fields are checked as every action's are, before anything runs
    _message(explorer, {"action": "shift_weights", "path": "table_edit/d2"})
    assert explorer.message == "Action 'shift_weights' needs the field 'offset'."
    _message(explorer, {"action": "shift_weights", "path": "table_edit/d2", "offset": "1"})
    assert "must be a finite number" in explorer.message
    np.testing.assert_array_equal(model.get_layer("d2").kernel.numpy(), before[2])

    _message(explorer, {"action": "undo"})
    assert explorer.code == "hubwidgets.undo(model)"
    for w, b in zip(model.weights, before, strict=True):
        np.testing.assert_array_equal(w.numpy(), b)


def test_a_removed_edit_is_gone_everywhere(keras):
    register_edit(NEGATE)
    unregister_edit("negate")
    assert not hasattr(hw, "negate")
    explorer = hw.LayerExplorer(_model(keras, "table_gone"))
    assert "negate" not in {e["action"] for e in explorer.row_menu}
    _message(explorer, {"action": "negate", "path": "table_gone/d1"})
    assert explorer.message.startswith("Unknown action 'negate'")
    with pytest.raises(hw.EditError, match="not 'negate'"):
        hw.edit_code(explorer.tree.obj, "negate", "table_gone/d1")


# -- the spec's fields for what an edit means on LoRA layers, and for a change of nothing ----
def _negate_lora_output(owner, owned, _args, _action, overrides, dropped):
    """The output times -1: base kernel, B factor and bias negated; A left as it is."""
    for var in owned:
        if var.name.endswith("lora_kernel_a"):
            dropped.add(var.key)
        else:
            overrides[var.key] = lambda old, _info: -old


def _negate_lora_code(_node, _args, getter):
    return [f"layer = {getter}", "for w in (layer._kernel, layer.lora_kernel_b, layer.bias):",
            "    w.assign(-w)"]


NEGATE_OUTPUT = EditSpec(
    name="negate_output", label="Negate the output", make_compute=_negate,
    layer_code="layer.set_weights([-w for w in layer.get_weights()])", variable_code="-w",
    fine_tuned=hw.FineTunedMeaning(
        layer=_negate_lora_output, code=_negate_lora_code,
        note="On {count} LoRA layer(s) ({names}) the output is negated (not lora_kernel_a)."),
    doc="Flip the sign of ``target``'s output.")


def _clipper(_tree, limit):
    bound = float(limit)
    return lambda old, _info: np.clip(old, -bound, bound).astype(old.dtype)


CLIP = EditSpec(name="clip_weights", label="Clip\u2026", make_compute=_clipper,
                fields=(EditField("limit", "Clip every weight to +-", "1"),),
                variable_code="np.clip(w, -{limit!r}, {limit!r})",
                unchanged_warning="every weight was already within the limit.",
                doc="Clip every weight of ``target`` to [-limit, limit].")


@pytest.fixture
def lora_edits():
    register_edit(NEGATE)
    register_edit(NEGATE_OUTPUT)
    register_edit(CLIP)
    yield
    for name in ("negate", "negate_output", "clip_weights"):
        unregister_edit(name)


def _lora_model(keras, name):
    keras.utils.set_random_seed(3)
    layer = keras.layers.Dense(4, name="d")
    inp = keras.Input((3,))
    model = keras.Model(inp, layer(inp), name=name)
    layer.enable_lora(2)
    layer.lora_kernel_b.assign(np.random.default_rng(0).normal(size=(2, 4)).astype("float32"))
    layer.bias.assign(np.arange(4, dtype="float32") - 1.5)
    return model, layer


def test_an_edits_meaning_on_lora_layers_is_one_field_of_its_entry(keras, lora_edits):
    model, layer = _lora_model(keras, "lora_meaning")
    x = np.random.default_rng(1).normal(size=(5, 3)).astype("float32")
    out = np.array(model(x))
    a = layer.lora_kernel_a.numpy().copy()
    explorer = hw.LayerExplorer(model, var_name="model")
    path = explorer.tree.find("d").path
    _message(explorer, {"action": "negate_output", "path": path})
    np.testing.assert_allclose(np.array(model(x)), -out, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(layer.lora_kernel_a.numpy(), a)  # A stays: A·B once
    assert "On 1 LoRA layer(s) (d) the output is negated (not lora_kernel_a)." in \
        explorer.message
    _, plain = hw.edit_code(model, "negate_output", path)
    assert plain == ("layer = model.get_layer('d')\n"
                     "for w in (layer._kernel, layer.lora_kernel_b, layer.bias):\n"
                     "    w.assign(-w)")


def test_an_edit_that_gives_no_meaning_on_lora_layers_is_refused_there(keras, lora_edits):
    model, layer = _lora_model(keras, "lora_refused")
    before = {v.path: v.numpy().copy() for v in model.weights}
    path = hw.inspect(model).find("d").path
    with pytest.raises(hw.EditError, match="negate on .* no honest meaning") as err:
        hw.negate(model, path)
    assert "lora_kernel_b" in str(err.value)
    assert all(np.array_equal(before[v.path], v.numpy()) for v in model.weights)
    hw.negate(model, f"{path}/lora_kernel_b")  # one named float variable: exactly that one
    changed = {v.path for v in model.weights if not np.array_equal(before[v.path], v.numpy())}
    assert changed == {layer.lora_kernel_b.path}


def test_an_edit_that_may_change_nothing_says_so_and_records_no_step(keras, lora_edits):
    import warnings

    model = _model(keras, "table_unchanged")
    history = hw.undo_history(model)
    with pytest.warns(hw.HubWidgetsWarning, match=(
            r"clip_weights\(model, 'table_unchanged/d2', 100.0\) changed nothing: every "
            "weight was already within the limit. No undo step was recorded.")):
        hw.clip_weights(model, "table_unchanged/d2", 100.0)
    assert history.undo_steps == []
    hw.clip_weights(model, "table_unchanged/d2", 0.01)
    assert np.abs(model.get_layer("d2").kernel.numpy()).max() == np.float32(0.01)
    assert len(history.undo_steps) == 1
    with warnings.catch_warnings():  # an edit without the field: recorded, no warning
        warnings.simplefilter("error")
        hw.scale_weights(model, "table_unchanged/d2", 1.0)
    assert len(history.undo_steps) == 2
