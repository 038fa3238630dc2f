"""hubwidgets.probe: per-layer activations and gradients of one batch, checked against
numpy on Keras sub-models' outputs and against tf.GradientTape, with the model unchanged."""

from __future__ import annotations

import numpy as np
import pytest

import hubwidgets as hw
from hubwidgets.model.errors import HubWidgetsError


def _weights(model):
    return [np.array(v.numpy(), copy=True) for v in model.weights]


def _same_weights(model, before):
    after = _weights(model)
    return len(after) == len(before) and all(
        a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
        for a, b in zip(after, before))


def _no_hook_left(model):
    """No layer of the model keeps an instance-level ``call`` or graph runner (the probe's
    wrappers), a Sequential's inner graph included."""
    layers = [model, *model._flatten_layers()]
    layers += [vars(la)["_functional"] for la in layers if vars(la).get("_functional")]
    return all("call" not in vars(la) and "_run_through_graph" not in vars(la) for la in layers)


def _expect_stats(stats, value):
    value = np.asarray(value, dtype=np.float64)
    assert stats.shape == value.shape
    assert stats.mean == pytest.approx(value.mean(), rel=1e-6, abs=1e-7)
    assert stats.std == pytest.approx(value.std(), rel=1e-6, abs=1e-7)
    assert stats.min == value.min() and stats.max == value.max()
    assert stats.zero_fraction == np.count_nonzero(value == 0) / value.size
    counts, edges = np.histogram(value, bins=len(stats.counts))
    np.testing.assert_array_equal(stats.counts, counts)
    np.testing.assert_allclose(stats.edges, edges, rtol=0, atol=1e-12)
    units = value.reshape(-1, value.shape[-1])
    assert stats.dead_fraction == np.count_nonzero(~units.any(axis=0)) / value.shape[-1]


@pytest.fixture(scope="module")
def conv_net(keras):
    keras.utils.set_random_seed(1)
    inp = keras.Input((12, 12, 3), name="image")
    h = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inp)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.MaxPooling2D(name="pool")(h)
    h = keras.layers.Flatten(name="flat")(h)
    h = keras.layers.Dense(16, activation="tanh", name="tanh")(h)
    out = keras.layers.Dense(4, activation="softmax", name="probs")(h)
    model = keras.Model(inp, out, name="conv_net")
    model.compile(loss="sparse_categorical_crossentropy")
    return model


