"""Restored SavedModels, TF Hub modules and plain ``tf.Module`` s: the object-graph walk.

Such objects have no ``.layers``.  Their tree is recovered in this order:

1. the restored object graph (``layer_with_weights-0``, attribute names, variables), with
   layer names taken from the variables' name scopes or the restored functions' names and,
   when the SavedModel directory is known, names, classes and output shapes from its Keras
   metadata (:mod:`.keras_metadata`: ``keras_metadata.pb`` or the proto's own records);
2. optimizer and metric state (what training keeps beside the weights) goes into one
   :data:`TRAINING_STATE_NAME` node that no count above it includes;
3. variables the graph walk could not place are grouped by their name scopes;
4. the signatures (and restored ``__call__`` functions) are listed on the root;
5. :func:`op_census` counts the op types of a signature's graph, the last-resort view.
"""

from __future__ import annotations

import os
import re
from typing import Any, Callable

from ..tree import ModelTree, Node, SignatureInfo, TensorSpecInfo
from .common import full_name, make_variable_info, unique_names, variable_key
from .keras_metadata import read_keras_metadata

# children that only repeat what the walk finds elsewhere, or are not structure
AGGREGATES = frozenset({
    "variables", "trainable_variables", "non_trainable_variables", "regularization_losses",
    "keras_api", "signatures", "_self_saveable_object_factories", "_all_variables",
    "_misc_assets", "_default_save_signature", "_build_shapes_dict", "_inbound_nodes",
    "_outbound_nodes", "_losses", "_loss_ids", "_losses_override", "call_signature_parameters",
    "_call_context_args", "_call_has_context_arg", "_trainable_variables",
    "_non_trainable_variables", "_tracked", "_operations", "output_names", "_functional",
})
RESTORED_CLASS = "RestoredObject"
TRAINING_STATE_NAME = "training state (not counted)"
TRAINING_STATE_CLASS = "TrainingState"
# classes (anywhere in the MRO) of what training keeps beside a model's weights
_TRAINING_STATE_BASES = frozenset({
    "RestoredOptimizer", "OptimizerV2", "Optimizer", "BaseOptimizer", "TFOptimizer",
    "LossScaleOptimizer", "Metric"})
_LAYER_FUNCTION = re.compile(r"__inference_(.+)_layer_call_fn_\d+")


