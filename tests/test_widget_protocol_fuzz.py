"""The widget protocol under fuzzing (issue 27): random and hostile message sequences sent to
every view of a dashboard through the recording comm, as the kernel receives them from a
browser (``Widget._handle_msg``), interleaved with changes to the model from Python.

After every message:

- no exception escapes the message handler;
- the model changed only through a valid action, and exactly as that action says: a twin
  model (same layers, same values) gets the same request as a hubwidgets Python call built
  from the message's own fields, and both must then hold the same values bit for bit and the
  same trainable flags; a refused message leaves the model as it was;
- every view agrees with the model (the training panel included, its layer picker fuzzed
  and a watched ``fit`` among the Python changes): the explorer's totals and rows with
  Keras' own counts
  (``count_params``, ``trainable_weights``), the header with the same, and the explorer, the
  weight plot and the session with one selection.

Real Keras 3 models, real widgets; only the channel to the browser is a recorder.
"""

from __future__ import annotations

import contextlib
import math
import random
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hubwidgets as hw
from hubwidgets.widgets.figure import figure_json

LAYERS = ("d1", "bn", "d2")
HOSTILE_TEXT = ["", " ", "/", "fuzz/", "fuzz//d1", ".*", "(", "[", "d1)", "*", "\\",
                "<img src=x onerror=alert(1)>", "fuzz/d1/kernel/..", "x" * 300, "\x00",
                "fuzz/d1\u2026", "ｄ1", "fuzz/nope"]
PATHS = ["fuzz", "fuzz/d1", "fuzz/bn", "fuzz/d2", "fuzz/d1/kernel", "fuzz/d1/bias",
         "fuzz/bn/gamma", "fuzz/bn/moving_mean", "fuzz/d2/kernel", "d1", "bn", "d2", "d[12]"]
ACTIONS = ["select", "set_trainable", "freeze_all",
           "unfreeze_all", "freeze_up_to", "freeze_pattern", "scale_weights", "reset_weights",
           "prune_weights", "add_noise", "restore_snapshot", "undo", "redo"]
FIELDS = {"path": "path", "value": "bool", "pattern": "path", "factor": "number",
          "fraction": "number", "std": "number"}
ACTION_FIELDS = {"select": ["path"],
                 "set_trainable": ["path", "value"], "freeze_all": [], "unfreeze_all": [],
                 "freeze_up_to": ["path"], "freeze_pattern": ["pattern"],
                 "scale_weights": ["path", "factor"], "reset_weights": ["path"],
                 "prune_weights": ["path", "fraction"], "add_noise": ["path", "std"],
                 "restore_snapshot": ["path"], "undo": [], "redo": []}

junk = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20),
                 st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                 st.lists(st.integers(), max_size=3),
                 st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))
paths = st.one_of(st.sampled_from(PATHS), st.sampled_from(HOSTILE_TEXT), st.text(max_size=20))
numbers = st.one_of(st.sampled_from([0.0, 0.5, 1.0, 2.0, -1.0, 0.25, 1e-3, 1e5, 60000.0]),
                    st.floats(-1e6, 1e6, allow_nan=False), st.integers(-5, 5),
                    st.sampled_from([math.nan, math.inf, -math.inf, 1e308]))
kinds = {"path": paths, "bool": st.booleans(), "number": numbers}


@st.composite
def action_message(draw):
    """Mostly well-formed actions with plausible or hostile fields; sometimes a wrong type,
    a missing or an extra field."""
    name = draw(st.sampled_from(ACTIONS))
    fields = {f: draw(st.one_of(kinds[FIELDS[f]], junk) if draw(st.integers(0, 9)) == 0
                      else kinds[FIELDS[f]]) for f in ACTION_FIELDS[name]}
    if fields and draw(st.integers(0, 14)) == 0:
        fields.pop(draw(st.sampled_from(sorted(fields))))
    if draw(st.integers(0, 14)) == 0:
        fields[draw(st.text(min_size=1, max_size=8))] = draw(junk)
    return ("explorer", request("_action_request", {"action": name, **fields}))


def request(name, msg):
    """A request as anywidget's ``experimental.invoke`` sends it (answered by a command)."""
    return {"method": "custom",
            "content": {"id": "fuzz", "kind": "anywidget-command", "name": name, "msg": msg}}


view_request = st.builds(  # what a view asks for: subtrees, searches, the way to a row
    request, st.sampled_from(["_subtree_request", "_search_request", "_reveal_request"]),
    st.one_of(junk, st.fixed_dictionaries({}, optional={
        "path": st.one_of(paths, junk), "query": st.one_of(paths, junk),
        "start": st.one_of(st.integers(-3, 300), junk), "count": st.one_of(numbers, junk),
        "shown": st.one_of(junk, st.dictionaries(paths, st.one_of(numbers, junk),
                                                 max_size=3))})))


