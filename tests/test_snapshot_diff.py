"""``snapshot`` and ``diff`` after real training: frozen variables stay bit-identical, trainable
ones move, BatchNorm moving statistics are reported with their reason, and a saved file on
either side gives the same answer as a snapshot.  Every number has a numpy oracle."""

from __future__ import annotations

import math

import numpy as np
import pytest

import hubwidgets as hw


@pytest.fixture
def xy(tf):
    return (tf.random.stateless_normal((16, 4), seed=(1, 2)).numpy(),
            tf.random.stateless_normal((16, 2), seed=(3, 4)).numpy())


def k3_model(keras):
    keras.utils.set_random_seed(0)
    base = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="base_dense"),
                             keras.layers.BatchNormalization(name="base_bn")], name="base")
    return keras.Sequential([keras.Input((4,)), base,
                             keras.layers.Dense(8, name="mid"),
                             keras.layers.BatchNormalization(name="bn"),
                             keras.layers.Dense(2, name="head")], name="net")


def tfk_model(tf_keras):
    tf_keras.utils.set_random_seed(0)
    return tf_keras.Sequential([
        tf_keras.layers.Dense(8, input_shape=(4,), name="base_dense"),
        tf_keras.layers.Dense(8, name="mid"),
        tf_keras.layers.BatchNormalization(name="bn"),
        tf_keras.layers.Dense(2, name="head")], name="net")


def weights_by_path(model):
    return {v.path: v.variable for v in hw.inspect(model).variables()}


def check_against_numpy(d, before, model):
    """Every field of every variable against numpy on the two raw values."""
    live = weights_by_path(model)
    assert set(d) == set(before.values) == set(live)
    for path, result in d.items():
        x = before[path].astype(np.float64)
        y = np.asarray(live[path].numpy()).astype(np.float64)
        assert result.changed == (not np.array_equal(x, y))
        norm, moved = np.linalg.norm(x), np.linalg.norm(y - x)
        expected = moved / norm if norm else (np.inf if moved else 0.0)
        assert result.rel_change == pytest.approx(expected, rel=1e-9, abs=0)
        assert result.max_abs_change == pytest.approx(np.max(np.abs(y - x)), rel=1e-9, abs=0)
        if norm and np.linalg.norm(y):
            cos = (x.ravel() @ y.ravel()) / (norm * np.linalg.norm(y))
            assert result.cosine == pytest.approx(cos, rel=1e-9)
        else:
            assert np.isnan(result.cosine)


def test_snapshot_copies_every_variable_to_host(keras, tf):
    model = k3_model(keras)
    snap = hw.snapshot(model)
    assert sum(v.size for v in snap.values.values()) == model.count_params()
    assert snap.nbytes == 4 * model.count_params()
    assert [p for p in snap] == [v.path for v in hw.inspect(model).variables()]
    assert not snap.trainable["net/bn/moving_mean"] and snap.trainable["net/head/kernel"]
    assert snap.owners["net/bn/moving_mean"] == "BatchNormalization"
    kernel = model.get_layer("head").kernel
    kept = snap["net/head/kernel"].copy()
    kernel.assign(kernel + 1.0)  # the snapshot is a copy, not a view of the variable
    np.testing.assert_array_equal(snap["net/head/kernel"], kept)


def test_snapshot_file_round_trip_is_exact(keras, tf, tmp_path):
    model = k3_model(keras)
    snap = hw.snapshot(model)
    path = snap.save(tmp_path / "before")
    assert path.endswith(".npz")
    back = hw.Snapshot.load(path)
    assert back.paths == snap.paths and back.root == "net" and back.framework == "Keras 3"
    assert back.trainable == snap.trainable and back.owners == snap.owners
    for p in snap:
        assert back[p].dtype == snap[p].dtype
        assert back[p].tobytes() == snap[p].tobytes()