def _batch(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


# -- statistics --------------------------------------------------------------------------------

def test_each_layers_statistics_equal_numpy_on_a_sub_models_output(keras, conv_net):
    x = _batch((6, 12, 12, 3))
    before = _weights(conv_net)
    result = hw.probe(conv_net, x)
    names = ["conv", "bn", "pool", "flat", "tanh", "probs"]
    assert list(result.layers) == ["conv_net"] + [f"conv_net/{n}" for n in names]
    for name in names:
        sub = keras.Model(conv_net.inputs, conv_net.get_layer(name).output)
        value = sub(x, training=False).numpy()
        _expect_stats(result.layers[f"conv_net/{name}"], value)
        np.testing.assert_array_equal(result.activation(f"conv_net/{name}"), value)
    assert result.gradients is None
    assert _same_weights(conv_net, before) and _no_hook_left(conv_net)


def test_dead_fraction_is_exact_on_relu_channels_killed_by_their_bias(keras):
    inp = keras.Input((5, 5, 2))
    conv = keras.layers.Conv2D(10, 3, activation="relu", name="conv")
    model = keras.Model(inp, conv(inp), name="dead")
    kernel, bias = conv.get_weights()
    bias[[1, 4, 7]] = -1e4  # far below anything the kernel can add: dead for every input
    conv.set_weights([kernel, bias])
    x = _batch((3, 5, 5, 2), seed=2)
    stats = hw.probe(model, x).layers["dead/conv"]
    assert stats.dead_fraction == 0.3
    value = model(x).numpy()
    assert not value[..., [1, 4, 7]].any() and value[..., [0, 2, 3, 5, 6, 8, 9]].any(axis=(0, 1, 2)).all()


def test_saturated_fraction_is_exact_on_tanh_and_sigmoid(keras):
    inp = keras.Input((4,))
    t = keras.layers.Dense(32, activation="tanh", name="t")(inp)
    s = keras.layers.Dense(32, activation="sigmoid", name="s")(t)
    r = keras.layers.Dense(8, activation="relu", name="r")(s)
    model = keras.Model(inp, r, name="sat")
    for layer in model.layers[1:]:
        kernel, bias = layer.get_weights()
        layer.set_weights([kernel * 4, bias])
    x = _batch((50, 4), seed=3) * 2
    result = hw.probe(model, x)
    tv = keras.Model(inp, t)(x).numpy()
    sv = keras.Model(inp, s)(x).numpy()
    assert result.layers["sat/t"].saturated_fraction == np.count_nonzero(np.abs(tv) > 0.97) / tv.size
    assert result.layers["sat/s"].saturated_fraction == np.count_nonzero(
        (sv < 0.03) | (sv > 0.97)) / sv.size
    assert 0 < result.layers["sat/t"].saturated_fraction < 1
    assert result.layers["sat/r"].saturated_fraction is None
    assert "sat/t" in result.saturated_layers(0.0)


# -- gradients ---------------------------------------------------------------------------------

def test_gradient_norms_equal_gradient_tape_and_frozen_layers_are_zero(keras, tf, conv_net):
    x, y = _batch((6, 12, 12, 3)), np.array([0, 1, 2, 3, 0, 1])
    conv_net.get_layer("conv").trainable = False
    try:
        before = _weights(conv_net)
        result = hw.probe(conv_net, x, y)
        with tf.GradientTape() as tape:
            loss = keras.losses.sparse_categorical_crossentropy(
                y, conv_net(x, training=False))
            loss = tf.reduce_mean(loss)
        trained = list(conv_net.trainable_variables)
        grads = tape.gradient(loss, trained)
    finally:
        conv_net.get_layer("conv").trainable = True
    assert result.loss == pytest.approx(float(loss), rel=1e-6)
    tree = hw.inspect(conv_net)
    by_key = {}
    from hubwidgets.model.adapters.common import variable_key
    for v, g in zip(trained, grads):
        by_key[variable_key(v)] = float(np.linalg.norm(g.numpy().astype(np.float64)))
    for info in tree.variables():
        if info.key in by_key:
            assert result.gradients[info.path] == pytest.approx(by_key[info.key], rel=1e-6)
            assert info.path not in result.frozen
        else:
            assert result.gradients[info.path] == 0.0 and info.path in result.frozen
    assert {"conv_net/conv/kernel", "conv_net/conv/bias", "conv_net/bn/moving_mean"} <= result.frozen
    assert result.gradients["conv_net/probs/kernel"] > 0
    assert result.layer_gradients()["conv_net/conv"] == (0.0, True)
    assert _same_weights(conv_net, before) and _no_hook_left(conv_net)


def test_a_passed_loss_and_a_variable_no_gradient_reaches(keras, tf):
    class TwoHeads(keras.Model):
        def __init__(self):
            super().__init__(name="two_heads")
            self.used = keras.layers.Dense(3, name="used")
            self.unused = keras.layers.Dense(3, name="unused")

        def call(self, x):
            return self.used(x)

    model = TwoHeads()
    model(np.zeros((1, 4), "float32"))
    model.unused.build((None, 4))
    x, y = _batch((5, 4)), _batch((5, 3), seed=9)
    result = hw.probe(model, x, y, loss="mse")
    assert result.gradients["two_heads/unused/kernel"] is None
    assert "two_heads/unused" in result.not_reached
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(keras.losses.mean_squared_error(y, model(x)))
    g = tape.gradient(loss, model.used.kernel)
    assert result.gradients["two_heads/used/kernel"] == pytest.approx(
        float(np.linalg.norm(g.numpy())), rel=1e-6)


def test_batch_norm_statistics_move_only_when_training_is_asked(keras, conv_net):
    x = _batch((6, 12, 12, 3)) + 3.0
    before = _weights(conv_net)
    hw.probe(conv_net, x, np.zeros(6, int))
    assert _same_weights(conv_net, before)
    bn = conv_net.get_layer("bn")
    mean_before = bn.moving_mean.numpy().copy()
    try:
        hw.probe(conv_net, x, training=True)
        assert not np.array_equal(bn.moving_mean.numpy(), mean_before)
        assert np.array_equal(conv_net.get_layer("conv").kernel.numpy(), before[0])
    finally:
        for v, b in zip(conv_net.weights, before):
            v.assign(b)


# -- where it works ----------------------------------------------------------------------------

def test_subclassed_and_nested_models_reach_their_layers_by_their_calls(keras, k3_subclassed):
    x = _batch((4, 10))
    result = hw.probe(k3_subclassed, x)
    inner = "larger_model/custom_module/inner_dense1"
    assert {"larger_model", "larger_model/custom_module", inner,
            "larger_model/custom_module/inner_dense2", "larger_model/outer_dense"} <= set(result.layers)
    _expect_stats(result.layers[inner], k3_subclassed.module.dense1(x).numpy())
    _expect_stats(result.layers["larger_model"], k3_subclassed(x).numpy())
    assert _no_hook_left(k3_subclassed)


def test_a_shared_layer_counts_its_calls(keras, k3_nested_shared):
    x = _batch((3, 6))
    result = hw.probe(k3_nested_shared, x)
    shared = result.layers["nested_shared/shared_dense"]
    assert shared.calls == 2
    _expect_stats(shared, k3_nested_shared.get_layer("shared_dense")(x).numpy())
    assert "nested_shared/block/inner_bn" in result.layers


def test_multi_output_model_gives_every_head_and_its_gradients(keras, tf):
    inp = keras.Input((5,))
    h = keras.layers.Dense(6, activation="relu", name="trunk")(inp)
    a = keras.layers.Dense(2, name="a")(h)
    b = keras.layers.Dense(3, activation="sigmoid", name="b")(h)
    model = keras.Model(inp, [a, b], name="heads")
    model.compile(loss=["mse", "binary_crossentropy"])
    x, ya, yb = _batch((4, 5)), _batch((4, 2)), (np.arange(12).reshape(4, 3) % 2).astype("f4")
    result = hw.probe(model, x, [ya, yb])
    outa, outb = model(x)
    _expect_stats(result.layers["heads/a"], outa.numpy())
    _expect_stats(result.layers["heads/b"], outb.numpy())
    assert result.layers["heads"].outputs == 2
    with tf.GradientTape() as tape:
        pa, pb = model(x)
        loss = (tf.reduce_mean(keras.losses.mean_squared_error(ya, pa))
                + tf.reduce_mean(keras.losses.binary_crossentropy(yb, pb)))
    g = tape.gradient(loss, model.get_layer("trunk").kernel)
    assert result.gradients["heads/trunk/kernel"] == pytest.approx(
        float(np.linalg.norm(g.numpy())), rel=1e-5)
    assert all(v.numpy() == 0 for m in model.metrics for v in m.variables)


def test_tf_keras_model_with_compiled_loss(tf_keras, tf, tfk_sequential):
    x, y = _batch((5, 784)), np.eye(5, dtype="float32")
    tfk_sequential.compile(loss="categorical_crossentropy")
    before = _weights(tfk_sequential)
    result = hw.probe(tfk_sequential, x, y)
    sub = tf_keras.Model(tfk_sequential.inputs, tfk_sequential.get_layer("bn").output)
    _expect_stats(result.layers["tfk_sequential/bn"], sub(x, training=False).numpy())
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf_keras.losses.categorical_crossentropy(
            y, tfk_sequential(x, training=False)))
    g = tape.gradient(loss, tfk_sequential.get_layer("dense_layer_1").kernel)
    assert result.gradients["tfk_sequential/dense_layer_1/kernel"] == pytest.approx(
        float(np.linalg.norm(g.numpy())), rel=1e-5)
    assert "tfk_sequential/bn/moving_mean" in result.frozen
    assert _same_weights(tfk_sequential, before) and _no_hook_left(tfk_sequential)


