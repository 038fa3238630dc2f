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
5. :func:`hubwidgets.model.signatures.op_census` counts the op types of a signature's
   graph, the last-resort view.
"""

from __future__ import annotations

import os
import re
from typing import Any, Callable

from ..signatures import signatures_of
from ..tree import ModelTree, Node
from .common import full_name, make_variable_info, unique_names, variable_key

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
    from ..tf_compat import is_trackable

    if not is_trackable(obj):
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
                 keras_child: Callable[[Any, str, str], Node | None] | None = None,
                 rename_root: bool = True) -> None:
        self.tree = tree
        self.rename_root = rename_root
        from .keras_metadata import read_keras_metadata  # on first use: a Keras model's
        # walk never needs it (its import is a millisecond of a cold call)

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
            node.children = [*node.children, *group_by_scope(
                leftovers, node.path, self.tree, strip=_common_scope(leftovers))]
        state = self._training_state_node(node.path)
        if state is not None:
            node.children = [*node.children, state]
        node.signatures = signatures_of(obj)
        node.build_notes += [f"Keras metadata: {p}" for p in self.metadata.problems]
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
            built = self.keras_child(child, cpath, cname) if self.keras_child else None
            if built is not None:  # a live Keras layer inside the graph
                self.visited.add(id(child))
                self.placed.update(v.key for v in built.all_variables())
                children.append(built)
            else:
                child_node = self._node(child, cname, cpath, gpath)
                empty = not (child_node.variables or child_node.children)
                if not (empty and cname.startswith("_")):
                    children.append(child_node)
        node.children = children
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
                     _tree=self.tree, counted=False, build_notes=[
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
        state.children = children  # its variables never train: every node reads "frozen"
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
        node.children = groups
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
    node.name = new_name
    node.repath((old.rsplit("/", 1)[0] + "/" + new_name) if "/" in old else new_name)


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
                node.children = [*node.children, existing]
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


class RestoredSource:
    """What a tree of a restored SavedModel or ``tf.Module`` asks of its model."""

    def __init__(self, tree: ModelTree, obj: Any, flags_from_variables: bool) -> None:
        self.tree = tree
        self.obj = obj
        self.flags_from_variables = flags_from_variables

    def trainable_keys(self) -> set[int]:
        """A restored graph's variables keep their own (fixed) flags; a live ``tf.Module``
        says through ``trainable_variables``."""
        listed = None if self.flags_from_variables else \
            getattr(self.obj, "trainable_variables", None)  # a TF1 Hub module has none
        if listed is None:
            return {v.key for v in self.tree.variables() if v.can_train}
        return {variable_key(v) for v in listed}

    def fingerprint(self) -> tuple[Any, ...]:
        """Ids of the object's variables."""
        return tuple(variable_key(v) for v in _all_variables(self.obj))


class TrackableAdapter:
    """The adapter for restored SavedModels (``hub.load``, ``tf.saved_model.load``) and
    plain ``tf.Module`` s.  ``keras_child(tree, obj, path, name)`` builds the node of a live
    Keras layer met inside the graph, or returns None for anything else."""

    def __init__(self, keras_child: Callable[[ModelTree, Any, str, str], Node | None]) -> None:
        self.keras_child = keras_child

    def inspect(self, obj: Any, framework: str | None = None, source: str | None = None
                ) -> ModelTree:
        """The tree of ``obj``: object graph, Keras metadata, name scopes, signatures."""
        restored = _is_restored(obj)
        tree = ModelTree(obj, framework=framework or ("SavedModel" if restored else "tf.Module"),
                         source=source)
        walker = TrackableWalker(
            tree, saved_model_dir=source,
            keras_child=lambda child, path, name: self.keras_child(tree, child, path, name))
        variables = _all_variables(obj)
        if not restored and hasattr(obj, "name"):
            name = str(obj.name)
        else:
            scope = _common_scope(variables)
            name = (scope.split("/")[0] if scope else "") or \
                (os.path.basename(os.path.normpath(source)) if source else "module")
        tree.adapter = RestoredSource(tree, obj, restored or not variables)
        tree.root = walker.build(obj, name, name)
        return tree.refresh()
