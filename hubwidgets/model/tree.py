"""The model as a plain tree: ``ModelTree`` of ``Node`` s holding ``VariableInfo`` s.

These classes know nothing of TensorFlow's types beyond holding references to live
objects; the adapters in :mod:`hubwidgets.model.adapters` fill them in.  Parameter totals
and trainable flags are read from the live model through the tree, so they stay true after
``freeze`` / ``unfreeze`` (call :meth:`ModelTree.refresh` after changing ``trainable`` by hand).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from collections.abc import Sequence
from typing import Any, Callable, Iterator, Protocol

from .formatting import Shape, Trainable, format_shape, shape_size, trainable_label, unique_segment
from .signatures import SignatureInfo, TensorSpecInfo, op_census
from .layer_kinds import logical_weight_count
from .layer_kinds import lora_rank as _lora_rank
from .layer_kinds import quantization_mode as _quantization_mode
from .notes import live_notes
from .summary import render_summary

__all__ = ["ModelTree", "Node", "VariableInfo", "SignatureInfo", "TensorSpecInfo", "LazyNodes",
           "TreeSource", "Shape", "Trainable", "format_shape", "shape_size", "trainable_label",
           "unique_segment"]


@dataclass(eq=False)
class VariableInfo:
    """One variable of the model, as seen from one place in the tree.

    ``variable`` is the live variable; ``trainable`` is read live from the model.
    """

    name: str
    path: str
    shape: tuple[int | None, ...]
    dtype: str
    device: str
    nbytes: int
    can_train: bool
    variable: Any = field(repr=False)
    key: int = field(repr=False)
    _tree: "ModelTree | None" = field(default=None, repr=False)

    @property
    def size(self) -> int:
        """Number of elements (0 when a dimension is unknown)."""
        return shape_size(self.shape)

    @property
    def trainable(self) -> bool:
        """True when an optimizer step on the model would update this variable."""
        if self._tree is None:
            return self.can_train
        return self.key in self._tree.trainable_keys

    def numpy(self) -> Any:
        """A host copy of the value (this copies the whole tensor: prefer ``weight_stats``)."""
        return self.variable.numpy()


class LazyNodes(Sequence):
    """Children built one by one when first read: a layer list of 10,000 entries opens by
    building only the rows on screen.  Slicing returns a plain list."""

    def __init__(self, items: list[Any], build: Callable[[Any, int], "Node"]) -> None:
        self._items = items
        self._build = build
        self._nodes: list["Node | None"] = [None] * len(items)
        self.parent: "Node | None" = None  # set by the node that owns the list

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        node = self._nodes[index]
        if node is None:
            node = self._nodes[index] = self._build(self._items[index], index)
            if self.parent is not None:
                self.parent.adopt(node)
        return node


@dataclass(eq=False)
class Node:
    """A layer, sub-module or name scope of the model.

    ``children`` are built on first access, so a huge model opens without walking it all.
    ``path`` is unique in its tree: a sibling that repeats a name gets a ``[n]`` suffix
    (``m/hidden``, ``m/hidden[1]``), while ``name`` stays the layer's own name.
    """

    name: str
    path: str
    class_name: str
    variables: list[VariableInfo] = field(default_factory=list)
    input_shape: Shape = None
    output_shape: Shape = None
    signatures: list[SignatureInfo] = field(default_factory=list)
    build_notes: list[str] = field(default_factory=list)
    """Notes fixed when the node was built (unreadable metadata, training state...)."""
    obj: Any = field(default=None, repr=False)
    keras_layer: bool = False
    """Whether ``obj`` is a Keras layer, whose ``trainable`` flag the node reports."""
    module_wrapper: bool = False
    """Whether ``obj`` is a Keras layer holding a restored module (HubLayer, KerasLayer...)."""
    shared: bool = False
    counted: bool = True
    """False for what a SavedModel keeps beside the weights (optimizer and metric state): no
    count or statistic of a node above it includes its variables."""
    parent: "Node | None" = field(default=None, repr=False)
    variable_source: Callable[[], dict[int, tuple[int, bool, int]]] | None = \
        field(default=None, repr=False)
    """key -> (elements, can train, bytes) of the subtree's distinct variables, when the
    adapter knows them without walking the children."""
    _tree: "ModelTree | None" = field(default=None, repr=False)
    _children: Sequence["Node"] | None = field(default=None, repr=False)
    _expand: Callable[[], Sequence["Node"]] | None = field(default=None, repr=False)
    _subtree_cache: dict[int, tuple[int, bool, int]] | None = field(default=None, repr=False)
    _counts_cache: tuple[Any, tuple[int, int, int, frozenset[bool]]] | None = \
        field(default=None, repr=False)
    _notes_cache: tuple[Any, list[str]] | None = field(default=None, repr=False)

    # -- structure -------------------------------------------------------------------------
    @property
    def tree(self) -> "ModelTree | None":
        """The tree this node belongs to."""
        return self._tree

    @property
    def children(self) -> Sequence["Node"]:
        """Direct sub-layers / sub-modules, in model order."""
        if self._children is None:
            expand, self._expand = self._expand, None
            self.children = expand() if expand else []
        return self._children  # type: ignore[return-value]

    @children.setter
    def children(self, nodes: Sequence["Node"]) -> None:
        """Attach ``nodes`` below this one: parents set, paths made unique among siblings."""
        if isinstance(nodes, LazyNodes):
            nodes.parent = self
            self._children = nodes
            return
        nodes = list(nodes)
        taken: set[str] = set()
        for node in nodes:
            segment = node.path.rsplit("/", 1)[-1]
            if segment in taken:
                node.repath(f"{self.path}/{unique_segment(segment, taken)}")
            taken.add(node.path.rsplit("/", 1)[-1])
            self.adopt(node)
        self._children = nodes

    def expand_with(self, build: Callable[[], Sequence["Node"]]) -> None:
        """Build the children with ``build()`` when they are first read."""
        self._children, self._expand = None, build

    def adopt(self, node: "Node") -> None:
        """Make ``node`` a child of this one (its parent link and the tree's index)."""
        node.parent = self
        if self._tree is not None:
            self._tree.index_node(node)

    def repath(self, new_path: str) -> None:
        """Move this node (and everything built below it) to ``new_path``."""
        old = self.path
        for sub in self.walk():
            previous = sub.path
            sub.path = new_path + sub.path[len(old):]
            for var in sub.variables:
                var.path = f"{sub.path}/{var.name}"
            if self._tree is not None:
                self._tree.forget_path(previous, sub)
                self._tree.index_node(sub)

    @property
    def has_children(self) -> bool:
        """Whether the node has sub-nodes, without building them when it can be avoided."""
        if self._children is not None:
            return bool(self._children)
        return self._expand is not None and bool(self.children)

    def ancestors(self) -> list["Node"]:
        """The nodes above this one, from the root down."""
        chain: list[Node] = []
        node = self.parent
        while node is not None:
            chain.append(node)
            node = node.parent
        return chain[::-1]

    def walk(self, counted_only: bool = False) -> Iterator["Node"]:
        """This node and all below it, depth first, in model order (``counted_only``: not
        into the nodes below it that are not ``counted``)."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            children = node.children
            if counted_only:
                children = [c for c in children if c.counted]
            stack.extend(reversed(children))

    def all_variables(self) -> list[VariableInfo]:
        """Every variable in the subtree, each once, in tree order (below this node, the
        variables of nodes that are not ``counted`` are left out)."""
        seen: set[int] = set()
        out: list[VariableInfo] = []
        for node in self.walk(counted_only=True):
            for var in node.variables:
                if var.key not in seen:
                    seen.add(var.key)
                    out.append(var)
        return out

    # -- live state ------------------------------------------------------------------------
    @property
    def layer_trainable(self) -> bool | None:
        """The Keras layer's own ``trainable`` flag, read live (None for other nodes)."""
        if not self.keras_layer:
            return None
        return bool(getattr(self.obj, "trainable", True))

    @property
    def lora_rank(self) -> int | None:
        """The rank of the layer's LoRA adapters (``layer.enable_lora(rank)``), read live;
        None when it has none."""
        return _lora_rank(self.obj) if self.keras_layer else None

    @property
    def quantization(self) -> str | None:
        """Keras' ``quantization_mode`` of the layer ("int8", "int4", "float8", "gptq", ...),
        read live; None for a layer that holds no quantized weights."""
        return _quantization_mode(self.obj) if self.keras_layer else None

    @property
    def logical_weights(self) -> int | None:
        """How many weights a quantized layer's kernel stands for (an int4 kernel stores two
        per byte, so ``params``, Keras' count of stored elements, is about half); None when
        the layer is not quantized."""
        return logical_weight_count(self.obj) if self.keras_layer else None

    @property
    def notes(self) -> list[str]:
        """What the user should know about this node: notes fixed at build time, plus notes
        computed from the live model (kept, like the counts, until the tree re-reads the
        trainable state: :meth:`ModelTree.refresh`)."""
        keys = self._tree.trainable_keys if self._tree is not None else None
        if self._notes_cache is None or self._notes_cache[0] is not keys:
            self._notes_cache = (keys, list(self.build_notes) + live_notes(self))
        return list(self._notes_cache[1])

    # -- counts ----------------------------------------------------------------------------
    def _subtree(self) -> dict[int, tuple[int, bool, int]]:
        """key -> (size, can_train, nbytes) of each distinct variable in the subtree."""
        if self._subtree_cache is None:
            if self.variable_source is not None:
                self._subtree_cache = self.variable_source()
            else:
                merged = {v.key: (v.size, v.can_train, v.nbytes) for v in self.variables}
                for child in self.children:
                    if child.counted:
                        merged.update(child._subtree())
                self._subtree_cache = merged
        return self._subtree_cache

    def _counts(self) -> tuple[int, int, int, frozenset[bool]]:
        """(params, trainable params, bytes, trainable states of the variables that can
        train) in one pass over the subtree, kept until the trainable state is re-read."""
        keys = self._tree.trainable_keys if self._tree is not None else frozenset()
        cached = self._counts_cache
        if cached is not None and cached[0] is keys:
            return cached[1]
        params = trainable = nbytes = 0
        states: set[bool] = set()
        for key, (size, can_train, size_bytes) in self._subtree().items():
            params += size
            nbytes += size_bytes
            on = key in keys
            if on:
                trainable += size
            if can_train:
                states.add(on)
        counts = (params, trainable, nbytes, frozenset(states))
        self._counts_cache = (keys, counts)
        return counts

    @property
    def params(self) -> int:
        """Parameters in the subtree; a shared variable counts once."""
        return self._counts()[0]

    @property
    def trainable_params(self) -> int:
        """Parameters in the subtree that training would update."""
        return self._counts()[1]

    @property
    def non_trainable_params(self) -> int:
        """Parameters in the subtree that training leaves alone."""
        params, trainable, _, _ = self._counts()
        return params - trainable

    @property
    def own_params(self) -> int:
        """Parameters of this node's own variables, not its children's."""
        return sum(v.size for v in self.variables)

    @property
    def trainable(self) -> Trainable:
        """True, False or "mixed", over the variables that can train at all.

        Variables that never train (BatchNormalization's moving statistics, counters) do not
        make a layer "mixed".  A Keras layer without such variables reports its own flag; a
        part of a module whose variables can never train is False.
        """
        states = self._counts()[3]
        if len(states) == 2:
            return "mixed"
        if states:
            return next(iter(states))
        if not self.keras_layer and self.params:  # variables that can never train here
            return False
        flag = self.layer_trainable
        return True if flag is None else flag

    @property
    def nbytes(self) -> int:
        """Bytes held by the subtree's variables."""
        return self._counts()[2]

    def __repr__(self) -> str:
        return (f"Node(path={self.path!r}, class_name={self.class_name!r}, "
                f"params={self.params}, trainable={self.trainable!r})")


class TreeSource(Protocol):
    """What a tree asks of the adapter that built it (see :mod:`hubwidgets.model.adapters`)."""

    def trainable_keys(self) -> set[int]:
        """Keys of the variables an optimizer step would update now."""

    def fingerprint(self) -> tuple[Any, ...]:
        """A cheap value that changes when the model's structure changes."""


class ModelTree:
    """The whole model: a root :class:`Node`, lookups, and a text summary.

    ``obj`` is the live object the tree describes (for a path, what was loaded from it);
    ``source`` the adapter that built it.  What is derived from the model and worth keeping
    lives in the model session's cache
    (:func:`hubwidgets.model.session.cached_for_tree`), not here; nodes keep their counts and
    notes until :meth:`refresh` re-reads the trainable state (a new ``trainable_keys``).
    """

    def __init__(self, obj: Any, framework: str, source: str | None = None) -> None:
        self.obj = obj
        self.framework = framework
        self.source = source
        self.adapter: TreeSource | None = None
        self._root: Node = Node(name="", path="", class_name="")
        self.trainable_keys: frozenset[int] = frozenset()
        self._index: dict[str, Node] = {}
        self._variables_by_path: dict[str, VariableInfo] | None = None
        self._all_variables: list[VariableInfo] | None = None
        self._census: dict[str, dict[str, int]] = {}

    @property
    def root(self) -> Node:
        """The node of the model itself."""
        return self._root

    @root.setter
    def root(self, node: Node) -> None:
        self._root = node
        node.parent = None
        self.index_node(node)

    def index_node(self, node: Node) -> None:
        """Record ``node`` for O(1) look-ups by path (nodes call this when they are built)."""
        self._index[node.path] = node
        self._variables_by_path = None
        self._all_variables = None

    def forget_path(self, path: str, node: Node) -> None:
        """Drop ``path`` from the index when it points to ``node`` (the node moved)."""
        if self._index.get(path) is node:
            del self._index[path]

    # -- live state ------------------------------------------------------------------------
    def refresh(self) -> "ModelTree":
        """Re-read which variables are trainable from the live model: a new
        ``trainable_keys`` object every time, so what nodes keep from the last read (counts,
        notes) is made again."""
        source = self.adapter
        keys = source.trainable_keys() if source is not None else set(self.trainable_keys)
        self.trainable_keys = frozenset(keys)
        return self

    def fingerprint(self) -> tuple[Any, ...]:
        """A value that changes when the live model's structure changes."""
        return self.adapter.fingerprint() if self.adapter is not None else ()

    # -- lookups ---------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Node]:
        return self.root.walk()

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def variables(self) -> list[VariableInfo]:
        """Every variable of the model, each once (the tree's structure is fixed: a model
        whose layers changed gets a new tree, so the list is kept)."""
        if self._all_variables is None:
            self._all_variables = self.root.all_variables()
        return list(self._all_variables)

    def ancestors(self, path_or_node: "str | Node") -> list[Node]:
        """The nodes above a node, from the root down."""
        node = path_or_node if isinstance(path_or_node, Node) else self.find(path_or_node)
        return node.ancestors()

    def find(self, path_or_name: str) -> Node:
        """The node at ``path_or_name`` (a full path, or a unique name anywhere in the tree).

        Raises ``KeyError`` naming the closest matches when there is none, or listing the
        paths when a bare name is ambiguous.
        """
        if not isinstance(path_or_name, str):
            raise TypeError(f"A layer path or name is a string, got {type(path_or_name).__name__}.")
        wanted = path_or_name.strip("/")
        if wanted in ("", self.root.path):
            return self.root
        if "/" not in wanted:  # a bare name: it must name one layer, wherever it is
            by_name = self.named(wanted)
            if len(by_name) == 1:
                return by_name[0]
            if len(by_name) > 1:
                paths = ", ".join(repr(n.path) for n in by_name[:8])
                raise KeyError(f"{wanted!r} names {len(by_name)} layers; pass a full path: "
                               f"{paths}")
        node = self._find_by_path(wanted)
        if node is not None:
            return node
        by_name = [n for n in self if n.name == wanted]
        if len(by_name) == 1 or (by_name and all(n.obj is by_name[0].obj for n in by_name)):
            return by_name[0]
        if by_name:
            paths = ", ".join(repr(n.path) for n in by_name[:8])
            raise KeyError(f"{wanted!r} names {len(by_name)} nodes; pass a full path: {paths}")
        candidates = {n.path for n in self} | {n.name for n in self}
        close = difflib.get_close_matches(wanted, sorted(candidates), n=5, cutoff=0.4)
        hint = f" Closest matches: {', '.join(map(repr, close))}." if close else ""
        raise KeyError(f"No layer or module {wanted!r} in {self.root.name!r}.{hint}")

    def named(self, name: str) -> list[Node]:
        """The nodes called ``name``, one per distinct layer or module (a shared layer
        reached twice counts once).  The model's own layers come before what a SavedModel
        keeps beside them: when some are the model's and others lie under "training state
        (not counted)" (optimizer slot groups reuse layer names), only the model's are
        named; the others are reached by their full path."""
        found: list[Node] = []
        for node in self:
            if node.name == name and not any(node.obj is not None and node.obj is f.obj
                                             for f in found):
                found.append(node)
        own = [n for n in found if _in_the_model(n)]
        return own if own else found

    def _find_by_path(self, wanted: str) -> Node | None:
        root = self.root.path
        target = wanted if wanted == root or wanted.startswith(root + "/") else f"{root}/{wanted}"
        known = self._index.get(target)
        if known is not None and known.path == target:
            return known
        node: Node | None = self.root  # descend, building only the nodes on the way
        while node is not None and node.path != target:
            node = next((c for c in node.children
                         if target == c.path or target.startswith(c.path + "/")), None)
        return node

    def find_variable(self, path: str) -> VariableInfo:
        """The variable at ``path`` (as in ``VariableInfo.path``)."""
        if self._variables_by_path is None:
            table: dict[str, VariableInfo] = {}
            for node in self:
                for var in node.variables:
                    table.setdefault(var.path, var)
            self._variables_by_path = table
        found = self._variables_by_path.get(path)
        if found is not None:
            return found
        close = difflib.get_close_matches(path, list(self._variables_by_path), n=5, cutoff=0.4)
        hint = f" Closest matches: {', '.join(map(repr, close))}." if close else ""
        raise KeyError(f"No variable {path!r}.{hint}")

    # -- graph census ----------------------------------------------------------------------
    def op_census(self, signature: str | None = None) -> dict[str, int]:
        """How many ops of each type the signature's graph runs, most frequent first.

        The last-resort view of a module that has no layer structure.
        """
        key = signature or ""
        if key not in self._census:
            self._census[key] = op_census(self.obj, signature)
        return self._census[key]

    # -- text ------------------------------------------------------------------------------
    def summary(self, max_depth: int | None = None) -> str:
        """A text table of the tree: nesting, class, output shape, own/total params, status."""
        return render_summary(self, max_depth=max_depth)

    def _repr_html_(self) -> str:
        """The tree as nested ``<details>`` (collapsible without JavaScript; names escaped):
        what a notebook, nbconvert, GitHub or nbviewer shows for a ``ModelTree``."""
        from ..render.tree_html import static_tree_fragment

        return static_tree_fragment(self)

    def __repr__(self) -> str:
        return (f"ModelTree(root={self.root.name!r}, framework={self.framework!r}, "
                f"params={self.root.params})")


def _in_the_model(node: Node) -> bool:
    """Whether no node above ``node`` (or itself) is one left out of the counts."""
    current: Node | None = node
    while current is not None:
        if not current.counted:
            return False
        current = current.parent
    return True
