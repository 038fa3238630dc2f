"""Keras 3 and tf_keras (Keras 2) models and layers, including ``hub.KerasLayer`` and
``keras.layers.TFSMLayer``, whose insides are restored SavedModels.

Both generations share one walk: ``Model.layers`` (or a layer's tracked sub-layers) for the
children, a layer's ``weights`` minus its children's for its own variables, and the model's
``trainable_weights`` for what training updates.  Children are built lazily.
"""

from __future__ import annotations

from typing import Any, Iterator

from ..errors import UnbuiltModelError
from ..formatting import unique_segment
from ..layer_kinds import is_preprocessing, preprocessing_notes, task_preprocessor
from ..tree import LazyNodes, ModelTree, Node, Shape, shape_size
from .common import (dtype_name, is_keras3_variable, itemsize, keras3_module,
                     make_variable_info, short_name, shape_tuple, tf_keras_module,
                     unique_names, variable_key)
from .trackable import TrackableWalker

KERAS3 = "Keras 3"
TF_KERAS = "tf_keras"
# Keras layers that hold a restored SavedModel, by class (matched along the MRO), and the
# attribute holding the module
HUB_KERAS_LAYER, HUB_LAYER = "_func", "module"  # hub.KerasLayer's and HubLayer's module attribute
MODULE_WRAPPERS = {
    "tensorflow_hub.keras_layer.KerasLayer": HUB_KERAS_LAYER,
    "keras.src.export.tfsm_layer.TFSMLayer": "_reloaded_obj",
    "hubwidgets.model.hub_layer.HubLayer": HUB_LAYER,
}


def keras_generation(obj: Any) -> str | None:
    """"Keras 3" for a Keras 3 layer or model, "tf_keras" for a tf_keras one (hub.KerasLayer
    included), else None; imports neither package.  Defined here, beside the Keras adapter
    that uses it; ``adapters.registry``, the adapters' entry point, exports it."""
    keras = keras3_module()
    if keras is not None and isinstance(obj, keras.layers.Layer):
        return KERAS3
    tfk = tf_keras_module()
    if tfk is not None and isinstance(obj, tfk.layers.Layer):
        return TF_KERAS
    return None


def wrapped_module_attr(layer: Any) -> str | None:
    """The attribute holding the restored SavedModel of a module wrapper (hub.KerasLayer,
    TFSMLayer, hubwidgets.HubLayer, or a subclass), else None."""
    for cls in type(layer).__mro__:
        attr = MODULE_WRAPPERS.get(f"{cls.__module__}.{cls.__qualname__}")
        if attr is not None:
            return attr
    return None


def module_trainable_keys(layer: Any) -> frozenset[int] | None:
    """Keys of the variables a Hub layer may ever train (its module's trainable set): a
    ``HubLayer``'s ``trainable_keys``; for ``hub.KerasLayer``, its module's
    ``trainable_variables`` list, the only variables it adds as trainable weights (none when
    the module has no such list), whatever each variable's own flag says.  None for other
    layers (their variables' own flags decide)."""
    attr = wrapped_module_attr(layer)
    if attr == HUB_LAYER:
        return getattr(layer, "trainable_keys", None)
    if attr == HUB_KERAS_LAYER and hasattr(layer, HUB_KERAS_LAYER):
        listed = getattr(getattr(layer, HUB_KERAS_LAYER), "trainable_variables", None)
        return frozenset(variable_key(v) for v in listed or ())
    return None


def is_module_wrapper(layer: Any) -> bool:
    """True for the layers that hold a restored SavedModel: hub.KerasLayer, TFSMLayer,
    hubwidgets.HubLayer."""
    return wrapped_module_attr(layer) is not None and keras_generation(layer) is not None


def sibling_segments(names: list[str]) -> list[str]:
    """Path segments for sibling layers: their names, a repeated one with a ``[n]`` suffix."""
    taken: set[str] = set()
    out = []
    for name in names:
        segment = name if name not in taken else unique_segment(name, taken)
        taken.add(segment)
        out.append(segment)
    return out