def _probe_hub_model(model, hub_backbone, tf_keras):
    x = _batch((4, 4))
    name = model.name
    before = _weights(model)
    result = hw.probe(model, x, _batch((4, 2)), loss="mse")
    assert _same_weights(model, before)
    _expect_stats(result.layers[f"{name}/hub"], model.layers[0](x).numpy())
    # inside the module: its layers, against the same SavedModel loaded as a Keras model
    backbone = tf_keras.models.load_model(hub_backbone)
    for inner in ("block1_dense", "block1_bn", "block2_dense"):
        sub = tf_keras.Model(backbone.inputs, backbone.get_layer(inner).output)
        value = sub(x, training=False).numpy()
        _expect_stats(result.layers[f"{name}/hub/{inner}"], value)
        np.testing.assert_array_equal(result.activation(f"{name}/hub/{inner}"), value)
    assert list(result.layers).index(f"{name}/hub/block2_dense") \
        < list(result.layers).index(f"{name}/head")
    assert result.gradients[f"{name}/head/kernel"] > 0
    hub_vars = [p for p in result.gradients if p.startswith(f"{name}/hub/")]
    assert hub_vars and all(result.gradients[p] == 0.0 and p in result.frozen for p in hub_vars)
    assert _no_hook_left(model)


def test_hub_layer_at_the_module_boundary_and_inside(keras, tf_keras, hub_backbone):
    _probe_hub_model(keras.Sequential([keras.Input((4,)), hw.HubLayer(hub_backbone, name="hub"),
                                       keras.layers.Dense(2, name="head")], name="k3_hub"),
                     hub_backbone, tf_keras)