def test_snapshot_restore_puts_values_back_and_checks_first(keras, tf):
    model = k3_model(keras)
    snap = hw.snapshot(model)
    kernel = model.get_layer("head").kernel
    kernel.assign(kernel * 0.0)
    assert snap.restore(model, ["net/head/kernel"]) == ["net/head/kernel"]
    np.testing.assert_array_equal(kernel.numpy(), snap["net/head/kernel"])
    other = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="head")], name="net")
    before = other.get_layer("head").kernel.numpy().copy()
    with pytest.raises(hw.HubWidgetsError, match="Nothing was restored"):
        snap.restore(other, ["net/head/kernel"])
    np.testing.assert_array_equal(other.get_layer("head").kernel.numpy(), before)


def test_keras3_frozen_part_is_bit_identical_and_bn_statistics_explained(keras, tf, xy):
    model = k3_model(keras)
    model.get_layer("base").trainable = False  # a frozen BN in Keras 3 runs in inference mode
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    before = hw.snapshot(model)
    model.fit(*xy, epochs=2, batch_size=8, verbose=0)
    d = hw.diff(before, model)
    check_against_numpy(d, before, model)

    frozen = [p for p in d if p.startswith("net/base/")]
    assert len(frozen) == 6 and all(not d[p].changed and not d[p].trainable for p in frozen)
    trainable = [p for p in d if d[p].trainable]
    assert trainable and all(d[p].changed for p in trainable)
    assert sorted(i.path for i in d.frozen_changed) == ["net/bn/moving_mean",
                                                        "net/bn/moving_variance"]
    assert all("BatchNormalization moving statistics" in i.reason and "inference mode" in i.fix
               for i in d.frozen_changed)
    assert d.trainable_unchanged == []
    assert d.node("net/base").changed == 0 and d.node("net/base").variables == 6
    head = d.node("net/head")
    assert (head.variables, head.changed, head.params) == (2, 2, 18)
    text = d.summary()
    assert "8 of 14 variables changed" in text
    assert "Frozen variables unchanged bit for bit: 4 of 4." in text
    assert "net/bn/moving_mean: BatchNormalization moving statistics" in text


def test_tf_keras_frozen_part_and_bn_reason_says_training_false(tf_keras, tf, xy):
    model = tfk_model(tf_keras)
    model.get_layer("base_dense").trainable = False
    model.compile(optimizer=tf_keras.optimizers.SGD(0.1), loss="mse")
    before = hw.snapshot(model)
    model.fit(*xy, epochs=1, batch_size=8, verbose=0)
    d = hw.diff(before, model)
    check_against_numpy(d, before, model)
    assert not d["net/base_dense/kernel"].changed and not d["net/base_dense/bias"].changed
    assert all(d[p].changed for p in d if d[p].trainable)
    assert [i.path for i in d.frozen_changed] == ["net/bn/moving_mean", "net/bn/moving_variance"]
    assert all("training=False" in i.fix for i in d.frozen_changed)


def test_hub_keras_layer_frozen_module_unchanged_head_moves(frozen_hub_classifier, tf, xy):
    model = frozen_hub_classifier
    before = hw.snapshot(model)
    assert any(p.startswith("clf/hub/") for p in before)
    model.fit(*xy, epochs=1, batch_size=8, verbose=0)
    d = hw.diff(before, model)
    check_against_numpy(d, before, model)
    assert d.changed == ["clf/head/kernel", "clf/head/bias"]
    assert d.frozen_changed == []


def test_hub_layer_trained_moves_bn_statistics_with_the_hub_reason(hub_backbone, keras, tf, xy):
    layer = hw.HubLayer(hub_backbone, trainable=True, name="hub")
    model = keras.Sequential([keras.Input((4,)), layer, keras.layers.Dense(2, name="head")],
                             name="clf")
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    before = hw.snapshot(model)
    model.fit(*xy, epochs=1, batch_size=8, verbose=0)
    d = hw.diff(before, model)
    check_against_numpy(d, before, model)
    stats = [i for i in d.frozen_changed if "moving" in i.path]
    assert len(stats) == 2 and all(before.hub_layers[i.path] == "clf/hub" for i in stats)
    assert all("'hub'" in i.fix and "trainable=False" in i.fix for i in stats)
    assert all(d[p].changed for p in d if d[p].trainable)