def _is_model(layer: Any) -> bool:
    return isinstance(layer, _model_classes())


def _model_classes() -> tuple[type, ...]:
    """keras.Model and tf_keras.Model, of the packages imported so far (looked up once)."""
    modules = (keras3_module(), tf_keras_module())
    if _MODEL_CLASSES.get("modules") != modules:
        _MODEL_CLASSES["modules"] = modules
        _MODEL_CLASSES["classes"] = tuple(m.Model for m in modules if m is not None)
    return _MODEL_CLASSES["classes"]


_MODEL_CLASSES: dict[str, Any] = {}


def direct_sublayers(layer: Any, model_classes: tuple[type, ...] | None = None) -> list[Any]:
    """The layers one level below ``layer``, in model order."""
    if isinstance(layer, model_classes if model_classes is not None else _model_classes()):
        return list(layer.layers)
    try:
        return list(layer._flatten_layers(include_self=False, recursive=False))  # noqa: SLF001
    except AttributeError:
        return []


def _weights(layer: Any) -> list[Any]:
    try:
        return list(layer.weights)
    except (AttributeError, ValueError):
        return []


def _shape_of(layer: Any, attr: str) -> Any:
    """``layer.output.shape`` (or input) when the layer was called symbolically, else None."""
    tensor = None
    for name in (attr, attr + "s") if _is_model(layer) else (attr,):
        try:
            tensor = getattr(layer, name)
        except Exception:  # noqa: BLE001 - Keras raises several types for "never called"
            continue
        if tensor is not None:
            break
    if tensor is None:
        return None
    if isinstance(tensor, (list, tuple)):
        shapes = [shape_tuple(getattr(t, "shape", None)) for t in tensor]
        return shapes if len(shapes) != 1 else shapes[0]
    if isinstance(tensor, dict):
        return [shape_tuple(getattr(t, "shape", None)) for t in tensor.values()]
    shape = getattr(tensor, "shape", None)
    return None if shape is None else shape_tuple(shape)


def built_shapes(layer: Any, keras3: bool) -> tuple[Shape, Shape]:
    """(input, output) shapes of a layer that was called eagerly (a layer of a subclassed
    model, which records no output): the shape it was built for, and what its own
    ``compute_output_shape`` says for it (as ``model.summary()`` of Keras 3 does).  Never runs
    the layer: a layer that only Keras' generic fallback could answer for (a trace of
    ``call``) gets no output shape; nor does one never called or built.  Never raises."""
    try:
        if keras3:
            return _keras3_built_shapes(layer)
        return _tf_keras_built_shapes(layer)
    except Exception:  # noqa: BLE001 - a layer's own shape code may raise anything
        return None, None


def _declared_output_shape(layer: Any) -> Shape:
    """A ``HubLayer``'s ``output_shape`` (given without the batch dimension, checked on every
    call) with an unknown batch; None when none was given.  (It records no build shape, and
    its ``compute_output_shape`` without one would trace the module.)"""
    try:
        declared = layer.output_shape
        if declared is None:
            return None
        if isinstance(declared, dict):
            declared = list(declared.values())
        if _is_one_shape(declared):
            return (None, *declared)
        return _as_shape([(None, *shape) for shape in declared])
    except Exception:  # noqa: BLE001 - None, or a nest this does not read
        return None


def _keras3_built_shapes(layer: Any) -> tuple[Shape, Shape]:
    built = getattr(layer, "_build_shapes_dict", None)
    if not isinstance(built, dict) or not built:
        return None, None
    single = next(iter(built.values())) if len(built) == 1 else None
    input_shape = _as_shape(single) if single is not None else None
    if getattr(type(layer).compute_output_shape, "_is_default", False):
        return input_shape, None  # Keras 3's default only raises NotImplementedError
    with keras3_module().StatelessScope():  # a variable assigned in there stays as it is
        output = layer.compute_output_shape(single) if single is not None \
            else layer.compute_output_shape(**built)
    return input_shape, _as_shape(output)


