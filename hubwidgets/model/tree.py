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
from typing import Any, Callable, Iterator, Literal, Union

Trainable = Union[bool, Literal["mixed"]]
Shape = Any  # a tuple of ints/None, or a list of such tuples for several inputs/outputs


@dataclass(frozen=True)
class TensorSpecInfo:
    """One input or output of a signature."""

    name: str
    dtype: str
    shape: tuple[int | None, ...] | None

    def __str__(self) -> str:
        return f"{self.name}: {self.dtype} {format_shape(self.shape)}"


@dataclass(frozen=True)
class SignatureInfo:
    """A SavedModel signature (or a restored function) with its inputs and outputs."""

    name: str
    inputs: tuple[TensorSpecInfo, ...]
    outputs: tuple[TensorSpecInfo, ...]

    def __str__(self) -> str:
        ins = ", ".join(str(s) for s in self.inputs)
        outs = ", ".join(str(s) for s in self.outputs)
        return f"{self.name}({ins}) -> {outs}"


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

    def __init__(self, items: list[Any], build: Callable[[Any], "Node"]) -> None:
        self._items = items
        self._build = build
        self._nodes: list["Node | None"] = [None] * len(items)

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        node = self._nodes[index]
        if node is None:
            node = self._nodes[index] = self._build(self._items[index])
        return node

    def __add__(self, other: list["Node"]) -> list["Node"]:
        return list(self) + list(other)


@dataclass(eq=False)
class Node:
    """A layer, sub-module or name scope of the model.

    ``children`` are built on first access, so a huge model opens without walking it all.
    """

    name: str
    path: str
    class_name: str
    variables: list[VariableInfo] = field(default_factory=list)
    input_shape: Shape = None
    output_shape: Shape = None
    signatures: list[SignatureInfo] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    obj: Any = field(default=None, repr=False)
    layer_trainable: bool | None = None
    shared: bool = False
    _children: Sequence["Node"] | None = field(default=None, repr=False)
    _expand: Callable[[], Sequence["Node"]] | None = field(default=None, repr=False)
    _subtree_vars: Callable[[], dict[int, tuple[int, bool, int]]] | None = field(default=None, repr=False)
    _tree: "ModelTree | None" = field(default=None, repr=False)
    _subtree_cache: dict[int, tuple[int, bool, int]] | None = field(default=None, repr=False)
    _counts_cache: tuple[Any, tuple[int, int, int, frozenset[bool]]] | None = \
        field(default=None, repr=False)

    # -- structure -------------------------------------------------------------------------
    @property
    def children(self) -> Sequence["Node"]:
        """Direct sub-layers / sub-modules, in model order."""
        if self._children is None:
            self._children = self._expand() if self._expand else []
            self._expand = None
        return self._children

    @property
    def has_children(self) -> bool:
        """Whether the node has sub-nodes, without building them when it can be avoided."""
        if self._children is not None:
            return bool(self._children)
        return self._expand is not None and bool(self.children)

    def walk(self) -> Iterator["Node"]:
        """This node and all below it, depth first, in model order."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))

    def all_variables(self) -> list[VariableInfo]:
        """Every variable in the subtree, each once, in tree order."""
        seen: set[int] = set()
        out: list[VariableInfo] = []
        for node in self.walk():
            for var in node.variables:
                if var.key not in seen:
                    seen.add(var.key)
                    out.append(var)
        return out

    # -- counts ----------------------------------------------------------------------------
    def _subtree(self) -> dict[int, tuple[int, bool, int]]:
        """key -> (size, can_train, nbytes) of each distinct variable in the subtree."""
        if self._subtree_cache is None:
            if self._subtree_vars is not None:
                self._subtree_cache = self._subtree_vars()
            else:
                merged = {v.key: (v.size, v.can_train, v.nbytes) for v in self.variables}
                for child in self.children:
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
        make a layer "mixed".  A node without such variables reports its Keras flag.
        """
        states = self._counts()[3]
        if len(states) == 2:
            return "mixed"
        if states:
            return next(iter(states))
        return True if self.layer_trainable is None else self.layer_trainable

    @property
    def nbytes(self) -> int:
        """Bytes held by the subtree's variables."""
        return self._counts()[2]

    def __repr__(self) -> str:
        return (f"Node(path={self.path!r}, class_name={self.class_name!r}, "
                f"params={self.params}, trainable={self.trainable!r})")