def test_saved_files_give_the_same_changed_set_as_a_snapshot(keras, tf, xy, tmp_path):
    model = k3_model(keras)
    model.get_layer("base").trainable = False
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    before = hw.snapshot(model)
    model.save(tmp_path / "before.keras")
    model.save(tmp_path / "before.h5")
    model.save_weights(tmp_path / "before.weights.h5")
    ckpt = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt" / "before"))
    before.save(tmp_path / "before.npz")
    model.fit(*xy, epochs=1, batch_size=8, verbose=0)
    reference = hw.diff(before, model)
    assert 0 < len(reference.changed) < len(reference)
    for side in ("before.keras", "before.h5", "before.weights.h5", "before.npz"):
        d = hw.diff(str(tmp_path / side), model)
        assert d.changed == reference.changed, side
        assert d.only_before == d.only_after == [], side
        for p in d:  # the same numbers, not only the same set
            assert d[p].rel_change == reference[p].rel_change, (side, p)
    d = hw.diff(ckpt, model)
    assert d.changed == reference.changed and d.only_after == []
    # a weights file needs a live model beside it: a clear error otherwise
    with pytest.raises(hw.HubWidgetsError, match="weights only"):
        hw.diff(str(tmp_path / "before.weights.h5"), before)


def test_tf_keras_savedmodel_and_h5_give_the_same_changed_set(tf_keras, tf, xy, tmp_path):
    model = tfk_model(tf_keras)
    model.get_layer("mid").trainable = False
    model.compile(optimizer=tf_keras.optimizers.SGD(0.1), loss="mse")
    before = hw.snapshot(model)
    model.save(str(tmp_path / "saved"), save_format="tf")
    model.save(str(tmp_path / "before.h5"))
    model.save_weights(str(tmp_path / "ckpt" / "weights"))
    model.fit(*xy, epochs=1, batch_size=8, verbose=0)
    reference = hw.diff(before, model)
    assert "net/mid/kernel" not in reference.changed and "net/head/kernel" in reference.changed
    for side in (tmp_path / "saved", tmp_path / "before.h5", tmp_path / "ckpt" / "weights"):
        d = hw.diff(str(side), model)
        assert d.changed == reference.changed, side
        assert d.only_before == d.only_after == [], side


def sgd_step(tf, module, variables, x):
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(module(x)))
    for var, grad in zip(variables, tape.gradient(loss, variables), strict=True):
        var.assign_sub(0.1 * grad)


def test_hub_load_result_fine_tuned_against_its_original(hub_backbone, hub, tf):
    original = hub.load(hub_backbone)
    tuned = hub.load(hub_backbone)
    dense = [v for v in tuned.trainable_variables if "block2" in v.name]
    x = tf.random.stateless_normal((4, 4), seed=(5, 6))
    sgd_step(tf, lambda t: tuned(t, training=False), dense, x)
    d = hw.diff(original, tuned)
    assert len(d) == len(tuned.variables)
    assert sorted(p.rsplit("/", 2)[-2] + "/" + p.rsplit("/", 1)[-1] for p in d.changed) == \
        ["block2_dense/bias", "block2_dense/kernel"]
    assert d.frozen_changed == []
    assert all(not d[p].changed for p in d if "block1" in p)


def test_plain_tf_module_diff_and_trainable_that_did_not_move(plain_module, tf):
    import copy

    module = copy.deepcopy(plain_module)
    before = hw.snapshot(module)
    module.encoder.w.assign_add(tf.ones((3, 2)))
    module.blocks[0].counter.assign_add(1)
    d = hw.diff(before, module)
    assert sorted(d.changed) == ["net/blocks.0/counter", "net/encoder/w"]
    assert d["net/encoder/w"].rel_change == pytest.approx(1.0)  # ones + ones: ‖Δ‖ = ‖w‖
    assert [i.path for i in d.frozen_changed] == ["net/blocks.0/counter"]
    assert "non-trainable" in d.frozen_changed[0].reason
    assert "net/scale" in {i.path for i in d.trainable_unchanged}