def _tf_keras_built_shapes(layer: Any) -> tuple[Shape, Shape]:
    built = getattr(layer, "_build_input_shape", None)
    if built is None:
        return None, None
    input_shape = _as_shape(built)
    tfk = tf_keras_module()
    if tfk is None or type(layer).compute_output_shape is tfk.layers.Layer.compute_output_shape:
        return input_shape, None  # its default calls the layer on placeholders
    import tensorflow as tf

    # in graph mode, tf_keras' default (reached through ``super()``) raises instead of
    # calling the layer, which would add nodes to it; built-in layers only do arithmetic
    with tf.Graph().as_default():  # as tuples: hub.KerasLayer's cannot read a TensorShape
        output = layer.compute_output_shape(built if input_shape is None else input_shape)
    return input_shape, _as_shape(output)


def _as_shape(value: Any) -> Shape:
    """A shape (TensorShape, tuple of ints / None) as a tuple, several (a list, tuple or dict
    of shapes) as a list of tuples; None when ``value`` is neither or a rank is unknown."""
    if _is_one_shape(value):
        if getattr(value, "rank", 0) is None:
            return None
        return shape_tuple(value)
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)) and value and all(_is_one_shape(v) for v in value):
        shapes = [_as_shape(v) for v in value]
        if any(s is None for s in shapes):
            return None
        return shapes if len(shapes) != 1 else shapes[0]
    return None


def _is_one_shape(value: Any) -> bool:
    if hasattr(value, "as_list"):  # a TensorShape
        return True
    return isinstance(value, (tuple, list)) and all(
        d is None or (isinstance(d, int) and not isinstance(d, bool)) for d in value)


def check_built(layer: Any) -> None:
    """Raise :class:`UnbuiltModelError` with the fix when ``layer`` has no weights yet."""
    if getattr(layer, "built", True) or _weights(layer):
        return
    kind = "model" if _is_model(layer) else "layer"
    if _is_model(layer) and not getattr(layer, "layers", None):
        raise UnbuiltModelError(
            f"The model {layer.name!r} ({type(layer).__name__}) has no layers yet, so there "
            "is nothing to look inside. Add layers (e.g. model.add(keras.layers.Dense(8))), "
            "then call hubwidgets.inspect again.")
    raise UnbuiltModelError(
        f"The {kind} {layer.name!r} ({type(layer).__name__}) has not been built yet, so its "
        f"weights do not exist. Call it once on a batch of example inputs, e.g. "
        f"`{kind}(x[:1])`, or build it with `{kind}.build(input_shape)` (the shape of a batch, "
        f"e.g. `(None, number_of_features)`). Then call hubwidgets.inspect again.")