def _natural_key(name: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _children_of(obj: Any) -> list[tuple[str, Any]]:
    try:
        children = obj._trackable_children()  # noqa: SLF001 - the only walkable view of a restored graph
    except (AttributeError, TypeError, ValueError):
        return []
    return [(str(k), v) for k, v in children.items() if k not in AGGREGATES]


def _is_variable(obj: Any) -> bool:
    import tensorflow as tf

    return isinstance(obj, tf.Variable)


def _is_container(obj: Any) -> bool:
    return type(obj).__name__ in {"ListWrapper", "_DictWrapper", "_TupleWrapper", "NoDependency"}


def _is_structural(obj: Any) -> bool:
    """Objects worth a node: trackables that are not functions, assets or constants."""
    from tensorflow.python.trackable.base import Trackable

    if not isinstance(obj, Trackable):
        return False
    name = type(obj).__name__
    skip = ("Function", "Asset", "Constant", "SignatureMap", "CapturableResource", "Resource")
    return not any(s in name for s in skip) or name == "_UserObject"


def is_training_state(name: str, obj: Any) -> bool:
    """Whether ``obj``, reached as child ``name``, is optimizer or metric state: what a
    compiled, trained tf_keras model saves beside its weights (``iter``, ``m``/``v`` slots,
    ``total``/``count``), never part of the model's parameters."""
    if {c.__name__ for c in type(obj).__mro__} & _TRAINING_STATE_BASES:
        return True
    return _is_restored(obj) and name.rsplit(".", 1)[-1] == "optimizer"


def training_state_variables(obj: Any) -> list[Any]:
    """Every variable of an optimizer or metric, each once: its object-graph children and,
    for tf_keras' legacy optimizers, the slot variables only ``variables()`` returns."""
    found = {variable_key(v): v for v in reachable_variables(obj)}
    method = getattr(obj, "variables", None)
    if callable(method):
        try:
            for v in method():
                found.setdefault(variable_key(v), v)
        except Exception:  # noqa: BLE001 - a restored object may not support the call
            pass
    return list(found.values())


def is_training_state_node(node: Node) -> bool:
    """Whether ``node`` is the "training state (not counted)" node of a restored model."""
    return node.class_name == TRAINING_STATE_CLASS


class TrackableWalker:
    """Builds nodes for one restored object graph or ``tf.Module`` (eagerly: such graphs
    are small, and unplaced variables can only be known after the whole walk)."""

    def __init__(self, tree: ModelTree, saved_model_dir: str | None = None,
                 keras_child: Callable[[Any, str, str], Node] | None = None,
                 rename_root: bool = True) -> None:
        self.tree = tree
        self.rename_root = rename_root
        self.metadata = read_keras_metadata(saved_model_dir)
        self.keras_child = keras_child
        self.placed: set[int] = set()
        self.visited: set[int] = set()
        # (label, optimizer or metric, object-graph path)
        self.training_state: list[tuple[str, Any, tuple[str, ...]]] = []

    # -- public ---------------------------------------------------------------------------
    def build(self, obj: Any, name: str, path: str, class_name: str | None = None) -> Node:
        """The node for ``obj`` and everything under it, plus name-scope groups for the
        variables the graph does not reach, and the training state set apart."""
        node = self._node(obj, name, path, (), class_name)
        self._derive_names(node, "")
        self.training_state += _root_metrics(obj)
        state_vars = {variable_key(v) for _, o, _ in self.training_state
                      for v in training_state_variables(o)}
        leftovers = [v for v in _all_variables(obj)
                     if variable_key(v) not in self.placed and variable_key(v) not in state_vars]
        if leftovers:
            node._children = node.children + group_by_scope(
                leftovers, node.path, self.tree, strip=_common_scope(leftovers))
        state = self._training_state_node(node.path)
        if state is not None:
            node._children = list(node.children) + [state]
            node._subtree_vars = lambda: _counted_subtree(node)
        node.signatures = signatures_of(obj)
        node.notes = node.notes + [f"Keras metadata: {p}" for p in self.metadata.problems]
        return node

    # -- walk -----------------------------------------------------------------------------
    def _node(self, obj: Any, name: str, path: str, graph_path: tuple[str, ...],
              class_name: str | None = None) -> Node:
        self.visited.add(id(obj))
        meta = self.metadata.get(graph_path)
        if meta is not None and meta.name and (graph_path or self.rename_root):
            name = meta.name
            path = f"{path.rsplit('/', 1)[0]}/{meta.name}" if graph_path else meta.name
        node = Node(name=name, path=path, obj=obj, _tree=self.tree,
                    class_name=class_name or (meta.class_name if meta else "") or _class_name(obj),
                    output_shape=meta.output_shape if meta is not None else None)
        var_items: list[tuple[str, Any]] = []
        child_items: list[tuple[str, Any, tuple[str, ...]]] = []
        self._collect(obj, "", graph_path, var_items, child_items, set())
        variables = [var for _, var in var_items]
        self.placed.update(variable_key(v) for v in variables)
        children = []
        if _has_inner_scopes(variables):  # one object holding several scopes: show the scopes
            children = group_by_scope(variables, node.path, self.tree,
                                      strip=_common_scope(variables))
        else:
            for vname, var in zip(unique_names([n for n, _ in var_items]), variables, strict=True):
                node.variables.append(make_variable_info(
                    var, node.path, vname, self.tree, bool(getattr(var, "trainable", True))))
        for cname, child, gpath in sorted(child_items, key=lambda item: _natural_key(item[0])):
            if id(child) in self.visited:
                continue
            cpath = f"{node.path}/{cname}"
            if self.keras_child is not None and _is_keras_layer(child):
                self.visited.add(id(child))
                built = self.keras_child(child, cpath, cname)
                self.placed.update(v.key for v in built.all_variables())
                children.append(built)
            else:
                child_node = self._node(child, cname, cpath, gpath)
                empty = not (child_node.variables or child_node.children)
                if not (empty and cname.startswith("_")):
                    children.append(child_node)
        node._children = children
        return node

    def _collect(self, obj: Any, prefix: str, graph_path: tuple[str, ...],
                 var_items: list, child_items: list, taken: set[int]) -> None:
        for cname, child in _children_of(obj):
            label = f"{prefix}.{cname}" if prefix else cname
            gpath = graph_path + (cname,)
            if _is_variable(child):
                key = variable_key(child)
                if key not in self.placed and key not in taken:  # one variable, one place
                    taken.add(key)
                    var_items.append((label, child))
            elif _is_container(child):
                self._collect(child, label, gpath, var_items, child_items, taken)
            elif is_training_state(label, child) or self.metadata.is_training_state(gpath):
                if id(child) not in self.visited:
                    self.visited.add(id(child))
                    self.training_state.append((label, child, gpath))
            elif _is_structural(child):
                child_items.append((label, child, gpath))

    def _training_state_node(self, parent_path: str) -> Node | None:
        """One node holding every optimizer and metric variable, by object and scope."""
        if not self.training_state:
            return None
        path = f"{parent_path}/{TRAINING_STATE_NAME}"
        state = Node(name=TRAINING_STATE_NAME, path=path, class_name=TRAINING_STATE_CLASS,
                     _tree=self.tree, notes=[
                         "optimizer and metric variables saved with the model: not "
                         "parameters, so no count above this node includes them"])
        children, seen = [], set(self.placed)
        metas = [self.metadata.get(gpath) for _, _, gpath in self.training_state]
        labels = unique_names([_state_label(label, obj, meta) for (label, obj, _), meta
                               in zip(self.training_state, metas, strict=True)])
        for label, (_, obj, _), meta in zip(labels, self.training_state, metas, strict=True):
            variables = [v for v in training_state_variables(obj) if variable_key(v) not in seen]
            seen.update(variable_key(v) for v in variables)
            if variables:
                child = _state_object_node(obj, label, f"{path}/{label}", variables, self.tree)
                if meta is not None and meta.class_name:
                    child.class_name = meta.class_name
                children.append(child)
        state._children = children
        for sub in state.walk():
            sub.layer_trainable = False
        return state if children else None

    # -- names ----------------------------------------------------------------------------
    def _derive_names(self, node: Node, parent_scope: str) -> None:
        """Rename ``layer_with_weights-0`` style nodes after their variables' name scope, or
        (weightless layers, nested models) after the layer name in their restored
        functions' names."""
        scope = _common_scope([v.variable for v in node.all_variables()])
        for child in node.children:
            self._derive_names(child, scope)
        if not (node.class_name == RESTORED_CLASS or _is_restored(node.obj)) \
                or not re.fullmatch(r"(layer(_with_weights)?-\d+|_?layers\.\d+)", node.name):
            return
        if scope and scope != parent_scope:
            _rename(node, scope.rsplit("/", 1)[-1])
        else:
            layer_name = _layer_name_from_functions(node.obj)
            if layer_name:
                _rename(node, layer_name)


def _counted_subtree(node: Node) -> dict[int, tuple[int, bool, int]]:
    """A node's variables and its children's, without the training-state child's."""
    merged = {v.key: (v.size, v.can_train, v.nbytes) for v in node.variables}
    for child in node.children:
        if not is_training_state_node(child):
            merged.update(child._subtree())  # noqa: SLF001 - the tree's own count cache
    return merged


def _root_metrics(obj: Any) -> list[tuple[str, Any]]:
    """The compiled metrics a restored Keras model keeps under ``keras_api.metrics``."""
    api = dict(_children_of_all(obj)).get("keras_api")
    metrics = dict(_children_of_all(api)).get("metrics") if api is not None else None
    if metrics is None:
        return []
    return [(f"metrics.{k}", m, ("keras_api", "metrics", k))
            for k, m in _children_of_all(metrics)]


def _children_of_all(obj: Any) -> list[tuple[str, Any]]:
    try:
        return [(str(k), v) for k, v in obj._trackable_children().items()]  # noqa: SLF001
    except (AttributeError, TypeError, ValueError):
        return []


def _state_label(label: str, obj: Any, meta: Any) -> str:
    """``optimizer``, or a metric's own name (``loss``, ``mae``) where the metadata or the
    object says it, else ``metric 0``."""
    if meta is not None and meta.name:
        return meta.name
    if not label.startswith("metrics."):
        return label
    name = getattr(obj, "name", None)
    return name if isinstance(name, str) and name else f"metric {label.split('.', 1)[1]}"


def _state_object_node(obj: Any, name: str, path: str, variables: list[Any],
                       tree: ModelTree) -> Node:
    """An optimizer or metric: unscoped variables (``iteration``, ``total``) its own,
    scoped ones (``Adam/m/dense/kernel``) grouped by scope."""
    node = Node(name=name, path=path, class_name=_class_name(obj), obj=obj, _tree=tree)
    scoped = [v for v in variables if "/" in full_name(v)]
    unscoped = [v for v in variables if "/" not in full_name(v)]
    names = unique_names([full_name(v) for v in unscoped])
    for v, vname in zip(unscoped, names, strict=True):
        node.variables.append(make_variable_info(v, path, vname, tree, False))
    if scoped:
        groups = group_by_scope(scoped, path, tree)
        for group in groups:
            for sub in group.walk():
                for info in sub.variables:
                    info.can_train = False
        node._children = groups
    return node


def _layer_name_from_functions(obj: Any) -> str:
    """The layer name tf_keras put into a restored layer's traced functions
    (``__inference_relu_1_layer_call_fn_123``), or ""."""
    for _, child in _children_of_all(obj):
        for fn in getattr(child, "concrete_functions", None) or []:
            name = getattr(fn, "name", b"")
            text = name.decode() if isinstance(name, bytes) else str(name)
            match = _LAYER_FUNCTION.fullmatch(text)
            if match:
                return match.group(1)
    return ""


def _rename(node: Node, new_name: str) -> None:
    old = node.path
    new = (old.rsplit("/", 1)[0] + "/" + new_name) if "/" in old else new_name
    node.name = new_name
    for sub in node.walk():
        sub.path = new + sub.path[len(old):]
        for var in sub.variables:
            var.path = f"{sub.path}/{var.name}"


def _has_inner_scopes(variables: list[Any]) -> bool:
    """Whether the variables' names, below their common scope, still differ in scope."""
    if len(variables) < 2:
        return False
    depth = len(_common_scope(variables).split("/")) if _common_scope(variables) else 0
    inner = {"/".join(full_name(v).split("/")[depth:-1]) for v in variables}
    return inner != {""}


def reachable_variables(obj: Any) -> list[Any]:
    """Every ``tf.Variable`` reachable in ``obj``'s object graph, each once, in walk order
    (restored ``tf.Module`` s have no ``.variables`` attribute); what an optimizer or a
    metric below ``obj`` holds is training state, not the model's, and is left out."""
    found = {variable_key(v): v for v in _all_variables(obj)}
    seen, queue = {id(obj)}, [obj]
    while queue:
        current = queue.pop(0)
        for name, child in _children_of(current):
            if _is_variable(child):
                found.setdefault(variable_key(child), child)
            elif is_training_state(name, child):
                continue
            elif id(child) not in seen and (_is_container(child) or _is_structural(child)):
                seen.add(id(child))
                queue.append(child)
    return list(found.values())


def _common_scope(variables: list[Any]) -> str:
    """The name scope shared by all variables (``dense_1`` for ``dense_1/kernel:0``)."""
    scopes = [full_name(v).split("/")[:-1] for v in variables]
    if not scopes:
        return ""
    common = os.path.commonprefix(scopes)
    return "/".join(common)


def _class_name(obj: Any) -> str:
    name = type(obj).__name__
    return RESTORED_CLASS if name == "_UserObject" else name


def _is_restored(obj: Any) -> bool:
    return type(obj).__name__ == "_UserObject"


def _is_keras_layer(obj: Any) -> bool:
    from .keras import keras_generation

    return keras_generation(obj) is not None


def _all_variables(obj: Any) -> list[Any]:
    try:
        return list(getattr(obj, "variables", []) or [])
    except Exception:  # noqa: BLE001 - some restored objects raise on attribute access
        return []


def group_by_scope(variables: list[Any], path: str, tree: ModelTree, strip: str = "") -> list[Node]:
    """Nodes for the name scopes of ``variables`` (``a/b/kernel`` -> node a, node b)."""
    root = Node(name="", path=path, class_name="NameScope", _tree=tree)
    for v in variables:
        parts = full_name(v).split("/")
        if strip and full_name(v).startswith(strip + "/"):
            parts = full_name(v)[len(strip) + 1:].split("/")
        node = root
        for part in parts[:-1]:
            existing = next((c for c in node.children if c.name == part), None)
            if existing is None:
                existing = Node(name=part, path=f"{node.path}/{part}", class_name="NameScope",
                                _tree=tree)
                node._children = node.children + [existing]
            node = existing
        taken = {x.name for x in node.variables}
        vname = parts[-1]
        while vname in taken:
            vname += "_"
        node.variables.append(make_variable_info(v, node.path, vname, tree,
                                                 bool(getattr(v, "trainable", True))))
    return root.children + ([] if not root.variables else [_scope_leftover(root, path, tree)])


def _scope_leftover(root: Node, path: str, tree: ModelTree) -> Node:
    node = Node(name="(unscoped)", path=f"{path}/(unscoped)", class_name="NameScope", _tree=tree)
    for v in root.variables:
        node.variables.append(make_variable_info(v.variable, node.path, v.name, tree, v.can_train))
    return node


# -- signatures and the op census ----------------------------------------------------------
def _spec_info(name: str, spec: Any) -> TensorSpecInfo:
    from .common import dtype_name, shape_tuple

    shape = getattr(spec, "shape", None)
    rank_known = shape is not None and getattr(shape, "rank", 0) is not None
    return TensorSpecInfo(name=name, dtype=dtype_name(getattr(spec, "dtype", "?")),
                          shape=shape_tuple(shape) if rank_known else None)


def _flat_specs(structure: Any, prefix: str) -> list[TensorSpecInfo]:
    import tensorflow as tf

    if isinstance(structure, dict):
        return [s for k in sorted(structure) for s in _flat_specs(structure[k], str(k))]
    if isinstance(structure, (list, tuple)):
        if len(structure) == 1:
            return _flat_specs(structure[0], prefix)
        return [s for i, x in enumerate(structure) for s in _flat_specs(x, f"{prefix}_{i}")]
    if isinstance(structure, (tf.TensorSpec, tf.Tensor)) or hasattr(structure, "dtype"):
        name = getattr(structure, "name", None) if isinstance(structure, tf.TensorSpec) else None
        return [_spec_info(name or prefix, structure)]
    return []


def _signature(name: str, fn: Any) -> SignatureInfo:
    args, kwargs = fn.structured_input_signature
    inputs = _flat_specs(list(args), "input") + _flat_specs(dict(kwargs), "input")
    outputs = _flat_specs(fn.structured_outputs, "output")
    return SignatureInfo(name=name, inputs=tuple(inputs), outputs=tuple(outputs))


def signatures_of(obj: Any) -> list[SignatureInfo]:
    """The SavedModel signatures of ``obj`` and, when it has none, its restored ``__call__``."""
    out: list[SignatureInfo] = []
    sigs = getattr(obj, "signatures", None)
    if sigs is not None and hasattr(sigs, "items"):
        for name, fn in sorted(sigs.items()):
            try:
                out.append(_signature(name, fn))
            except Exception:  # noqa: BLE001 - a signature we cannot describe is skipped
                continue
    if not out:
        for fn in _call_functions(obj):
            try:
                out.append(_signature("__call__", fn))
            except Exception:  # noqa: BLE001
                continue
    return out


def _call_functions(obj: Any) -> list[Any]:
    call = obj.__call__ if callable(obj) else None
    concrete = getattr(call, "concrete_functions", None)
    if concrete:
        return list(concrete)
    try:
        return list(call._list_all_concrete_functions_for_serialization())  # noqa: SLF001
    except Exception:  # noqa: BLE001
        return []


def op_census(obj: Any, signature: str | None = None) -> dict[str, int]:
    """Count the op types in the graph of ``signature`` (default: the first signature, or
    the restored ``__call__``), including the functions that graph calls."""
    fn = _census_function(obj, signature)
    graph_def = fn.graph.as_graph_def()
    counts: dict[str, int] = {}
    for node in graph_def.node:
        counts[node.op] = counts.get(node.op, 0) + 1
    for function in graph_def.library.function:
        for node in function.node_def:
            counts[node.op] = counts.get(node.op, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _census_function(obj: Any, signature: str | None) -> Any:
    from ..errors import NotAModelError

    target = getattr(obj, "_func", None) or getattr(obj, "_reloaded_obj", None) or obj
    sigs = getattr(target, "signatures", None) or {}
    if signature is not None:
        if signature not in sigs:
            raise KeyError(f"No signature {signature!r}; this model has: {sorted(sigs) or 'none'}.")
        return sigs[signature]
    if sigs:
        return sigs[sorted(sigs)[0]]
    calls = _call_functions(target)
    if calls:
        return calls[0]
    raise NotAModelError("This object has no signatures or traced functions, so there is no "
                         "graph to count ops in. Save it with tf.saved_model.save(..., "
                         "signatures=...) or call a tf.function on it first.")
