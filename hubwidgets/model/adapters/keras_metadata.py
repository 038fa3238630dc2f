"""Keras metadata of a SavedModel written by tf_keras: layer names, classes, output shapes.

tf_keras keeps, for every Keras object it saved, a JSON record (``class_name``, ``name``,
``config``, ``build_input_shape``, ...) in one of two places:

- ``keras_metadata.pb`` beside ``saved_model.pb`` (TF 2.5 and later);
- the SavedModel proto itself, ``object_graph_def.nodes[i].user_object.metadata``
  (TF 2.0 to 2.4, and many published TF Hub modules).

:func:`read_keras_metadata` reads both (the file wins where both exist) into a
:class:`LayerMetadata` per object-graph node, found from any path of child names
(``("layer_with_weights-0",)`` or its alias ``("layer-1",)``), and says in
:attr:`KerasMetadata.problems` what it could not read, so that a malformed record or an
unknown class never stops the walk.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from typing import Any

# user_object identifiers tf_keras writes for layers and models
LAYER_IDENTIFIERS = frozenset({
    "_tf_keras_layer", "_tf_keras_input_layer", "_tf_keras_network", "_tf_keras_model",
    "_tf_keras_sequential", "_tf_keras_rnn_layer"})
MODEL_IDENTIFIERS = frozenset({"_tf_keras_network", "_tf_keras_model", "_tf_keras_sequential"})
# ... and for what training keeps beside the model
TRAINING_STATE_IDENTIFIERS = frozenset({"_tf_keras_metric", "optimizer"})
# classes whose config holds Python code: never rebuilt here (only their names are shown)
UNSAFE_CLASSES = frozenset({"Lambda"})

Shape = Any


@dataclass(frozen=True)
class LayerMetadata:
    """What the SavedModel says about one Keras object."""

    name: str
    class_name: str
    identifier: str
    output_shape: Shape = None


@dataclass
class KerasMetadata:
    """Every Keras object's metadata, by object-graph path, and what could not be read."""

    by_id: dict[int, LayerMetadata] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    source: str = ""  # "keras_metadata.pb", "saved_model.pb" or "" when there is none
    # the object graph: node id -> {child name: child node id}
    children: list[dict[str, int]] = field(default_factory=list)

    def node_id(self, graph_path: tuple[str, ...]) -> int | None:
        """The object-graph node reached from the root through ``graph_path`` (any alias)."""
        node = 0
        for name in graph_path:
            if node >= len(self.children) or name not in self.children[node]:
                return None
            node = self.children[node][name]
        return node

    def get(self, graph_path: tuple[str, ...]) -> LayerMetadata | None:
        """The metadata of the object at ``graph_path``, if any."""
        if not self.by_id:
            return None
        node = self.node_id(graph_path)
        return None if node is None else self.by_id.get(node)

    def is_training_state(self, graph_path: tuple[str, ...]) -> bool:
        """Whether the SavedModel marks the object at ``graph_path`` as optimizer or metric."""
        meta = self.get(graph_path)
        return meta is not None and meta.identifier in TRAINING_STATE_IDENTIFIERS


def read_keras_metadata(saved_model_dir: str | None) -> KerasMetadata:
    """Read the Keras metadata of the SavedModel in ``saved_model_dir`` (never raises)."""
    out = KerasMetadata()
    if not saved_model_dir:
        return out
    graph_file = os.path.join(saved_model_dir, "saved_model.pb")
    if not os.path.isfile(graph_file):
        return out
    try:
        from tensorflow.core.protobuf import saved_model_pb2

        saved = saved_model_pb2.SavedModel()
        with open(graph_file, "rb") as f:
            saved.ParseFromString(f.read())
        graph = saved.meta_graphs[0].object_graph_def
    except Exception:  # noqa: BLE001 - the loader has read this file; nothing more to learn
        return out
    records, out.source = _records_from_file(saved_model_dir, out.problems), "keras_metadata.pb"
    if not records:
        records, out.source = _records_from_proto(graph), "saved_model.pb"
    if not records:
        out.source = ""
        return out
    parsed, bad = _parse_records(records)
    if bad:
        out.problems.append(
            f"the Keras metadata of {bad} object(s) in {out.source} is not valid JSON: "
            "those layers are named after their variables' scopes")
    try:
        shapes = _output_shapes(graph, parsed, out.problems)
    except Exception as exc:  # noqa: BLE001 - odd records: names and classes still count
        shapes = {}
        out.problems.append(f"output shapes could not be computed ({type(exc).__name__})")
    out.by_id = {node_id: LayerMetadata(name=_text(info.get("name")),
                                        class_name=_text(info.get("class_name")),
                                        identifier=str(identifier),
                                        output_shape=shapes.get(node_id))
                 for node_id, (identifier, info) in parsed.items()}
    out.children = [{ref.local_name: ref.node_id for ref in node.children}
                    for node in graph.nodes]
    return out


