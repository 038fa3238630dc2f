"""The counting invariant every tree must keep, checked on every node.

- own params <= total params;
- total = own + the counted children's totals, a variable reached from several places
  (a shared layer, an alias) counted once; the same for trainable params and bytes;
- the root total equals the oracle (Keras ``count_params()``, or the restored object's
  ``variables``), when one is given.

The "training state (not counted)" node of a restored SavedModel is the one child no parent
counts; inside it the same rules hold.
"""

from __future__ import annotations

from hubwidgets.model.adapters.trackable import is_training_state_node


def _distinct(node, counted_only=True):
    """key -> VariableInfo of every variable in the subtree, the uncounted child skipped."""
    found = {v.key: v for v in node.variables}
    for child in node.children:
        if counted_only and is_training_state_node(child):
            continue
        found.update(_distinct(child, counted_only))
    return found


def assert_tree_consistent(tree, oracle_params=None, oracle_trainable=None):
    """Check the invariant on every node of ``tree`` (and the oracle on its root)."""
    checked = 0
    for node in tree:
        own = node.own_params
        assert own == sum(v.size for v in node.variables), node.path
        assert len({v.key for v in node.variables}) == len(node.variables), \
            f"{node.path}: one variable listed twice among its own"
        assert own <= node.params, f"{node.path}: own {own} > total {node.params}"
        variables = _distinct(node)
        assert node.params == sum(v.size for v in variables.values()), \
            f"{node.path}: total {node.params} != own + children (shared once) " \
            f"{sum(v.size for v in variables.values())}"
        assert node.nbytes == sum(v.nbytes for v in variables.values()), node.path
        trainable = sum(v.size for v in variables.values() if v.trainable)
        assert node.trainable_params == trainable, \
            f"{node.path}: trainable {node.trainable_params} != {trainable}"
        assert 0 <= node.trainable_params <= node.params, node.path
        children_total = sum(c.params for c in node.children if not is_training_state_node(c))
        if not _has_sharing(node):
            assert node.params == own + children_total, \
                f"{node.path}: total {node.params} != own {own} + children {children_total}"
        for var in node.variables:
            assert var.path.startswith(node.path + "/"), (node.path, var.path)
        checked += 1
    assert checked == len(tree)
    if oracle_params is not None:
        assert tree.root.params == oracle_params, \
            f"root total {tree.root.params} != oracle {oracle_params}"
    if oracle_trainable is not None:
        assert tree.root.trainable_params == oracle_trainable, \
            f"root trainable {tree.root.trainable_params} != oracle {oracle_trainable}"
    return tree


def _has_sharing(node):
    """Whether some variable is reached from more than one place under ``node``."""
    seen, repeated = set(), False
    stack = [node]
    while stack:
        current = stack.pop()
        for var in current.variables:
            repeated |= var.key in seen
            seen.add(var.key)
        stack.extend(c for c in current.children if not is_training_state_node(c))
    return repeated


def oracle_of_restored(obj, saved_model_dir=None):
    """(params, trainable params) of a restored object from its own variable lists; for a
    restored ``tf.Module`` (which has none) the SavedModel's checkpoint, read by TensorFlow
    (every saved tensor but the object graph; trainable unknown: None)."""
    if hasattr(obj, "variables"):
        return (sum(int(v.shape.num_elements()) for v in obj.variables),
                sum(int(v.shape.num_elements()) for v in obj.trainable_variables))
    import os

    import numpy as np
    import tensorflow as tf

    entries = tf.train.list_variables(os.path.join(saved_model_dir, "variables", "variables"))
    return (sum(int(np.prod(shape)) for name, shape in entries
                if not name.startswith("_CHECKPOINTABLE_OBJECT_GRAPH")), None)
