"""The explorer's actions as the browser sends them: a toggle acts on exactly the row it is on,
every message is checked against the action's declared fields before it touches the model
(a malformed one is refused with the model unchanged and a message that says why), synced
traits are validated too, and an old error is cleared by the next success."""

from __future__ import annotations

import inspect as pyinspect
import time

import pytest

import hubwidgets as hw
from model_state import GENERATIONS, model_state, repeated_names_model, sgd_step_changes


@pytest.mark.parametrize("generation", GENERATIONS)
def test_toggling_the_third_row_freezes_the_third_layer(generation, request, tf):
    K = request.getfixturevalue(generation)
    model = repeated_names_model(K, tf)
    explorer = hw.LayerExplorer(model)
    third_row = [r for r in explorer.visible_rows() if r["name"] == "hidden"][2]
    assert third_row["path"] == "m/hidden[2]"
    explorer.handle_action({"action": "set_trainable", "path": third_row["path"], "value": False})
    assert [layer.trainable for layer in model.h] == [True, True, False]
    rows = {r["path"]: r for r in explorer.visible_rows()}
    assert [rows[p]["frozen_params"] for p in ("m/hidden", "m/hidden[1]", "m/hidden[2]")] == [
        0, 0, 20]
    assert explorer.message == ""
    # the generated code names the same layer: run it on a twin model
    twin = repeated_names_model(K, tf)
    exec(explorer.code, {"model": twin, "hubwidgets": hw})
    assert [layer.trainable for layer in twin.h] == [True, True, False]
    # and training agrees
    model.compile(optimizer=K.optimizers.SGD(0.1), loss="mse")
    changed = sgd_step_changes(model, tf, 4, 4)
    assert changed == {id(w) for layer in model.h[:2] for w in layer.weights}


def test_freeze_matches_names_repeated_layers_apart(keras, tf):
    model = repeated_names_model(keras, tf)
    explorer = hw.LayerExplorer(model)
    explorer.handle_action({"action": "freeze_pattern", "pattern": "hidden"})
    assert [layer.trainable for layer in model.h] == [False, False, False]
    assert explorer.message.startswith("Froze 3 layer(s): ")
    assert "hidden[1]" in explorer.message and "hidden[2]" in explorer.message


# -- malformed browser messages: refused, model unchanged, a clear message ---------------------
# Each action's fields, as LayerExplorer declares them (checked against the class below).
ACTION_FIELDS = {
    "freeze_all": {},
    "freeze_pattern": {"pattern": str},
    "freeze_up_to": {"path": str},
    "select": {"path": str},
    "set_trainable": {"path": str, "value": bool},
    "unfreeze_all": {},
    "scale_weights": {"path": str, "factor": float},
    "reset_weights": {"path": str},
    "prune_weights": {"path": str, "fraction": float},
    "add_noise": {"path": str, "std": float},
    "restore_snapshot": {"path": str},
    "undo": {},
    "redo": {},
    "enable_lora": {"path": str, "rank": float},
    "enable_lora_pattern": {"pattern": str, "rank": float},
}
REQUIRED = {"freeze_pattern": {"pattern"}, "select": {"path"}, "set_trainable": {"path", "value"},
            "scale_weights": {"path", "factor"}, "reset_weights": {"path"},
            "prune_weights": {"path", "fraction"}, "add_noise": {"path", "std"},
            "restore_snapshot": {"path"}, "enable_lora": {"path", "rank"},
            "enable_lora_pattern": {"pattern", "rank"}}
GOOD = {"path": "mm/d1", "pattern": "d1", "value": False, "factor": 2.0, "fraction": 0.5,
        "std": 0.1, "rank": 2.0}
NOT_A_NUMBER = [None, "2", True, [2.0], float("nan"), float("inf")]
NOT_A_STRING = [None, 1, 2.5, True, ["d1"], {"path": "d1"}]
NOT_A_BOOL = [None, "false", "true", "False", 0, 1, 0.0, [], [False], {"value": False}]
HUGE = "d" * 10_000_000  # 10 MB


def malformed_messages():
    cases = [pytest.param(m, "not an object", id=f"not-a-dict-{type(m).__name__}")
             for m in (None, [], ["freeze_all"], "freeze_all", 3, 2.5, True)]
    cases += [pytest.param({"action": a}, "Unknown action", id=f"action-{a!r}")
              for a in ("nope", "", "FREEZE_ALL", "__init__", "_outcome", "refresh",
                        "show_more", "handle_action", None, 3, ["freeze_all"],
                        "expand", "collapse", "more")]  # what a view opens is the view's
    cases.append(pytest.param({}, "Unknown action", id="empty-dict"))
    for action, fields in ACTION_FIELDS.items():
        good = {"action": action, **{f: GOOD[f] for f in fields}}
        cases.append(pytest.param({**good, "extra": 1}, "takes no field 'extra'",
                                  id=f"{action}-extra-field"))
        cases.append(pytest.param({**good, "Path": "mm/d1"}, "takes no field 'Path'",
                                  id=f"{action}-wrong-case-field"))
        for field, kind in fields.items():
            if field in REQUIRED.get(action, ()):
                missing = {k: v for k, v in good.items() if k != field}
                cases.append(pytest.param(missing, f"needs the field '{field}'",
                                          id=f"{action}-missing-{field}"))
            wrong = {bool: NOT_A_BOOL, float: NOT_A_NUMBER}.get(kind, NOT_A_STRING)
            expected = {bool: "must be true or false",
                        float: "must be a finite number"}.get(kind, "must be a string")
            for value in wrong:
                cases.append(pytest.param({**good, field: value}, expected,
                                          id=f"{action}-{field}-{value!r}"))
            if kind is str:
                cases.append(pytest.param({**good, field: HUGE}, "10,000,000 characters",
                                          id=f"{action}-{field}-10MB"))
    for action in ("select", "set_trainable", "freeze_up_to"):
        fields = {f: GOOD[f] for f in ACTION_FIELDS[action]}
        cases.append(pytest.param({"action": action, **fields, "path": "mm/nope"},
                                  "'mm/nope'", id=f"{action}-path-that-does-not-exist"))
    return cases