def _text(value: Any) -> str:
    """A name or class from the metadata, when it is one ("" for anything else: a path
    separator or a non-string would make the tree's paths lie)."""
    return value if isinstance(value, str) and "/" not in value else ""


# -- reading the records ---------------------------------------------------------------------
def _records_from_file(saved_model_dir: str, problems: list[str]) -> dict[int, tuple[str, str]]:
    meta_file = os.path.join(saved_model_dir, "keras_metadata.pb")
    if not os.path.isfile(meta_file):
        return {}
    try:
        from tf_keras.protobuf import saved_metadata_pb2

        meta = saved_metadata_pb2.SavedMetadata()
        with open(meta_file, "rb") as f:
            meta.ParseFromString(f.read())
    except Exception as exc:  # noqa: BLE001 - a damaged file: fall back to the proto
        problems.append(f"keras_metadata.pb could not be read ({type(exc).__name__})")
        return {}
    return {node.node_id: (node.identifier, node.metadata) for node in meta.nodes}


def _records_from_proto(graph: Any) -> dict[int, tuple[str, str]]:
    out = {}
    for node_id, node in enumerate(graph.nodes):
        if node.WhichOneof("kind") == "user_object" and node.user_object.metadata:
            out[node_id] = (node.user_object.identifier, node.user_object.metadata)
    return out


def _parse_records(records: dict[int, tuple[str, str]]) -> tuple[dict[int, tuple[str, dict]], int]:
    parsed, bad = {}, 0
    for node_id, (identifier, text) in records.items():
        try:
            info = json.loads(text)
        except ValueError:
            bad += 1
            continue
        if not isinstance(info, dict):
            bad += 1
            continue
        parsed[node_id] = (identifier, info)
    return parsed, bad


# -- output shapes ---------------------------------------------------------------------------
def decode_shape(value: Any) -> Shape:
    """A shape as tf_keras serializes it (``{"class_name": "TensorShape", "items": [...]}``,
    ``__tuple__``, lists or dicts of those) as a tuple, or a list of tuples."""
    if isinstance(value, dict):
        if value.get("class_name") in ("TensorShape", "__tuple__") and "items" in value:
            items = value["items"]
            if items is None:
                return None
            if all(i is None or isinstance(i, int) for i in items):
                return tuple(items)
            return [decode_shape(i) for i in items]
        if "items" not in value and value:  # a dict of named inputs
            return [decode_shape(v) for v in value.values()]
        return None
    if isinstance(value, (list, tuple)):
        if all(i is None or isinstance(i, int) for i in value):
            return tuple(value)
        return [decode_shape(v) for v in value]
    return None


def _as_shape(value: Any) -> Shape:
    """A computed output shape (TensorShape, tuple, or nested lists/dicts of them)."""
    if value is None:
        return None
    if hasattr(value, "as_list"):
        return tuple(value.as_list()) if value.rank is not None else None
    if isinstance(value, dict):
        return [_as_shape(v) for v in value.values()]
    if isinstance(value, (list, tuple)):
        if all(d is None or isinstance(d, int) for d in value):
            return tuple(value)
        shapes = [_as_shape(v) for v in value]
        return shapes if len(shapes) != 1 else shapes[0]
    return None


def _output_shapes(graph: Any, parsed: dict[int, tuple[str, dict]],
                   problems: list[str]) -> dict[int, Shape]:
    """Output shape of each layer: leaf layers rebuilt from their config (never built, so no
    weights are made) and asked ``compute_output_shape(build_input_shape)``; models take
    their output layers' shapes."""
    shapes: dict[int, Shape] = {}
    unknown: set[str] = set()
    layers = {i: info for i, (ident, info) in parsed.items() if ident in LAYER_IDENTIFIERS}
    models = {i for i, (ident, _) in parsed.items() if ident in MODEL_IDENTIFIERS}
    for node_id, info in layers.items():
        if node_id in models:
            continue
        try:
            shapes[node_id] = _leaf_output_shape(info, unknown)
        except Exception:  # noqa: BLE001 - an odd record keeps "?"
            shapes[node_id] = None
    # models: inner models first (their ids are larger than their parents' in the proto)
    for node_id in sorted(models, reverse=True):
        by_name = _layers_by_name(graph, node_id, parsed)
        _propagate(parsed[node_id][1], by_name, parsed, shapes, unknown)
        shapes[node_id] = _model_output_shape(parsed[node_id][1], by_name, shapes)
    if unknown:
        problems.append(
            "layer class(es) not installed here: " + ", ".join(sorted(unknown)) +
            " (their names and variables are shown; output shapes are unknown)")
    return shapes


def _compute(info: dict, input_shape: Shape, unknown: set[str]) -> Shape:
    """``compute_output_shape`` of the layer ``info`` describes, rebuilt, never built."""
    class_name = str(info.get("class_name", ""))
    config = info.get("config")
    if input_shape is None or not isinstance(config, dict) or class_name in UNSAFE_CLASSES:
        return None
    layer = _rebuild(class_name, _decode_tuples(config), unknown)
    if layer is None:
        return None
    try:
        import tensorflow as tf

        arg = ([tf.TensorShape(s) for s in input_shape] if isinstance(input_shape, list)
               else tf.TensorShape(input_shape))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _as_shape(layer.compute_output_shape(arg))
    except Exception:  # noqa: BLE001 - a layer that cannot say its shape keeps "?"
        return None


