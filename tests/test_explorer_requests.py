"""What the explorer's browser view asks for, through anywidget's request/response messages
as the browser sends them: a node's subtree (once, by page), the search box's rows, the way to
a selected row, and actions whose response carries their outcome or error back to the click.
What a view opens is the view's own: Python keeps no expanded set."""

from __future__ import annotations

import re

import numpy as np
import pytest

import hubwidgets as hw
from model_state import model_state
from recording_comm import recording_comms


def ask(explorer, recorder, name, msg):
    """Send a request as ``experimental.invoke`` does; the kernel's response to it."""
    recorder.clear()
    request = {"id": f"{name}-1", "kind": "anywidget-command", "name": name, "msg": msg}
    explorer._handle_msg({"content": {"data": {"method": "custom", "content": request}},
                          "buffers": []})
    [answer] = recorder.answers()
    assert answer["id"] == request["id"]
    return answer["response"]


@pytest.fixture
def nested(keras):
    keras.utils.set_random_seed(1)
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5, name="inner_a"),
                              keras.layers.BatchNormalization(name="inner_bn")], name="block")
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name="first"), inner,
                             keras.layers.Dense(2, name="head")], name="net")


def test_python_keeps_no_view_state(nested):
    explorer = hw.LayerExplorer(nested)
    assert not {"_rows", "_expanded"} & set(explorer.trait_names())
    assert not hasattr(explorer, "_shown")
    assert not hasattr(explorer, "expand") and not hasattr(explorer, "more")


def test_the_first_paint_is_synced_and_each_subtree_matches_keras(nested):
    with recording_comms() as recorder:
        explorer = hw.LayerExplorer(nested)
        top = explorer.get_state()["_top_rows"]  # saved with the notebook: no round trip
        assert top["row"]["path"] == "net" and top["row"]["params"] == nested.count_params()
        assert top["total"] == len(nested.layers)
        assert [(c["name"], c["params"]) for c in top["children"]] == [
            (layer.name, layer.count_params()) for layer in nested.layers]
        block = ask(explorer, recorder, "_subtree_request", {"path": "net/block"})
        inner = nested.get_layer("block")
        assert block["ok"] and block["total"] == len(inner.layers)
        assert [(c["name"], c["params"], c["trainable_params"]) for c in block["children"]] == [
            (layer.name, layer.count_params(),
             sum(int(np.prod(w.shape)) for w in layer.trainable_weights))
            for layer in inner.layers]
        assert all(c["depth"] == 2 for c in block["children"])
        bn = ask(explorer, recorder, "_subtree_request", {"path": "net/block/inner_bn"})
        keras_bn = inner.get_layer("inner_bn")
        assert [(v["name"], v["params"], v["trainable"]) for v in bn["variables"]] == [
            (w.name, int(np.prod(w.shape)), w.trainable) for w in keras_bn.weights]
        assert bn["children"] == [] and bn["total"] == 0


def test_a_long_list_comes_one_page_per_request(keras):
    model = keras.Sequential([keras.Input((2,))] + [keras.layers.Dense(2, name=f"d{i}")
                                                    for i in range(250)], name="long")
    with recording_comms() as recorder:
        explorer = hw.LayerExplorer(model)
        pages = [ask(explorer, recorder, "_subtree_request",
                     {"path": "long", "start": start, "count": 100})
                 for start in (100, 200)]
    names = [c["name"] for c in explorer._top_rows["children"]] + [
        c["name"] for page in pages for c in page["children"]]
    assert names == [layer.name for layer in model.layers]
    assert [len(page["children"]) for page in pages] == [100, 50]
    shown = explorer.visible_rows(shown={"long": 300})  # what a view that paged twice lists
    assert [r["name"] for r in shown[1:]] == names


