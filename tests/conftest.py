"""Session fixtures: one tiny model of every kind hubwidgets accepts, saved and reloaded.

Everything is built here; nothing is downloaded.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest


@pytest.fixture(autouse=True)
def _keras_name_scopes_left_as_found():
    """Keras 3 leaves a model's name scope on its stack when a layer whose name holds '['
    is called inside the model (tests of hostile names do that on purpose); every variable
    made later in the process would then get that scope in its path.  Each test starts
    from the stack the previous one found."""
    state = sys.modules.get("keras.src.backend.common.global_state")
    before = list(state.get_global_attribute("name_scope_stack") or []) if state else []
    yield
    state = sys.modules.get("keras.src.backend.common.global_state")
    if state is not None:
        state.set_global_attribute("name_scope_stack", before)


@pytest.fixture(scope="session")
def tf():
    import tensorflow as tf

    # two logical CPUs, before anything runs, so tests can build MirroredStrategy models
    [cpu] = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
    return tf


@pytest.fixture(scope="session")
def mirrored(tf):
    """A MirroredStrategy over the two logical CPUs."""
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


@pytest.fixture(scope="session")
def keras(tf):
    import keras

    return keras


@pytest.fixture(scope="session")
def tf_keras(tf):
    import tf_keras

    return tf_keras


@pytest.fixture(scope="session")
def hub(tf_keras):
    import tensorflow_hub as hub

    return hub


@pytest.fixture(scope="session")
def saved_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def k3_sequential(keras):
    """The seed's Sequential model with named layers (Keras 3)."""
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((784,)),
        keras.layers.Dense(10, activation="relu", name="dense_layer_1"),
        keras.layers.Dense(5, activation="softmax", name="dense_layer_2"),
    ], name="seed_sequential")


def _larger_model(K, tf):
    class CustomModule(K.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense1 = K.layers.Dense(12, activation="relu", name="inner_dense1")
            self.dense2 = K.layers.Dense(8, activation="softmax", name="inner_dense2")

        def call(self, inputs):
            return self.dense2(self.dense1(inputs))

    class LargerModel(K.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.module = CustomModule(name="custom_module")
            self.dense_outer = K.layers.Dense(4, name="outer_dense")

        def call(self, inputs):
            return self.dense_outer(self.module(inputs))

    return LargerModel(name="larger_model")


@pytest.fixture(scope="session")
def k3_subclassed(keras, tf):
    """The seed's nested subclassed model, called once so its weights exist."""
    model = _larger_model(keras, tf)
    model(tf.zeros((1, 10)))
    return model


@pytest.fixture(scope="session")
def k3_unbuilt_subclassed(keras, tf):
    return _larger_model(keras, tf)


@pytest.fixture(scope="session")
def k3_nested_shared(keras):
    """A functional model holding a nested Sequential, a shared layer and BatchNorm."""
    shared = keras.layers.Dense(6, name="shared_dense")
    inner = keras.Sequential([keras.Input((6,)), keras.layers.Dense(6, name="inner_a"),
                              keras.layers.BatchNormalization(name="inner_bn")], name="block")
    inp = keras.Input((6,), name="x")
    h = shared(inp)
    h = inner(h)
    h = shared(h)
    out = keras.layers.Dense(2, name="head")(h)
    return keras.Model(inp, out, name="nested_shared")


@pytest.fixture
def three_dense(keras):
    """A fresh Sequential "m" of Dense layers d1, d2 and d3 (3 -> 3 -> 3 -> 2), for cases
    that change or try to change it."""
    keras.utils.set_random_seed(4)
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(3, name="d1"),
                             keras.layers.Dense(3, name="d2"), keras.layers.Dense(2, name="d3")],
                            name="m")


@pytest.fixture(scope="session")
def tfk_sequential(tf_keras):
    return tf_keras.Sequential([
        tf_keras.layers.Dense(10, activation="relu", input_shape=(784,), name="dense_layer_1"),
        tf_keras.layers.BatchNormalization(name="bn"),
        tf_keras.layers.Dense(5, activation="softmax", name="dense_layer_2"),
    ], name="tfk_sequential")


@pytest.fixture(scope="session")
def tfk_saved_model(tf_keras, saved_dir):
    """A tf_keras model saved as a SavedModel: Keras metadata inside, usable as a Hub handle."""
    model = tf_keras.Sequential([
        tf_keras.layers.Dense(8, activation="relu", input_shape=(4,), name="features_1"),
        tf_keras.layers.Dense(3, name="features_2"),
    ], name="feature_extractor")
    path = str(saved_dir / "tfk_feature_extractor")
    model.save(path, save_format="tf")
    return path