def test_hub_keras_layer_at_the_module_boundary_and_inside(tf_keras, hub, hub_backbone):
    _probe_hub_model(tf_keras.Sequential([
        hub.KerasLayer(hub_backbone, trainable=False, name="hub", input_shape=(4,)),
        tf_keras.layers.Dense(2, name="head")], name="tfk_hub"), hub_backbone, tf_keras)


@pytest.mark.parametrize("generation", ["keras", "tf_keras"])
def test_mirrored_strategy_model(generation, request, tf, mirrored):
    K = request.getfixturevalue(generation)
    with mirrored.scope():
        model = K.Sequential([K.Input((3,)), K.layers.Dense(4, activation="relu", name="d"),
                              K.layers.Dense(1, name="o")], name=f"mirrored_probe_{generation}")
    name = model.name
    x, y = _batch((8, 3)), _batch((8, 1))
    before = _weights(model)
    result = hw.probe(model, x, y, loss="mse")
    _expect_stats(result.layers[f"{name}/d"], model.layers[0](x).numpy())
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(K.losses.mean_squared_error(y, model(x)))
    g = tape.gradient(loss, model.layers[1].kernel)
    assert result.gradients[f"{name}/o/kernel"] == pytest.approx(
        float(np.linalg.norm(g.numpy())), rel=1e-6)
    assert _same_weights(model, before)


def test_summary_names_dead_layers_and_frozen_variables(keras, conv_net):
    conv_net.get_layer("conv").trainable = False
    try:
        text = hw.probe(conv_net, _batch((2, 12, 12, 3)), np.array([0, 1])).summary()
    finally:
        conv_net.get_layer("conv").trainable = True
    assert "conv_net/tanh" in text and "conv_net/conv/kernel" in text
    assert [line for line in text.splitlines() if line.startswith("conv_net/conv/kernel")][0] \
        .endswith("frozen")


# -- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize("bad, says", [
    (np.zeros((2, 10, 10, 3), "float32"), "expects (None, 12, 12, 3)"),
    (np.zeros((2, 12, 12), "float32"), "expects (None, 12, 12, 3)"),
    (np.full((2, 12, 12, 3), "a"), "dtype"),
    ([np.zeros((2, 12, 12, 3), "f4")] * 2, "takes 1 input"),
    (np.zeros((0, 12, 12, 3), "float32"), "empty batch"),
    ("an image", "numpy array"),
])
def test_bad_inputs_say_what_to_pass_and_change_nothing(conv_net, bad, says):
    before = _weights(conv_net)
    with pytest.raises(HubWidgetsError, match=None) as info:
        hw.probe(conv_net, bad)
    assert says in str(info.value)
    assert _same_weights(conv_net, before) and _no_hook_left(conv_net)


def test_targets_that_do_not_fit_the_loss(conv_net):
    before = _weights(conv_net)
    x = _batch((3, 12, 12, 3))
    with pytest.raises(HubWidgetsError, match="do not fit the loss.*outputs \\(3, 4\\)"):
        hw.probe(conv_net, x, np.zeros((3, 7, 2)))
    with pytest.raises(HubWidgetsError, match="y has 2 samples and x 3"):
        hw.probe(conv_net, x, np.zeros(2))
    with pytest.raises(HubWidgetsError, match="loss="):
        hw.probe(conv_net.get_layer("tanh"), np.zeros((3, 72), "f4"), np.zeros((3, 16)))
    assert _same_weights(conv_net, before) and _no_hook_left(conv_net)