@pytest.mark.parametrize("msg,says", [
    ({"path": "net/nope"}, "net/nope"),
    ({"path": ""}, "No layer or variable path"),
    ({"path": 3}, "'path' must be a string"),
    ({"path": "net", "count": 10**9}, "'count' must be a count"),
    ({"path": "net", "start": -1}, "'start' must be a count"),
    ("net", "A request is an object"),
])
def test_a_bad_subtree_request_is_answered_with_why(nested, msg, says):
    with recording_comms() as recorder:
        explorer = hw.LayerExplorer(nested)
        answer = ask(explorer, recorder, "_subtree_request", msg)
    assert answer["ok"] is False and says in answer["message"]


def test_the_search_answers_its_matches_and_their_ancestors(nested):
    with recording_comms() as recorder:
        explorer = hw.LayerExplorer(nested)
        answer = ask(explorer, recorder, "_search_request", {"query": "INNER_", "shown": {}})
        refused = ask(explorer, recorder, "_search_request", {"query": "w" * 2_000})
    # the oracle: Keras' own names, matched with Python's re
    block = nested.get_layer("block")
    matches = [f"net/block/{layer.name}" for layer in block.layers
               if re.search("inner_", layer.name, re.I)]
    assert [r["path"] for r in answer["rows"]] == ["net", "net/block", *matches]
    assert refused["ok"] is False and "characters long" in refused["message"]
    assert explorer.query == ""  # a view's search did not change the shared search box


def test_the_way_to_a_variable_far_down_a_long_list(keras):
    model = keras.Sequential([keras.Input((2,))] + [keras.layers.Dense(2, name=f"d{i}")
                                                    for i in range(250)], name="long")
    with recording_comms() as recorder:
        explorer = hw.LayerExplorer(model)
        answer = ask(explorer, recorder, "_reveal_request", {"path": "long/d230/kernel"})
    assert answer == {"ok": True, "steps": [{"path": "long", "listed": 300},
                                            {"path": "long/d230", "listed": 100}]}


def test_a_bad_edit_answers_its_error_and_changes_nothing(nested):
    with recording_comms() as recorder:
        explorer = hw.LayerExplorer(nested)
        before = model_state(nested)
        answer = ask(explorer, recorder, "_action_request",
                     {"action": "scale_weights", "path": "net/first", "factor": "abc"})
    assert answer == {"ok": False, "code": "", "message":
                      "Action 'scale_weights': 'factor' must be a finite number, got 'abc'."}
    assert model_state(nested) == before
    assert explorer.message == answer["message"]  # the shared line says it too


def test_a_good_edit_answers_what_it_did_and_the_views_ask_again(nested):
    kernel = nested.get_layer("first").kernel
    before = np.array(kernel.numpy())
    with recording_comms() as recorder:
        explorer = hw.LayerExplorer(nested)
        version = explorer.rows_version
        answer = ask(explorer, recorder, "_action_request",
                     {"action": "scale_weights", "path": "net/first", "factor": 2})
        assert answer["ok"] is True and answer["message"].startswith("Done: ")
        assert answer["code"] == explorer.code and "scale_weights(model, 'net/first', 2.0)" in answer["code"]
        np.testing.assert_array_equal(kernel.numpy(), before * 2)
        assert explorer.rows_version > version  # each view asks again for what it shows
        assert explorer.totals["can_undo"] is True
        hw.freeze(nested, "block")  # a change from Python: the views ask again too
        assert explorer.rows_version > version + 1
        block = ask(explorer, recorder, "_subtree_request", {"path": "net/block"})
        assert {c["trainable"] for c in block["children"]} == {"frozen"}


def test_handle_action_answers_as_the_browser_is_answered(nested):
    explorer = hw.LayerExplorer(nested)
    assert explorer.handle_action({"action": "select", "path": "net/head"}) == {
        "ok": True, "message": "", "code": ""}
    answer = explorer.handle_action({"action": "set_trainable", "path": "net/head",
                                     "value": False})
    assert answer == {"ok": True, "message": explorer.message, "code": explorer.code}
    assert nested.get_layer("head").trainable is False