class ModelTree:
    """The whole model: a root :class:`Node`, lookups, and a text summary.

    ``obj`` is the live object the tree describes (for a path, what was loaded from it).
    """

    def __init__(self, obj: Any, framework: str, source: str | None = None) -> None:
        self.obj = obj
        self.framework = framework
        self.source = source
        self.root: Node = Node(name="", path="", class_name="")
        self.trainable_keys: set[int] = set()
        self._trainable_keys_fn: Callable[[], set[int]] = set
        self._census: dict[str, dict[str, int]] = {}

    # -- live state ------------------------------------------------------------------------
    def refresh(self) -> "ModelTree":
        """Re-read which variables are trainable from the live model."""
        self.trainable_keys = set(self._trainable_keys_fn())
        return self

    # -- lookups ---------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Node]:
        return self.root.walk()

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def variables(self) -> list[VariableInfo]:
        """Every variable of the model, each once."""
        return self.root.all_variables()

    def find(self, path_or_name: str) -> Node:
        """The node at ``path_or_name`` (a full path, or a unique name anywhere in the tree).

        Raises ``KeyError`` naming the closest matches when there is none, or listing the
        paths when a bare name is ambiguous.
        """
        wanted = str(path_or_name).strip("/")
        if wanted in ("", self.root.path):
            return self.root
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

    def _find_by_path(self, wanted: str) -> Node | None:
        root = self.root.path
        target = wanted if wanted == root or wanted.startswith(root + "/") else f"{root}/{wanted}"
        node: Node | None = self.root
        while node is not None and node.path != target:
            node = next((c for c in node.children
                         if target == c.path or target.startswith(c.path + "/")), None)
        return node

    def find_variable(self, path: str) -> VariableInfo:
        """The variable at ``path`` (as in ``VariableInfo.path``)."""
        for node in self:
            for var in node.variables:
                if var.path == path:
                    return var
        close = difflib.get_close_matches(path, [v.path for v in self.variables()], n=5, cutoff=0.4)
        hint = f" Closest matches: {', '.join(map(repr, close))}." if close else ""
        raise KeyError(f"No variable {path!r}.{hint}")

    # -- graph census ----------------------------------------------------------------------
    def op_census(self, signature: str | None = None) -> dict[str, int]:
        """How many ops of each type the signature's graph runs, most frequent first.

        The last-resort view of a module that has no layer structure.
        """
        from .adapters.trackable import op_census

        key = signature or ""
        if key not in self._census:
            self._census[key] = op_census(self.obj, signature)
        return self._census[key]

    # -- text ------------------------------------------------------------------------------
    def summary(self, max_depth: int | None = None) -> str:
        """A text table of the tree: nesting, class, output shape, own/total params, status."""
        from .summary import render_summary

        return render_summary(self, max_depth=max_depth)

    def __repr__(self) -> str:
        return (f"ModelTree(root={self.root.name!r}, framework={self.framework!r}, "
                f"params={self.root.params})")


# -- small helpers shared by adapters and widgets -----------------------------------------
def shape_size(shape: tuple[int | None, ...] | None) -> int:
    """Number of elements of a fully known shape, else 0."""
    if shape is None:
        return 0
    size = 1
    for dim in shape:
        if dim is None:
            return 0
        size *= int(dim)
    return size


def format_shape(shape: Shape) -> str:
    """``(None, 4)`` style text for a shape, or a list of shapes; "?" when unknown."""
    if shape is None:
        return "?"
    if isinstance(shape, list):
        return "[" + ", ".join(format_shape(s) for s in shape) + "]"
    dims = ", ".join("None" if d is None else str(d) for d in shape)
    return f"({dims},)" if len(shape) == 1 else f"({dims})"


def trainable_label(flag: Trainable) -> str:
    """The word used for a trainable flag in summaries and the explorer."""
    return {True: "trainable", False: "frozen"}.get(flag, "mixed")  # type: ignore[arg-type]