@pytest.fixture(scope="session")
def k3_export(keras, saved_dir, k3_sequential):
    """A Keras 3 model exported as a SavedModel: no Keras metadata, only name scopes."""
    path = str(saved_dir / "k3_export")
    k3_sequential.export(path, verbose=False)
    return path


@pytest.fixture(scope="session")
def text_module(tf, saved_dir):
    """A tf.Module text embedder saved as a SavedModel: string input, name scopes only."""

    class TextEmbedder(tf.Module):
        def __init__(self):
            super().__init__(name="text_embedder")
            with tf.name_scope("embedding"):
                self.table = tf.Variable(tf.random.stateless_normal((32, 8), seed=(1, 2)),
                                         name="embeddings")
            with tf.name_scope("projection"):
                self.kernel = tf.Variable(tf.random.stateless_normal((8, 4), seed=(3, 4)),
                                          name="kernel")
                self.bias = tf.Variable(tf.zeros(4), name="bias")

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def __call__(self, sentences):
            tokens = tf.strings.split(sentences)
            ids = tf.strings.to_hash_bucket_fast(tokens, 32)
            vectors = tf.reduce_mean(tf.nn.embedding_lookup(self.table, ids), axis=1)
            return tf.matmul(vectors, self.kernel) + self.bias

    module = TextEmbedder()
    path = str(saved_dir / "text_embedder")
    tf.saved_model.save(module, path, signatures={"default": module.__call__})
    return path


@pytest.fixture(scope="session")
def plain_module(tf):
    class Block(tf.Module):
        def __init__(self, name):
            super().__init__(name=name)
            self.w = tf.Variable(tf.ones((3, 2)), name="w")
            self.counter = tf.Variable(0, dtype=tf.int64, trainable=False, name="counter")

    class Net(tf.Module):
        def __init__(self):
            super().__init__(name="net")
            self.encoder = Block("encoder")
            self.blocks = [Block("b0"), Block("b1")]
            self.scale = tf.Variable(2.0, name="scale")

    return Net()


@pytest.fixture(scope="session")
def hub_backbone(tf_keras, saved_dir):
    """A small image-feature-like backbone in two blocks (with BatchNorm), saved as a TF2
    SavedModel: what a TF Hub feature-vector module looks like on disk."""
    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential([
        tf_keras.layers.Dense(8, activation="relu", input_shape=(4,), name="block1_dense"),
        tf_keras.layers.BatchNormalization(name="block1_bn"),
        tf_keras.layers.Dense(6, activation="relu", name="block2_dense"),
    ], name="backbone")
    path = str(saved_dir / "hub_backbone")
    model.save(path, save_format="tf")
    return path


@pytest.fixture
def frozen_hub_classifier(hub_backbone, hub, tf_keras):
    """A tf_keras classifier on a frozen ``hub.KerasLayer`` of :func:`hub_backbone` ("hub")
    with a trainable Dense head ("head"), compiled with SGD: frozen module, moving head."""
    layer = hub.KerasLayer(hub_backbone, trainable=False, name="hub")
    model = tf_keras.Sequential([tf_keras.Input((4,)), layer,
                                 tf_keras.layers.Dense(2, name="head")], name="clf")
    model.compile(optimizer=tf_keras.optimizers.SGD(0.1), loss="mse")
    return model


@pytest.fixture(scope="session")
def tf1_hub_module(tf, saved_dir):
    """A module in the legacy TF1 Hub format: a tag-less TF1 SavedModel with tfhub_module.pb."""
    path = str(saved_dir / "tf1_module")
    with tf.Graph().as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        kernel = tf.compat.v1.get_variable("dense/kernel", [4, 3])
        y = tf.matmul(x, kernel)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            builder = tf.compat.v1.saved_model.Builder(path)
            signature = tf.compat.v1.saved_model.predict_signature_def({"x": x}, {"default": y})
            builder.add_meta_graph_and_variables(sess, [], signature_def_map={"default": signature})
            builder.save()
    with open(os.path.join(path, "tfhub_module.pb"), "wb") as f:
        f.write(b"\x08\x03")  # hub's ModuleDef proto: format = FORMAT_V3 (TF1 Hub format)
    return path


@pytest.fixture
def reductions_counted(monkeypatch):
    """``start()`` returns the list of the paths of every variable reduced from then on
    (where the count is the behaviour: what a change makes a view read again)."""
    def start() -> list[str]:
        from hubwidgets.model import stats

        reduced: list[str] = []
        real = stats._stats_of_all

        def counting(plan, *args):
            reduced.extend(plan.paths)
            return real(plan, *args)

        monkeypatch.setattr(stats, "_stats_of_all", counting)
        return reduced
    return start
