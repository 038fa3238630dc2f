"""Tiny KerasHub models built from configs (random weights, offline) and one real training
step, for the LoRA and quantization tests."""

from __future__ import annotations

import numpy as np


def gemma(name="gemma_backbone"):
    import keras_hub

    return keras_hub.models.GemmaBackbone(
        vocabulary_size=64, num_layers=2, num_query_heads=2, num_key_value_heads=1,
        hidden_dim=16, intermediate_dim=32, head_dim=8, name=name)


def bert(name="bert_backbone"):
    import keras_hub

    return keras_hub.models.BertBackbone(
        vocabulary_size=40, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16,
        max_sequence_length=16, name=name)


def vit(name="vit_backbone"):
    import keras_hub

    return keras_hub.models.ViTBackbone(
        image_shape=(8, 8, 3), patch_size=4, num_layers=1, num_heads=2, hidden_dim=8,
        mlp_dim=16, name=name)


VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "quick", "brown", "fox",
              "jumped", "over", "lazy", "dog", "a", "cat"]


def bert_classifier():
    """A BertTextClassifier with its preprocessor and a tokenizer from a small vocabulary."""
    import keras_hub

    tokenizer = keras_hub.models.BertTokenizer(vocabulary=VOCABULARY)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=8)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(VOCABULARY), num_layers=1, num_heads=2, hidden_dim=8,
        intermediate_dim=16, max_sequence_length=8)
    return keras_hub.models.BertTextClassifier(backbone, num_classes=2,
                                               preprocessor=preprocessor)


def example_inputs(model):
    """A small batch the backbone accepts."""
    rng = np.random.default_rng(0)
    if "ViT" in type(model).__name__:
        return rng.normal(size=(2, 8, 8, 3)).astype("float32")
    vocab = 40 if "Bert" in type(model).__name__ else 64
    ids = rng.integers(1, vocab, size=(2, 6)).astype("int32")
    mask = np.ones((2, 6), "int32")
    if "Bert" in type(model).__name__:
        return {"token_ids": ids, "padding_mask": mask, "segment_ids": np.zeros_like(ids)}
    return {"token_ids": ids, "padding_mask": mask}


def sgd_step(model, inputs=None, lr=0.1):
    """One real gradient step on the variables Keras trains (``model.trainable_weights``):
    returns {variable path: changed?} for every weight of the model."""
    import keras
    import tensorflow as tf

    inputs = example_inputs(model) if inputs is None else inputs
    before = {v.path: np.array(v.numpy()) for v in model.weights}
    trainable = model.trainable_weights
    with tf.GradientTape() as tape:
        out = model(inputs, training=True)
        outs = out.values() if isinstance(out, dict) else [out]
        loss = sum(tf.reduce_sum(tf.square(tf.cast(o, "float32") + 0.5)) for o in outs)
    grads = tape.gradient(loss, [v.value for v in trainable])
    keras.optimizers.SGD(lr).apply_gradients(
        [(g, v) for g, v in zip(grads, trainable) if g is not None])
    return {v.path: not np.array_equal(before[v.path], v.numpy()) for v in model.weights}


def trainable_paths(model):
    """The paths of the variables Keras would train now."""
    return {v.path for v in model.trainable_weights}