class KerasBuilder:
    """Turns a Keras layer graph into lazily expanded :class:`Node` s."""

    def __init__(self, tree: ModelTree, root: Any, generation: str) -> None:
        self.tree = tree
        self.root = root
        self.generation = generation
        self.parent_count: dict[int, int] = {}
        self.variables: dict[int, Any] = {}  # key -> variable, every distinct one, in order
        self.sizes: dict[int, tuple[int, int]] = {}  # key -> (elements, bytes)
        self.sublayers: dict[int, list[Any]] = {}  # id(layer) -> its sub-layers, when any
        self.can_train: set[int] = set()
        self._walk(root)

    def _walk(self, root: Any) -> None:
        """One pass over every layer: how many parents each has, every variable (from the
        layers' own lists, not Keras' recursive ``weights``) with its size, which can train.
        This is the one step of a first display that grows with the model, so it is kept
        tight."""
        keras3 = self.generation == KERAS3
        variables, sizes, parent_count = self.variables, self.sizes, self.parent_count
        can_train, shape = self.can_train, []
        hub_layers: list[Any] = []  # tf_keras: hub.KerasLayers (their module says what trains)
        is_hub_layer: dict[type, bool] = {}

        def add(v: Any, trains: bool) -> None:
            key = variable_key(v)
            if key not in variables:
                variables[key] = v
                sizes[key] = _size_and_bytes(v)
            if trains:
                can_train.add(key)

        for layer, subs in _depth_first(root, keras3):
            if subs:
                self.sublayers[id(layer)] = subs
            lists = _own_variable_lists(layer, subs)
            shape.append(_shape_entry(layer, subs, lists))
            if lists is not None:  # Keras 3's first list: trainable at creation
                for v in lists[0]:
                    add(v, keras3)
                for v in lists[1]:
                    add(v, False)
            else:
                trains = {id(v) for v in getattr(layer, "_trainable_variables", ())} \
                    if keras3 else ()
                for v in _own_weights(layer, subs):
                    add(v, id(v) in trains)
            for sub in subs:
                parent_count[id(sub)] = parent_count.get(id(sub), 0) + 1
            if not keras3:
                kind = type(layer)
                if kind not in is_hub_layer:
                    is_hub_layer[kind] = wrapped_module_attr(layer) == HUB_KERAS_LAYER
                if is_hub_layer[kind]:
                    hub_layers.append(layer)
        self.walked_fingerprint = tuple(shape)  # what fingerprint() gives for this structure
        if not keras3:
            self.can_train = {k for k, v in variables.items() if getattr(v, "trainable", False)}
            self.can_train -= _outside_trainable_sets(hub_layers)
        else:  # variables tracked outside layers' lists (TFSMLayer's, for one)
            self.can_train.update(k for k, v in variables.items()
                                  if k not in self.can_train and getattr(v, "trainable", False)
                                  and not is_keras3_variable(v))

    def trainable_keys(self) -> set[int]:
        """What an optimizer step would update now.  Keras 3 keeps the state on each variable
        (``Layer.trainable_weights`` is ``[v for v in weights if v.trainable]`` when the
        layer is trainable); tf_keras decides layer by layer, so ask it."""
        if self.generation == KERAS3 and not _overrides_trainable_weights(self.root):
            if not self.root.trainable:
                return set()
            return {k for k, v in self.variables.items()
                    if getattr(v, "_trainable", None) or v.trainable}
        return {variable_key(v) for v in self.root.trainable_weights}

    def fingerprint(self) -> tuple[Any, ...]:
        """See :func:`layer_fingerprint`."""
        return layer_fingerprint(self.root, self.generation)

    def node(self, layer: Any, path: str, name: str | None = None) -> Node:
        """The node for ``layer`` at ``path``; its children are built when first read."""
        wrapped_attr = wrapped_module_attr(layer)
        input_shape, output_shape = _shape_of(layer, "input"), _shape_of(layer, "output")
        if output_shape is None and wrapped_attr in (None, HUB_KERAS_LAYER):  # called eagerly
            built_input, output_shape = built_shapes(layer, self.generation == KERAS3)
            input_shape = built_input if input_shape is None else input_shape
        elif output_shape is None and wrapped_attr == HUB_LAYER:
            output_shape = _declared_output_shape(layer)
        node = Node(
            name=name or layer.name,
            path=path,
            class_name=type(layer).__name__,
            input_shape=input_shape,
            output_shape=output_shape,
            obj=layer,
            keras_layer=True,
            module_wrapper=wrapped_attr is not None,
            shared=self.parent_count.get(id(layer), 0) > 1,
            variable_source=lambda: self._subtree_vars(layer, layer is self.root),
            _tree=self.tree,
        )
        if not getattr(layer, "built", True) and not _weights(layer) \
                and not is_preprocessing(layer):  # a tokenizer holds no weights, built or not
            node.build_notes.append("not built yet: no weights")
        if wrapped_attr and getattr(layer, wrapped_attr, None) is not None:
            self._fill_wrapper(node, layer, getattr(layer, wrapped_attr))
        else:
            subs = self.sublayers[id(layer)] if id(layer) in self.sublayers \
                else direct_sublayers(layer)
            self._set_variables(node, _own_weights(layer, subs))
            preprocessor = task_preprocessor(layer, subs) if self.generation == KERAS3 else None
            if preprocessor is not None:  # a KerasHub Task: shown beside backbone and head
                subs = [*subs, preprocessor]
            if subs:
                segments = sibling_segments([sub.name for sub in subs])
                node.expand_with(lambda: LazyNodes(
                    subs, lambda sub, i: self.node(sub, f"{path}/{segments[i]}")))
        if self.generation == KERAS3 and is_preprocessing(layer):
            node.build_notes += preprocessing_notes(layer)
        return node

    def _subtree_vars(self, layer: Any, is_root: bool) -> dict[int, tuple[int, bool, int]]:
        can_train, sizes = self.can_train, self.sizes
        if is_root:  # the walk has sized every variable
            return {key: (size, key in can_train, size_bytes)
                    for key, (size, size_bytes) in sizes.items()}
        out = {}
        for key, v in ((variable_key(v), v) for v in _weights(layer)):
            size, size_bytes = sizes.get(key) or _size_and_bytes(v)
            out[key] = (size, key in can_train, size_bytes)
        return out

    def _set_variables(self, node: Node, variables: list[Any]) -> None:
        names = unique_names([short_name(v) for v in variables])
        node.variables = [make_variable_info(v, node.path, n, self.tree,
                                             variable_key(v) in self.can_train)
                          for v, n in zip(variables, names, strict=True)]

    def _fill_wrapper(self, node: Node, layer: Any, restored: Any) -> None:
        """``hub.KerasLayer`` / ``TFSMLayer``: show the restored module's structure inside."""
        walker = TrackableWalker(self.tree, saved_model_dir=_handle_dir(layer), rename_root=False)
        inner = walker.build(restored, node.name, node.path)
        held = {variable_key(v) for v in _weights(layer)}
        for sub in inner.walk(counted_only=True):  # rows show what the layer holds (no stray
            sub.variables = [v for v in sub.variables if v.key in held]  # save_counter)
        for info in inner.all_variables():  # the layer decides what can train, not tf flags
            info.can_train = info.can_train and info.key in self.can_train
        # the wrapper holds the module's variables; map them back to the Keras-side objects
        placed = {v.key for v in inner.all_variables()}
        own = [v for v in _weights(layer) if variable_key(v) not in placed]
        self._set_variables(node, own)
        node.variables += inner.variables
        node.children = inner.children
        node.signatures = inner.signatures
        node.build_notes += inner.build_notes