garbage_custom = st.tuples(
    st.sampled_from(["explorer", "weights", "header", "figure"]),
    st.builds(lambda c: {"method": "custom", "content": c},
              st.one_of(junk, st.dictionaries(st.sampled_from(["action", "path", "x"]), junk,
                                              max_size=3),
                        st.builds(lambda a: {"action": a}, st.text(max_size=15)))))
state_update = st.one_of(
    st.tuples(st.just("explorer"), st.builds(
        lambda k, v: {"method": "update", "state": {k: v}, "buffer_paths": []},
        st.sampled_from(["selected", "query", "rows_version"]),
        st.one_of(paths, st.lists(paths, max_size=3), junk))),
    st.tuples(st.just("figure"), st.builds(  # the figure is the kernel's: never the browser's
        lambda k, v: {"method": "update", "state": {k: v}, "buffer_paths": []},
        st.sampled_from(["figure", "patch"]),
        st.one_of(junk, st.fixed_dictionaries({"data": st.one_of(junk, st.lists(junk))})))),
    st.tuples(st.sampled_from(["log_box", "shared_box"]), st.builds(
        lambda v: {"method": "update", "state": {"value": v}, "buffer_paths": []},
        st.one_of(st.booleans(), junk))),
    st.tuples(st.just("explorer"), st.builds(lambda m: {"method": m}, junk)),
    st.tuples(st.just("picker"), st.builds(
        lambda v: {"method": "update", "state": {"index": v}, "buffer_paths": []},
        st.one_of(st.integers(-2, 6), junk))),
)
python_change = st.tuples(st.just("python"), st.one_of(
    st.tuples(st.just("freeze"), st.sampled_from(LAYERS)),
    st.tuples(st.just("unfreeze"), st.sampled_from(LAYERS)),
    st.tuples(st.just("scale"), st.sampled_from(LAYERS)),
    st.tuples(st.just("assign"), st.sampled_from(["d1", "d2"])),
    st.tuples(st.just("undo"), st.just("")),
    st.tuples(st.just("fit"), st.just("")),
))
sane = {"path": st.sampled_from(PATHS[:9]), "bool": st.booleans(),
        "number": st.sampled_from([0.0, 0.25, 0.5, 2.0, -1.0, 3])}
valid_action = st.sampled_from(ACTIONS).flatmap(lambda name: st.fixed_dictionaries(
    {f: sane[FIELDS[f]] for f in ACTION_FIELDS[name]}).map(
    lambda fields: ("explorer", request("_action_request", {"action": name, **fields}))))
messages = st.lists(st.one_of(valid_action, valid_action, valid_action, action_message(),
                              st.tuples(st.just("explorer"), view_request),
                              garbage_custom, state_update, python_change),
                    min_size=2, max_size=10)


def build(keras):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="d1"),
                              keras.layers.BatchNormalization(name="bn"),
                              keras.layers.Dense(2, name="d2")], name="fuzz")
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    return model


X = np.linspace(-1, 1, 32, dtype=np.float32).reshape(8, 4)
Y = np.linspace(0, 1, 16, dtype=np.float32).reshape(8, 2)


def state(model):
    """Values (bytes) and trainable flags of every variable and layer."""
    tree = hw.inspect(model)
    return ({v.path: (np.asarray(v.variable.numpy()).tobytes(), bool(v.trainable))
             for v in tree.variables()},
            [bool(layer.trainable) for layer in model.layers])


class SameDraws:
    """Edits that draw random numbers (add_noise, a Keras 3 reset) draw the same ones for the
    model and its twin: numpy's unseeded ``default_rng()`` and Python's ``random`` (where
    Keras draws default seeds) are seeded from a counter both share, set again before each
    side runs."""

    def __init__(self, monkeypatch):
        self._seed = 0
        real = np.random.default_rng

        def default_rng(seed=None):
            return real(self._seed if seed is None else seed)

        monkeypatch.setattr(np.random, "default_rng", default_rng)

    @property
    def seed(self):
        return self._seed

    @seed.setter
    def seed(self, value):
        self._seed = value
        random.seed(value)


def views(dashboard):
    weights = dashboard.weights
    boxes = {box.description: box for box in weights.children[0].children
             if hasattr(box, "description")}
    log_box, shared_box = boxes["log y"], boxes["shared bins"]
    return {"explorer": dashboard.explorer, "weights": weights, "header": dashboard.header,
            "figure": weights.figure, "log_box": log_box, "shared_box": shared_box,
            "picker": dashboard.training.layer_picker}


def python_side(model, kind, layer, callbacks=()):
    """A change from Python, as a user makes it beside the dashboard (hw calls, a watched
    ``fit``, or Keras followed by ``dashboard.refresh()``)."""
    if kind == "fit":
        model.compile(optimizer=model.optimizer.__class__(0.1), loss="mse")  # flags may differ
        model.fit(X, Y, epochs=1, batch_size=4, shuffle=False, verbose=0,
                  callbacks=list(callbacks))
    elif kind == "freeze":
        hw.freeze(model, layer)
    elif kind == "unfreeze":
        hw.unfreeze(model, layer)
    elif kind == "scale":
        hw.scale_weights(model, layer, 0.5)
    elif kind == "assign":
        kernel = model.get_layer(layer).kernel
        kernel.assign(np.asarray(kernel.numpy()) + 1.0)
    elif kind == "undo":
        hw.undo(model)


