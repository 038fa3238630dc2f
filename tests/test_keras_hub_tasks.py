"""A KerasHub Task shows its preprocessor and tokenizer as nodes beside backbone and head
(vocabulary size, sequence length, no params), as ``Task.summary()`` does."""

from __future__ import annotations

import pytest

import hubwidgets as hw
from hubwidgets.model.codegen import layer_accessor
from keras_hub_models import VOCABULARY, bert_classifier

pytest.importorskip("keras_hub")


@pytest.fixture(autouse=True)
def _tensorflow_set_up_first(tf):
    """TensorFlow's devices are configured by the session's ``tf`` fixture before use."""


def test_task_tree_shows_preprocessor_and_tokenizer():
    task = bert_classifier()
    tree = hw.inspect(task)
    names = [c.name for c in tree.root.children]
    assert {"bert_backbone", "logits", task.preprocessor.name} <= set(names)
    pre = tree.find(task.preprocessor.name)
    assert pre.obj is task.preprocessor and pre.params == 0
    assert any("sequence length 8" in n and "no params" in n for n in pre.notes)
    assert not any("not built" in n for n in pre.notes)
    [tok] = pre.children
    assert tok.obj is task.preprocessor.tokenizer and tok.params == 0
    assert any(f"vocabulary size {len(VOCABULARY)}" in n for n in tok.notes)
    # counts: Keras' own, on every layer
    assert tree.root.params == task.count_params()
    for node in tree:
        if node.keras_layer and node.obj.built:
            assert node.params == node.obj.count_params(), node.path
        elif node.keras_layer:  # a tokenizer is never built: it holds no weights
            assert node.params == 0 == len(node.obj.weights)
    # the code that reaches them is plain Keras that works
    assert layer_accessor(tok).startswith("model.preprocessor")
    assert eval(layer_accessor(tok), {"model": task, "hubwidgets": hw}) is tok.obj
    assert eval(layer_accessor(pre), {"model": task}) is task.preprocessor
    assert "bert_text_classifier_preprocessor" in tree.summary()


def test_task_in_the_explorer_and_through_a_freeze_round_trip():
    task = bert_classifier()
    explorer = hw.LayerExplorer(task)
    rows = {r["name"]: r for r in explorer.visible_rows()}
    pre = rows[task.preprocessor.name]
    assert pre["params"] == 0 and pre["has_children"]
    assert any("sequence length" in n for n in pre["notes"])
    before = {v.path for v in task.trainable_weights}
    hw.freeze(task)
    assert task.trainable_weights == []
    hw.unfreeze(task)
    assert {v.path for v in task.trainable_weights} == before
    assert tuple(task(task.preprocessor(["the quick fox"])).shape) == (1, 2)