def test_unfrozen_after_compile_is_explained(keras, tf, xy):
    model = k3_model(keras)
    model.get_layer("base").trainable = False
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    model.fit(*xy, epochs=1, batch_size=16, verbose=0)
    hw.unfreeze(model, "base")  # no compile: Keras keeps training what compile() recorded
    before = hw.snapshot(model)
    model.fit(*xy, epochs=1, batch_size=16, verbose=0)
    d = hw.diff(before, model)
    stuck = {i.path: i for i in d.trainable_unchanged}
    assert {"net/base/base_dense/kernel", "net/base/base_bn/gamma"} <= set(stuck)
    assert all("compile" in i.fix and i.certain for i in stuck.values())


def test_learning_rate_zero_is_explained(keras, tf, xy):
    model = k3_model(keras)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    before = hw.snapshot(model)
    model.fit(*xy, epochs=1, batch_size=16, verbose=0)
    d = hw.diff(before, model)
    assert d.changed == ["net/base/base_bn/moving_mean", "net/base/base_bn/moving_variance",
                         "net/bn/moving_mean", "net/bn/moving_variance"]
    assert d.trainable_unchanged and all("learning rate is 0" in i.reason
                                         for i in d.trainable_unchanged)


def test_one_side_only_variables_are_listed(keras, tf):
    small = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="head")], name="m")
    big = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="head"),
                            keras.layers.Dense(3, name="extra")], name="m")
    d = hw.diff(small, big)
    assert d.only_after == ["m/extra/kernel", "m/extra/bias"] and d.only_before == []
    assert set(d) == {"m/head/kernel", "m/head/bias"}
    assert "Only after (2)" in d.summary()


def test_bad_inputs_say_what_to_do(keras, tf, tmp_path):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="head")], name="m")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(hw.HubWidgetsError, match="not a hubwidgets snapshot"):
        hw.Snapshot.load(tmp_path / "other.npz")
    with pytest.raises(hw.HubWidgetsError, match="Could not read the snapshot"):
        hw.Snapshot.load(tmp_path / "missing.npz")
    with pytest.raises(hw.ModelLoadError, match="No file or directory"):
        hw.diff(model, str(tmp_path / "missing.keras"))
    with pytest.raises(hw.NotAModelError):
        hw.diff(model, 42)
    (tmp_path / "ckpt.index").write_bytes(b"not a checkpoint")
    with pytest.raises(hw.ModelLoadError, match="Could not read the checkpoint"):
        hw.diff(str(tmp_path / "ckpt"), model)


def test_a_fine_tuned_hub_keras_layer_against_the_module_on_its_own(hub_backbone, hub, tf_keras,
                                                                    tf, xy):
    original = hub.load(hub_backbone)
    layer = hub.KerasLayer(hub_backbone, trainable=True, name="hub")
    model = tf_keras.Sequential([tf_keras.Input((4,)), layer,
                                 tf_keras.layers.Dense(2, name="head")], name="clf")
    model.compile(optimizer=tf_keras.optimizers.SGD(0.1), loss="mse")
    model.fit(*xy, epochs=1, batch_size=8, verbose=0)
    d = hw.diff(original, model)  # matched by the path inside the module
    assert len(d) == len(original.variables) == 8
    assert d.only_after == ["clf/head/kernel", "clf/head/bias"]
    assert all(p.startswith("clf/hub/") for p in d)
    assert d.changed == list(d)  # all trained, and BatchNorm ran in training mode
    kernel = d["clf/hub/block2_dense/kernel"]
    by_name = {v.name: v.numpy() for v in original.variables}
    np.testing.assert_array_equal(hw.snapshot(original)[
        next(p for p in hw.snapshot(original) if p.endswith("block2_dense/kernel"))],
        by_name["block2_dense/kernel:0"])
    moved = layer.weights[[w.name for w in layer.weights].index("block2_dense/kernel:0")]
    delta = moved.numpy().astype(np.float64) - by_name["block2_dense/kernel:0"]
    assert kernel.rel_change == pytest.approx(
        np.linalg.norm(delta) / np.linalg.norm(by_name["block2_dense/kernel:0"].astype(np.float64)),
        rel=1e-9)
    assert {i.path.rsplit("/", 1)[-1] for i in d.frozen_changed} == {"moving_mean",
                                                                     "moving_variance"}


