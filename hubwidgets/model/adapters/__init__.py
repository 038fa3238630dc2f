"""One module per kind of object: Keras (both generations), restored graphs and tf.Module, paths."""
