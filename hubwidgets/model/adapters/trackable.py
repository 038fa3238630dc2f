"""Restored SavedModels, TF Hub modules and plain ``tf.Module`` s: the object-graph walk.

Such objects have no ``.layers``.  Their tree is recovered in this order:

1. the restored object graph (``layer_with_weights-0``, attribute names, variables), with
   layer names taken from the variables' name scopes and, when the SavedModel directory is
   known, names and classes from its ``keras_metadata.pb``;
2. variables the graph walk could not place are grouped by their name scopes;
3. the signatures (and restored ``__call__`` functions) are listed on the root;
4. :func:`hubwidgets.model.signatures.op_census` counts the op types of a signature's
   graph, the last-resort view.
"""

from __future__ import annotations

import json
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


def keras_metadata(saved_model_dir: str | None) -> dict[tuple[str, ...], tuple[str, str]]:
    """Map object-graph paths (tuples of child names) to (layer name, class) from the
    ``keras_metadata.pb`` that tf_keras writes beside ``saved_model.pb``; empty if absent."""
    if not saved_model_dir:
        return {}
    meta_file = os.path.join(saved_model_dir, "keras_metadata.pb")
    graph_file = os.path.join(saved_model_dir, "saved_model.pb")
    if not (os.path.isfile(meta_file) and os.path.isfile(graph_file)):
        return {}
    try:
        from tensorflow.core.protobuf import saved_model_pb2
        from tf_keras.protobuf import saved_metadata_pb2

        meta = saved_metadata_pb2.SavedMetadata()
        with open(meta_file, "rb") as f:
            meta.ParseFromString(f.read())
        saved = saved_model_pb2.SavedModel()
        with open(graph_file, "rb") as f:
            saved.ParseFromString(f.read())
    except Exception:  # noqa: BLE001 - metadata is a bonus; the walk works without it
        return {}
    by_id: dict[int, tuple[str, str]] = {}
    for node in meta.nodes:
        try:
            info = json.loads(node.metadata)
        except ValueError:
            continue
        by_id[node.node_id] = (str(info.get("name", "")), str(info.get("class_name", "")))
    graph = saved.meta_graphs[0].object_graph_def
    first: dict[int, tuple[str, ...]] = {0: ()}
    every: dict[tuple[str, ...], int] = {(): 0}
    queue = [0]
    while queue:  # breadth first; every alias of a child (layer-0, layer_with_weights-0) kept
        node_id = queue.pop(0)
        for ref in graph.nodes[node_id].children:
            every[first[node_id] + (ref.local_name,)] = ref.node_id
            if ref.node_id not in first:
                first[ref.node_id] = first[node_id] + (ref.local_name,)
                queue.append(ref.node_id)
    return {path: by_id[i] for path, i in every.items() if i in by_id}


class TrackableWalker:
    """Builds nodes for one restored object graph or ``tf.Module`` (eagerly: such graphs
    are small, and unplaced variables can only be known after the whole walk)."""

    def __init__(self, tree: ModelTree, saved_model_dir: str | None = None,
                 keras_child: Callable[[Any, str, str], Node | None] | None = None,
                 rename_root: bool = True) -> None:
        self.tree = tree
        self.rename_root = rename_root
        self.metadata = keras_metadata(saved_model_dir)
        self.keras_child = keras_child
        self.placed: set[int] = set()
        self.visited: set[int] = set()

    # -- public ---------------------------------------------------------------------------
    def build(self, obj: Any, name: str, path: str, class_name: str | None = None) -> Node:
        """The node for ``obj`` and everything under it, plus name-scope groups for the
        variables the graph does not reach."""
        node = self._node(obj, name, path, (), class_name)
        self._derive_names(node, "")
        leftovers = [v for v in _all_variables(obj) if variable_key(v) not in self.placed]
        if leftovers:
            node.children = [*node.children, *group_by_scope(
                leftovers, node.path, self.tree, strip=_common_scope(leftovers))]
        node.signatures = signatures_of(obj)
        return node

    # -- walk -----------------------------------------------------------------------------
    def _node(self, obj: Any, name: str, path: str, graph_path: tuple[str, ...],
              class_name: str | None = None) -> Node:
        self.visited.add(id(obj))
        meta_name, meta_class = self.metadata.get(graph_path, ("", ""))
        if meta_name and (graph_path or self.rename_root):
            name = meta_name
            path = f"{path.rsplit('/', 1)[0]}/{meta_name}" if graph_path else meta_name
        node = Node(name=name, path=path, obj=obj, _tree=self.tree,
                    class_name=class_name or meta_class or _class_name(obj))
        var_items: list[tuple[str, Any]] = []
        child_items: list[tuple[str, Any, tuple[str, ...]]] = []
        self._collect(obj, "", graph_path, var_items, child_items)
        variables = [var for _, var in var_items]
        self.placed.update(variable_key(v) for v in variables)
        children = []
        if _has_inner_scopes(variables):  # one object holding several scopes: show the scopes
            children = group_by_scope(variables, node.path, self.tree,
                                      strip=_common_scope(variables))
        else:
            for vname, var in zip(unique_names([n for n, _ in var_items]), variables):
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
                 var_items: list, child_items: list) -> None:
        for cname, child in _children_of(obj):
            label = f"{prefix}.{cname}" if prefix else cname
            gpath = graph_path + (cname,)
            if _is_variable(child):
                if variable_key(child) not in self.placed:
                    var_items.append((label, child))
            elif _is_container(child):
                self._collect(child, label, gpath, var_items, child_items)
            elif _is_structural(child):
                child_items.append((label, child, gpath))

    # -- names ----------------------------------------------------------------------------
    def _derive_names(self, node: Node, parent_scope: str) -> None:
        """Rename ``layer_with_weights-0`` style nodes after their variables' name scope."""
        scope = _common_scope([v.variable for v in node.all_variables()])
        for child in node.children:
            self._derive_names(child, scope)
        if node.class_name == RESTORED_CLASS and scope and scope != parent_scope \
                and re.fullmatch(r"(layer(_with_weights)?-\d+|_?layers\.\d+)", node.name):
            _rename(node, scope.rsplit("/", 1)[-1])


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
    (restored ``tf.Module`` s have no ``.variables`` attribute)."""
    found = {variable_key(v): v for v in _all_variables(obj)}
    seen, queue = {id(obj)}, [obj]
    while queue:
        current = queue.pop(0)
        for _, child in _children_of(current):
            if _is_variable(child):
                found.setdefault(variable_key(child), child)
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