# -- hostile cases (issue 27): restore, pairing, overflow, damaged files, scale -------------
def small_net(keras, names=("a1", "a2"), units=(4, 3), name="net", dtype="float32"):
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((4,)),
                             keras.layers.Dense(units[0], name=names[0], dtype=dtype),
                             keras.layers.Dense(units[1], name=names[1], dtype=dtype)], name=name)


def raw_values(model):
    return {v.path: np.asarray(v.variable.numpy()).tobytes() for v in hw.inspect(model).variables()}


@pytest.mark.parametrize("restore_with", ["Snapshot.restore", "hw.restore"])
def test_restore_checks_every_dtype_before_writing_any(keras, restore_with):
    model = small_net(keras)
    snap = hw.snapshot(model)
    for p in snap.paths:  # new values, so that a partial write would show
        snap.values[p] = snap.values[p] + 1
    last = snap.paths[-1]
    snap.values[last] = np.full(snap.values[last].shape, b"x", dtype="S1")  # right shape
    before = raw_values(model)
    with pytest.raises(hw.HubWidgetsError, match=f"Nothing was restored.*{last}.*bytes"):
        snap.restore(model) if restore_with == "Snapshot.restore" else hw.restore(model, snap)
    assert raw_values(model) == before  # not three of four variables overwritten


def test_restore_never_casts_float64_into_float32(keras):
    model = small_net(keras)
    snap = hw.snapshot(model)
    wide = hw.Snapshot({p: v.astype(np.float64) * 2 for p, v in snap.values.items()})
    before = raw_values(model)
    with pytest.raises(hw.HubWidgetsError, match="float32 in the model but .* float64"):
        wide.restore(model)
    assert raw_values(model) == before


def test_snapshot_restore_is_one_undo_step_and_tells_the_views(keras):
    model = small_net(keras)
    snap = hw.snapshot(model)
    hw.scale_weights(model, "a1", 3.0)
    scaled = raw_values(model)
    session = hw.session_for(model)
    seen = []
    stop = session.observe(lambda s, what: seen.append(what))
    assert snap.restore(model) == snap.paths
    stop()
    assert "values" in seen
    assert raw_values(model) == {p: v.tobytes() for p, v in snap.values.items()}
    hw.undo(model)
    assert raw_values(model) == scaled
    with pytest.raises(hw.HubWidgetsError, match="'net/zz' is not in the snapshot"):
        snap.restore(model, paths=["net/zz"])
    assert raw_values(model) == scaled


@pytest.mark.parametrize("generation", ["keras3", "tf_keras"])
def test_diff_with_another_models_checkpoint_pairs_nothing_it_does_not_name(
        generation, request, tf, tmp_path):
    K = request.getfixturevalue("keras" if generation == "keras3" else "tf_keras")
    a = small_net(K, units=(4, 4))
    b = small_net(K, names=("b1", "b2"), units=(4, 4))
    prefix = tf.train.Checkpoint(model=b).write(str(tmp_path / "b" / "ckpt"))
    d = hw.diff(a, prefix)
    assert len(d) == 0 and d.changed == []  # not "3 of 4 changed"
    assert sorted(d.only_before) == sorted(v.path for v in hw.inspect(a).variables())
    assert len(d.only_after) == 4 and all("b1" in p or "b2" in p for p in d.only_after)
    assert d.frozen_changed == [] and d.trainable_unchanged == []
    assert "paired by path, never by position" in d.summary()
    # its own checkpoint still pairs every variable, by name
    own = tf.train.Checkpoint(model=a).write(str(tmp_path / "a" / "ckpt"))
    a.layers[0].kernel.assign(a.layers[0].kernel * 2)
    d = hw.diff(own, a)
    assert len(d) == 4 and d.changed == [v.path for v in hw.inspect(a).variables()][:1]