def _leaf_output_shape(info: dict, unknown: set[str]) -> Shape:
    class_name = str(info.get("class_name", ""))
    config = info.get("config")
    if class_name == "InputLayer" and isinstance(config, dict):
        return decode_shape(config.get("batch_input_shape") or config.get("batch_shape"))
    return _compute(info, decode_shape(info.get("build_input_shape")), unknown)


def _decode_tuples(value: Any) -> Any:
    """The config as tf_keras' JSON encoder wrote it, with its ``__tuple__`` records turned
    back into tuples (what ``from_config`` expects: ``kernel_size=(3, 3)``)."""
    if isinstance(value, dict):
        if value.get("class_name") == "__tuple__" and "items" in value:
            return tuple(_decode_tuples(v) for v in value["items"])
        return {k: _decode_tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode_tuples(v) for v in value]
    return value


def _rebuild(class_name: str, config: dict, unknown: set[str]) -> Any:
    try:
        import tf_keras
    except ImportError:
        return None
    try:
        from tf_keras.src.saving.serialization_lib import SafeModeScope
    except ImportError:  # older tf_keras
        SafeModeScope = None  # noqa: N806
    layer = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if SafeModeScope is not None:
                with SafeModeScope(True):
                    layer = tf_keras.layers.deserialize({"class_name": class_name,
                                                         "config": config})
            else:
                layer = tf_keras.layers.deserialize({"class_name": class_name, "config": config})
    except ValueError as exc:
        if "Unknown" in str(exc):
            unknown.add(class_name)
        return None
    except Exception:  # noqa: BLE001 - a config this tf_keras cannot rebuild keeps "?"
        return None
    if not isinstance(layer, tf_keras.layers.Layer):  # an unknown class comes back as a str
        unknown.add(class_name)
        return None
    return layer


def _layers_by_name(graph: Any, node_id: int,
                    parsed: dict[int, tuple[str, dict]]) -> dict[str, int]:
    """A model's layers (its ``layer-N`` children), by Keras name, in model order."""
    ordered: list[tuple[int, str, int]] = []
    for ref in graph.nodes[node_id].children:
        if ref.local_name.startswith("layer-") and ref.node_id in parsed:
            try:
                index = int(ref.local_name.split("-", 1)[1])
            except ValueError:
                continue
            ordered.append((index, str(parsed[ref.node_id][1].get("name", "")), ref.node_id))
    return {name: child for _, name, child in sorted(ordered)}


def _config(info: dict) -> dict:
    config = info.get("config")
    return config if isinstance(config, dict) else {}


def _propagate(model_info: dict, by_name: dict[str, int],
               parsed: dict[int, tuple[str, dict]], shapes: dict[int, Shape],
               unknown: set[str]) -> None:
    """A Functional model's layers that recorded no ``build_input_shape`` (weightless layers
    saved by TF 2.4 and older): their input is their inbound layers' outputs, in the
    model's config order (which is topological)."""
    for entry in _config(model_info).get("layers") or []:
        if not isinstance(entry, dict):
            continue
        node_id = by_name.get(str(entry.get("name", "")))
        if node_id is None or shapes.get(node_id) is not None:
            continue
        inbound = entry.get("inbound_nodes") or []
        first = inbound[0] if inbound and isinstance(inbound[0], list) else None
        if not first or not all(isinstance(t, list) and len(t) >= 3 and not (t[3:] and t[3])
                                for t in first):
            continue  # no input, or a call with extra arguments (TFOpLambda): unknown
        inputs = []
        for name, _, tensor_index, *_ in first:
            shape = shapes.get(by_name.get(str(name), -1))
            if isinstance(shape, list):
                shape = shape[tensor_index] if tensor_index < len(shape) else None
            inputs.append(shape)
        if any(s is None for s in inputs):
            continue
        shapes[node_id] = _compute(parsed[node_id][1], inputs if len(inputs) > 1 else inputs[0],
                                   unknown)


def _model_output_shape(info: dict, by_name: dict[str, int], shapes: dict[int, Shape]) -> Shape:
    """A Functional model's outputs are its output layers'; a Sequential's, its last
    layer's."""
    outputs = _config(info).get("output_layers")
    if isinstance(outputs, dict):
        outputs = list(outputs.values())
    if isinstance(outputs, list) and outputs:
        if not isinstance(outputs[0], list):
            outputs = [outputs]  # a single output: [name, node_index, tensor_index]
        found = [shapes.get(by_name.get(str(o[0]), -1)) for o in outputs if o]
        if found and all(s is not None for s in found):
            return found if len(found) > 1 else found[0]
        return None
    if info.get("class_name") == "Sequential" and by_name:
        return shapes.get(list(by_name.values())[-1])
    return None