@pytest.fixture(scope="module")
def message_model(keras):
    keras.utils.set_random_seed(3)
    inner = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3, name="i1")], name="inner")
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(3, name="d1"), inner,
                             keras.layers.Dense(2, name="d2")], name="mm")


def test_the_message_table_covers_every_action():
    from hubwidgets.widgets.actions import actions_of

    table = actions_of(hw.LayerExplorer)
    declared = {name: {p.name: p.annotation for p in pyinspect.signature(method).parameters
                       .values() if p.name != "self"} for name, method in table.items()}
    assert {a: {f: t.__name__ for f, t in fs.items()} for a, fs in ACTION_FIELDS.items()} == {
        a: {f: str(t) for f, t in fs.items()} for a, fs in declared.items()}


@pytest.mark.parametrize("message,says", malformed_messages())
def test_malformed_message_changes_nothing_and_says_why(message_model, message, says):
    hw.unfreeze(message_model)
    hw.freeze(message_model, "mm/d2")  # a state that a wrong freeze or unfreeze would change
    explorer = hw.LayerExplorer(message_model)
    state = (explorer.selected, explorer.code, explorer.query, explorer.rows_version)
    before = model_state(message_model)
    start = time.monotonic()
    answer = explorer.handle_action(message)
    assert time.monotonic() - start < 2.0
    assert model_state(message_model) == before
    assert (explorer.selected, explorer.code, explorer.query, explorer.rows_version) == state
    assert says in explorer.message
    assert answer == {"ok": False, "message": explorer.message, "code": ""}  # to the click
    assert len(explorer.message) < 1000  # a 10 MB field is not echoed back


# -- the browser also writes synced traits (selected, query) directly --------------------------
@pytest.mark.parametrize("path", ["mm/nope", "mm/d1" * 3000])
def test_a_synced_selection_that_does_not_exist_is_refused(message_model, path):
    hw.unfreeze(message_model)
    dash = hw.explore(message_model)
    dash.explorer.handle_action({"action": "select", "path": "mm/d1"})
    before = model_state(message_model)
    dash.explorer.set_state({"selected": path})  # what a comm message from the browser does
    assert model_state(message_model) == before
    assert dash.explorer.selected == dash.weights.selected == "mm/d1"
    assert "No layer" in dash.explorer.message


@pytest.mark.parametrize("state", [{"selected": 5}, {"selected": None}, {"query": ["d1"]},
                                   {"query": None}, {"query": 3}])
def test_a_synced_trait_of_the_wrong_type_is_refused_by_traitlets(message_model, state):
    import traitlets

    hw.unfreeze(message_model)
    explorer = hw.LayerExplorer(message_model)
    explorer.handle_action({"action": "select", "path": "mm/d1"})
    before, rows = model_state(message_model), explorer.visible_rows()
    with pytest.raises(traitlets.TraitError, match="expected a unicode string"):
        explorer.set_state(state)
    assert model_state(message_model) == before
    assert (explorer.selected, explorer.query, explorer.visible_rows()) == ("mm/d1", "", rows)


# -- messages that say what happened ----------------------------------------------------------
def test_an_invalid_regex_in_freeze_matches_is_said_to_be_invalid(three_dense):
    before = model_state(three_dense)
    explorer = hw.LayerExplorer(three_dense)
    explorer.handle_action({"action": "freeze_pattern", "pattern": "d["})
    assert model_state(three_dense) == before
    assert "regular expression" in explorer.message


@pytest.mark.parametrize("failing", [
    {"action": "select", "path": "m/zz"},
    {"action": "freeze_up_to", "path": "m"},
    {"action": "set_trainable", "path": "m/d1", "value": "no"},
    "garbage",
])
@pytest.mark.parametrize("succeeding", [
    {"action": "set_trainable", "path": "m/d2", "value": False},
    {"action": "freeze_all"},
    {"action": "select", "path": "m/d1"},
])
def test_an_old_error_is_cleared_by_a_later_success(three_dense, failing, succeeding):
    explorer = hw.LayerExplorer(three_dense)
    explorer.handle_action(failing)
    assert explorer.message
    old = explorer.message
    explorer.handle_action(succeeding)
    assert old not in explorer.message and explorer.message == ""


def test_freeze_up_to_a_selected_variable_row_uses_its_layer(three_dense, keras, tf):
    explorer = hw.LayerExplorer(three_dense)
    explorer.handle_action({"action": "select", "path": "m/d2/kernel"})
    assert explorer.selected == "m/d2/kernel" and explorer.message == ""
    explorer.handle_action({"action": "freeze_up_to"})
    assert explorer.message == ""
    assert [layer.trainable for layer in three_dense.layers] == [False, False, True]
    twin = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3), keras.layers.Dense(3),
                             keras.layers.Dense(2)])
    exec(explorer.code, {"model": twin})
    assert [layer.trainable for layer in twin.layers] == [False, False, True]
    three_dense.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    assert sgd_step_changes(three_dense, tf, 3, 2) == {id(w) for w in three_dense.get_layer("d3").weights}


def test_freeze_up_to_with_nothing_selected_says_to_select(three_dense):
    before = model_state(three_dense)
    explorer = hw.LayerExplorer(three_dense)
    explorer.handle_action({"action": "freeze_up_to"})
    assert explorer.message == "Select a layer first: everything up to it will be frozen."
    assert model_state(three_dense) == before