def as_python(twin, action, fields, selection):
    """What the message asks for, as the hubwidgets Python call on the twin (from the message
    itself, not from the code the explorer shows)."""
    path = fields.get("path")
    if action == "set_trainable":
        (hw.unfreeze if fields["value"] else hw.freeze)(twin, path)
    elif action == "freeze_all":
        hw.freeze(twin)
    elif action == "unfreeze_all":
        hw.unfreeze(twin)
    elif action == "freeze_up_to":
        hw.freeze_up_to(twin, path or selection)
    elif action == "freeze_pattern":
        hw.freeze(twin, *[n.path for n in hw.search(twin, fields["pattern"])])
    elif action in ("scale_weights", "prune_weights", "add_noise"):
        number = fields.get("factor", fields.get("fraction", fields.get("std")))
        getattr(hw, action)(twin, path, number)
    elif action == "reset_weights":
        hw.reset_weights(twin, path)
    elif action in ("undo", "redo"):
        getattr(hw, action)(twin)
    elif action == "restore_snapshot":
        from hubwidgets.model.snapshot import before_first_edit

        node = hw.inspect(twin).find(path)
        hw.restore(twin, before_first_edit(twin, [v.path for v in node.all_variables()]))
    else:
        raise AssertionError(f"{action} changed the model")


def check_views(dashboard, model):
    explorer, weights = dashboard.explorer, dashboard.weights
    session = hw.session_for(model)
    params = model.count_params()
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert explorer.totals["params"] == params
    assert explorer.totals["trainable"] == trainable
    assert f"{params:,} params" in dashboard.header.value
    assert f"{trainable:,} trainable" in dashboard.header.value
    for row in explorer.visible_rows(["fuzz", *(f"fuzz/{name}" for name in LAYERS)]):
        name = row["path"].removeprefix("fuzz/")
        if name in LAYERS:
            layer = model.get_layer(name)
            assert row["trainable_params"] == sum(int(np.prod(w.shape))
                                                  for w in layer.trainable_weights), row
    assert explorer.selected == session.selection == weights.selected
    # what the figure's views draw (its state) is the figure Python holds
    assert weights.figure.drawn == figure_json(weights.figure.to_figure())
    panel = dashboard.training  # between messages no fit runs: the panel must not say so
    assert "(training)" not in panel.status.value
    offered = [o[1] if isinstance(o, tuple) else o for o in panel.layer_picker.options]
    assert panel.layer_picker.value is None or panel.layer_picker.value in offered


@pytest.mark.filterwarnings("ignore")
@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(sequence=messages)
def test_random_and_hostile_messages_never_escape_corrupt_or_desync(keras, monkeypatch,
                                                                    sequence):
    from recording_comm import recording_comms

    draws = SameDraws(monkeypatch)
    model, twin = build(keras), build(keras)
    for m in (model, twin):
        hw.undo_history(m).start_keeping_originals()  # as the explorer's first edit does
    with recording_comms() as recorder:
        watcher = hw.watch(model, min_refresh_s=0)
        watcher.panel  # noqa: B018 - the dashboard shows it as its "Training" tab
        dashboard = hw.explore(model)
    try:
        targets = views(dashboard)
        explorer = dashboard.explorer
        for step, (target, message) in enumerate(sequence):
            before = state(model)
            draws.seed = step
            if target == "python":
                kind, layer = message
                for m in (model, twin):
                    draws.seed = step
                    with contextlib.suppress(hw.HubWidgetsError):
                        python_side(m, kind, layer, [watcher] if m is model else [])
                dashboard.refresh()
                assert state(model) == state(twin)
                check_views(dashboard, model)
                continue
            explorer.code, explorer.message = "", ""
            selection = explorer.selected
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                targets[target]._handle_msg({"content": {"data": message}, "buffers": []})
            content = message.get("content")
            if isinstance(content, dict) and content.get("kind") == "anywidget-command":
                [answer] = recorder.answers()[-1:]  # every request is answered, never raises
                assert answer["id"] == "fuzz" and isinstance(answer["response"]["ok"], bool)
                recorder.clear()
                content = content["msg"]
            action = content.get("action") if isinstance(content, dict) else None
            if target == "explorer" and explorer.code and action != "select":
                draws.seed = step
                fields = {k: v for k, v in content.items() if k != "action"}
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    as_python(twin, action, fields, selection)
            else:  # refused, or an action that changes nothing in the model
                assert state(model) == before, (message, explorer.message)
            assert state(model) == state(twin), (message, explorer.code, explorer.message)
            check_views(dashboard, model)
    finally:
        dashboard.close()