def _outside_trainable_sets(hub_layers: list[Any]) -> set[int]:
    """Keys of the variables of these ``hub.KerasLayer`` s that their modules leave out of
    the trainable set (a variable restored with ``trainable=True`` from a sub-layer saved
    frozen): hub.KerasLayer never trains them, and neither may a freeze toggle."""
    if not hub_layers:
        return set()
    outside: set[int] = set()
    for layer in hub_layers:
        allowed = module_trainable_keys(layer)
        if allowed is not None:
            outside |= {variable_key(v) for v in _weights(layer)} - allowed
    return outside


def _overrides_trainable_weights(layer: Any) -> bool:
    """Whether a class below Keras' own redefines ``trainable_weights`` (then ask it)."""
    keras = keras3_module()
    own = keras.layers.Layer.trainable_weights if keras is not None else None
    return type(layer).trainable_weights is not own


def _own_variable_lists(layer: Any, subs: list[Any]) -> tuple[list[Any], list[Any]] | None:
    """The two lists in which Keras 3 and tf_keras keep a layer's directly tracked variables
    (trainable, other), when they hold exactly its own: always for a layer without
    sub-layers; for one with sub-layers, only when both are empty (else they may repeat a
    sub-layer's variables).  None when the layer keeps no such lists."""
    for trainable, other in (("_trainable_variables", "_non_trainable_variables"),
                             ("_trainable_weights", "_non_trainable_weights")):
        first, second = getattr(layer, trainable, None), getattr(layer, other, None)
        if isinstance(first, list) and isinstance(second, list):
            return (list(first), list(second)) if not subs or not (first or second) else None
    return None