def test_pairs_of_other_shapes_are_reported_as_such(keras):
    a = small_net(keras, units=(4, 3))
    b = small_net(keras, units=(5, 3))
    d = hw.diff(a, b)
    kernel = d["net/a1/kernel"]
    assert not kernel.comparable and kernel.before_kind == ((4, 4), "float32")
    assert kernel.shape == (4, 5)
    text = d.summary()
    assert "Different shape or dtype, not compared (3)" in text  # a1 kernel, a1 bias, a2 kernel
    assert "net/a1/kernel (4, 4) float32 -> (4, 5) float32" in text
    row = next(line for line in text.splitlines() if line.startswith("net/a1 "))
    assert "other shape" in row and " 0 " not in row
    assert d.nodes["net/a1"].not_compared == 2 and math.isnan(d.nodes["net/a1"].rel_change)
    assert all(i.path != "net/a1/kernel" for i in d.frozen_changed)


def test_float64_near_its_limit_does_not_overflow(keras):
    model = small_net(keras, dtype="float64")
    kernel = model.layers[0].kernel
    kernel.assign(np.full((4, 4), 1e200))
    before = hw.snapshot(model)
    kernel.assign(np.full((4, 4), 2e200))
    d = hw.diff(before, model)["net/a1/kernel"]
    assert d.rel_change == 1.0 and d.cosine == pytest.approx(1.0)
    assert d.max_abs_change == pytest.approx(1e200)
    kernel.assign(np.full((4, 4), -1.7e308))  # the change itself is past float64's range
    d = hw.diff(before, model)["net/a1/kernel"]
    x, y = before["net/a1/kernel"] / 1e308, np.full((4, 4), -1.7)
    assert d.rel_change == pytest.approx(np.linalg.norm(y - x) / np.linalg.norm(x))
    assert d.cosine == pytest.approx(-1.0)
    assert math.isfinite(hw.diff(before, model).nodes["net/a1"].rel_change)


def test_a_nan_weight_is_counted_not_spread(keras):
    model = small_net(keras)
    before = hw.snapshot(model)
    values = np.array(before["net/a1/kernel"])
    values[0, 0] = np.nan
    values[1:] *= 1.5
    model.layers[0].kernel.assign(values)
    d = hw.diff(before, model)["net/a1/kernel"]
    keep = np.ones(16, bool)
    keep[0] = False
    x = before["net/a1/kernel"].astype(np.float64).ravel()[keep]
    y = values.astype(np.float64).ravel()[keep]
    assert d.nonfinite == 1
    assert d.rel_change == pytest.approx(np.linalg.norm(y - x) / np.linalg.norm(x), rel=1e-9)
    assert d.max_abs_change == pytest.approx(np.max(np.abs(y - x)), rel=1e-9)
    assert "net/a1/kernel (1 of 16)" in hw.diff(before, model).summary()


def _npz_entries(path):
    import zipfile

    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def _rewrite(path, entries):
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)