def test_an_unbuilt_model_is_refused(k3_unbuilt_subclassed):
    with pytest.raises(hw.UnbuiltModelError, match="not been built"):
        hw.probe(k3_unbuilt_subclassed, _batch((2, 10)))
    assert not k3_unbuilt_subclassed.built


def test_a_batch_too_large_for_memory_is_refused_before_running(keras):
    inp = keras.Input((64, 64, 3))
    big = keras.layers.UpSampling2D(200, name="up")(inp)  # 12,800 x 12,800 x 3 per sample
    model = keras.Model(inp, keras.layers.GlobalMaxPooling2D()(big), name="huge")
    with pytest.raises(hw.InsufficientMemoryError, match=r"probing a batch of 64.*x\[:"):
        hw.probe(model, np.zeros((64, 64, 64, 3), "float32"))
    assert _no_hook_left(model)


def test_an_unknown_layer_path_names_the_closest(conv_net):
    result = hw.probe(conv_net, _batch((2, 12, 12, 3)))
    with pytest.raises(HubWidgetsError, match="conv_net/conv"):
        result.activation("conv_net/cnv")
    with pytest.raises(HubWidgetsError, match="Probe.layers"):
        result.activation("conv_net/conv/kernel")


def test_peak_memory_stays_near_the_largest_activation_in_a_subprocess():
    """16 convolutions of 32 MB outputs each (a batch of 2 at 512 x 512 x 16): Keras' own call
    would hold all 512 MB; the probe holds a few at a time (the issue's bound: 3x the largest
    + 400 MB)."""
    import json
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "bench.probe_bench", "stack", "16", "512", "2"],
                         capture_output=True, text=True, timeout=600,
                         env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert run.returncode == 0, run.stderr[-2000:]
    measured = json.loads(run.stdout.strip().splitlines()[-1])
    assert measured["largest_activation_bytes"] == 2 * 512 * 512 * 16 * 4
    assert measured["peak_added_bytes"] <= measured["bound_bytes"]
    assert measured["peak_added_bytes"] < measured["all_activations_bytes"] / 2


def test_an_object_that_is_not_a_keras_model_says_how_to_wrap_it(tf, plain_module):
    with pytest.raises(HubWidgetsError, match="HubLayer"):
        hw.probe(plain_module, np.zeros((1, 3), "f4"))


def test_a_dict_of_inputs_by_name(keras):
    a, b = keras.Input((2,), name="a"), keras.Input((3,), name="b")
    out = keras.layers.Dense(1, name="d")(keras.layers.Concatenate(name="cat")([a, b]))
    model = keras.Model({"b": b, "a": a}, out, name="two_inputs")
    xa, xb = _batch((4, 2)), _batch((4, 3), seed=5)
    result = hw.probe(model, {"a": xa, "b": xb})
    _expect_stats(result.layers["two_inputs/cat"], np.concatenate([xa, xb], axis=1))


def test_a_layer_whose_output_is_nan_is_not_reported_healthy(keras):
    """One NaN in the first kernel makes the next layer's output all NaN: its figures are
    NaN (not mean 0 and min +inf), and the summary and the marks say NaN/Inf."""
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="first"),
                              keras.layers.Dense(2, name="second")], name="nanprobe")
    kernel = model.get_layer("first").kernel.numpy()
    kernel[0, 0] = np.nan
    model.get_layer("first").kernel.assign(kernel)
    result = hw.probe(model, np.ones((2, 4), np.float32))
    second = result.layers["nanprobe/second"]
    out = model(np.ones((2, 4), np.float32)).numpy()
    assert np.isnan(out).all() and second.nan == out.size and second.nonfinite_fraction == 1.0
    assert all(np.isnan(v) for v in (second.mean, second.std, second.min, second.max))
    first = result.layers["nanprobe/first"]
    finite = model.get_layer("first")(np.ones((2, 4), np.float32)).numpy()
    assert first.nan == np.isnan(finite).sum() == 2
    assert first.mean == pytest.approx(finite[np.isfinite(finite)].mean())
    assert "NaN/Inf 100%" in result.summary()
    assert "NaN/Inf 100%" in result.marks()["nanprobe/second"]