def _own_weights(layer: Any, subs: list[Any]) -> list[Any]:
    """The layer's variables that none of its sub-layers hold, in ``layer.weights`` order:
    from its own two lists when they say (constant time), else its weights minus the
    sub-layers'."""
    lists = _own_variable_lists(layer, subs)
    if lists is not None:
        return lists[0] + lists[1]
    child_keys = {variable_key(v) for sub in subs for v in _weights(sub)}
    return [v for v in _weights(layer) if variable_key(v) not in child_keys]


def _size_and_bytes(v: Any) -> tuple[int, int]:
    """(elements, bytes) of a variable; Keras 3 keeps its shape as a plain tuple and its
    dtype as a string, so most variables cost one dictionary look-up."""
    shape, dtype = getattr(v, "_shape", None), getattr(v, "_dtype", None)
    if isinstance(shape, tuple) and isinstance(dtype, str):
        known = _SIZES.get((shape, dtype))
        if known is None:
            size = shape_size(shape)
            known = _SIZES[(shape, dtype)] = (size, size * itemsize(dtype))
        return known
    size = shape_size(shape_tuple(getattr(v, "shape", None)))
    return size, size * itemsize(dtype_name(v.dtype))


_SIZES: dict[tuple[tuple[int, ...], str], tuple[int, int]] = {}


def _handle_dir(layer: Any) -> str | None:
    handle = (getattr(layer, "local_dir", None) or getattr(layer, "_handle", None)
              or getattr(layer, "filepath", None))
    if not isinstance(handle, str):
        return None
    from .paths import resolve_local_dir

    return resolve_local_dir(handle)


class KerasAdapter:
    """The adapter for Keras 3 and tf_keras models and layers (one instance per generation)."""

    def __init__(self, generation: str) -> None:
        self.generation = generation

    def inspect(self, obj: Any, framework: str | None = None, source: str | None = None
                ) -> ModelTree:
        """The tree of a Keras model or layer (a restored module wrapper shows its insides)."""
        check_built(obj)
        label = framework or self.generation
        if wrapped_module_attr(obj) == HUB_KERAS_LAYER:
            label = "TF Hub KerasLayer (tf_keras)"
        tree = ModelTree(obj, framework=label, source=source)
        builder = KerasBuilder(tree, obj, self.generation)
        tree.adapter = builder
        tree.root = builder.node(obj, obj.name)
        return tree.refresh()

    def child_node(self, tree: ModelTree, layer: Any, path: str, name: str) -> Node:
        """The node of a Keras layer found inside another kind of object (a restored graph)."""
        return KerasBuilder(tree, layer, self.generation).node(layer, path, name)


def layer_fingerprint(root: Any, generation: str) -> tuple[Any, ...]:
    """Per layer below ``root`` (in the walk's order): its id, how many variables its own
    lists hold, and how many sub-layers it has: changes when layers are added, removed or
    built.  The walk that builds a tree records the same value as it goes."""
    return tuple(_shape_entry(layer, subs, _own_variable_lists(layer, subs))
                 for layer, subs in _depth_first(root, generation == KERAS3))


def _shape_entry(layer: Any, subs: list[Any], lists: tuple[list[Any], list[Any]] | None
                 ) -> tuple[int, int, int]:
    return id(layer), -1 if lists is None else len(lists[0]) + len(lists[1]), len(subs)


def _depth_first(root: Any, keras3: bool) -> Iterator[tuple[Any, list[Any]]]:
    """Every layer below ``root`` once, depth first in model order, with its sub-layers."""
    seen: set[int] = set()
    stack = [root]
    model_classes = _model_classes()
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        tracked = getattr(layer, "_layers", None) if keras3 else None
        if isinstance(tracked, list) and len(tracked) < 2 \
                and not isinstance(layer, model_classes):
            subs = list(tracked)  # Keras 3's tracked sub-layers, what _flatten_layers reads
        else:
            subs = direct_sublayers(layer, model_classes)
        yield layer, subs
        stack.extend(reversed(subs))