def _edit_meta(path, change):
    import json

    entries = _npz_entries(path)
    meta_name = "__hubwidgets_meta__.npy"
    import io

    meta = json.loads(bytes(np.load(io.BytesIO(entries[meta_name]))).decode())
    change(meta)
    buffer = io.BytesIO()
    np.save(buffer, np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    entries[meta_name] = buffer.getvalue()
    _rewrite(path, entries)


def _damage(kind, path):
    data = path.read_bytes()
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "flipped byte in a value":
        entries = _npz_entries(path)
        value = bytearray(entries["v0.npy"])
        value[-3] ^= 0xFF
        import zipfile

        with zipfile.ZipFile(path, "w") as z:  # the CRC of the original bytes, kept
            for name, blob in entries.items():
                z.writestr(name, blob)
        raw = path.read_bytes()
        at = raw.index(bytes(entries["v0.npy"]))
        path.write_bytes(raw[:at] + bytes(value) + raw[at + len(value):])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "not a zip":
        path.write_bytes(b"hello, I am text" * 10)
    elif kind == "dtype int4":
        _edit_meta(path, lambda m: m["dtypes"].__setitem__(0, "int4"))
    elif kind == "dtype int32 over float32 bytes":
        _edit_meta(path, lambda m: m["dtypes"].__setitem__(0, "int32"))
    elif kind == "duplicated path":
        _edit_meta(path, lambda m: m["paths"].__setitem__(1, m["paths"][0]))
    elif kind == "paths not a list":
        _edit_meta(path, lambda m: m.__setitem__("paths", "net/a1/kernel"))
    elif kind == "fewer dtypes":
        _edit_meta(path, lambda m: m["dtypes"].pop())
    elif kind == "value entry missing":
        entries = _npz_entries(path)
        del entries["v2.npy"]
        _rewrite(path, entries)
    elif kind == "wrong format":
        _edit_meta(path, lambda m: m.__setitem__("format", "other/9"))
    elif kind == "trainable table of text":
        _edit_meta(path, lambda m: m.__setitem__("trainable", {"net/a1/kernel": "yes"}))


DAMAGE = {"truncated": "not a readable .npz", "flipped byte in a value": "kernel.* is damaged .*CRC",
          "empty": "not a readable .npz", "not a zip": "not a readable .npz",
          "dtype int4": "described as int4 but stored as float32",
          "dtype int32 over float32 bytes": "described as int32 but stored as float32",
          "duplicated path": "more than once", "paths not a list": "list of variable paths",
          "fewer dtypes": "one dtype name per variable",
          "value entry missing": "v2 are missing", "wrong format": "format is 'other/9'",
          "trainable table of text": "'trainable' table"}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_a_damaged_snapshot_file_says_what_is_wrong(keras, tmp_path, kind):
    model = small_net(keras)
    path = tmp_path / "snap.npz"
    hw.snapshot(model).save(path)
    _damage(kind, path)
    before = raw_values(model)
    for use in (hw.Snapshot.load, lambda p: hw.diff(p, model), lambda p: hw.restore(model, p)):
        with pytest.raises(hw.HubWidgetsError, match=DAMAGE[kind]):
            use(str(path))
    assert raw_values(model) == before


def test_snapshot_to_a_path_streams_one_variable_at_a_time(keras, tmp_path):
    import tracemalloc

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((512,))] +
                             [keras.layers.Dense(512, name=f"d{i}") for i in range(8)],
                             name="deep")
    largest = 512 * 512 * 4
    total = sum(v.nbytes for v in hw.inspect(model).variables())
    assert total > 7 * largest
    tracemalloc.start()
    snap = hw.snapshot(model, tmp_path / "before")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 3 * largest, peak  # never all values: one variable (and its copy) at most
    assert snap.source.endswith("before.npz") and snap.nbytes == total
    for layer in model.layers:
        layer.kernel.assign(layer.kernel * 0.5)
    tracemalloc.start()
    streamed = hw.diff(str(tmp_path / "before.npz"), model)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 4 * largest, peak  # a file side and a live side: one variable each
    reference = hw.diff(hw.Snapshot.load(tmp_path / "before.npz"), model)
    assert streamed.changed == reference.changed and len(streamed.changed) == 8
    for p in streamed:
        assert streamed[p].rel_change == reference[p].rel_change == (0.5 if "kernel" in p else 0)
    hw.restore(model, str(tmp_path / "before.npz"))  # from the file, one undo step
    assert hw.diff(snap, model).changed == []
    hw.undo(model)
    assert len(hw.diff(snap, model).changed) == 8


def test_the_memory_guard_refuses_an_in_memory_snapshot_and_names_the_path(keras, tmp_path,
                                                                            monkeypatch):
    from hubwidgets.model import memory_guard

    model = small_net(keras)
    path = hw.snapshot(model, tmp_path / "small.npz").source
    monkeypatch.setattr(memory_guard, "SMALL_BYTES", 0)
    monkeypatch.setattr(memory_guard, "available_bytes", lambda: 1024)
    with pytest.raises(hw.InsufficientMemoryError, match=r"hubwidgets.snapshot\(model, '"):
        hw.snapshot(model)
    with pytest.raises(hw.InsufficientMemoryError, match=r"Snapshot.open"):
        hw.Snapshot.load(path)
    before = raw_values(model)
    with pytest.raises(hw.InsufficientMemoryError, match="nothing was allocated"):
        hw.restore(model, path)
    assert raw_values(model) == before and hw.undo_history(model).undo_steps == []
    # the streaming forms need no room for the whole model
    assert len(hw.snapshot(model, tmp_path / "again.npz")) == 4
    assert hw.diff(path, model).changed == []


def test_a_snapshot_that_cannot_be_written_says_so_and_leaves_no_file(keras, tmp_path):
    model = small_net(keras)
    with pytest.raises(hw.HubWidgetsError, match="Could not write the snapshot.*nothing was"):
        hw.snapshot(model, tmp_path / "no such folder" / "snap.npz")
    (tmp_path / "taken.npz").mkdir()  # a folder where the file should go
    with pytest.raises(hw.HubWidgetsError, match="Could not write the snapshot"):
        hw.snapshot(model).save(tmp_path / "taken.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.npz"]  # no .partial left
    (tmp_path / "runs").mkdir()  # a folder given as the target: not "runs.npz" beside it
    with pytest.raises(hw.HubWidgetsError, match="is a directory.*runs/before.npz"):
        hw.snapshot(model, tmp_path / "runs")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs", "taken.npz"]


def test_a_tf_keras_checkpoint_of_an_auto_named_twin_pairs_nothing_by_leaf_name(tf_keras, tf,
                                                                               tmp_path):
    """tf_keras records names from the layer down ("dense/kernel"): dropping a first
    component there drops the layer's name, so "gamma" would pair with any "gamma"."""
    def build():
        return tf_keras.Sequential([tf_keras.layers.Dense(4, input_shape=(3,)),
                                    tf_keras.layers.BatchNormalization(),
                                    tf_keras.layers.Dense(1)])

    saved = build()
    saved.save_weights(str(tmp_path / "ckpt"))
    twin = build()  # the same layers, named dense_2, batch_normalization_1, ... here
    d = hw.diff(twin, str(tmp_path / "ckpt"))
    assert len(d) == 0 and len(d.only_before) == len(d.only_after) == 8
    assert len(hw.diff(saved, str(tmp_path / "ckpt"))) == 8


def test_a_bfloat16_and_string_model_streams_and_restores_bit_for_bit(keras, tf, tmp_path):
    model = small_net(keras, dtype="bfloat16")
    model.layers[0].kernel.assign(np.linspace(-3, 3, 16).reshape(4, 4))
    snap = hw.snapshot(model, tmp_path / "bf16")
    assert snap.values["net/a1/kernel"].dtype.name == "bfloat16"
    expected = raw_values(model)
    hw.scale_weights(model, "a1", 2.0)
    hw.restore(model, str(tmp_path / "bf16.npz"))
    assert raw_values(model) == expected

    class Words(tf.Module):
        def __init__(self):
            super().__init__(name="words")
            self.vocab = tf.Variable(["a", "bc", "<b>"], name="vocab")

    words = Words()
    text = hw.snapshot(words, tmp_path / "words")
    assert text.values[text.paths[0]].tolist() == [b"a", b"bc", b"<b>"]
    assert hw.diff(str(tmp_path / "words.npz"), words).changed == []
