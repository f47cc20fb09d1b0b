"""Training: fit a built model on a Dataset's tf.data pipelines and measure it."""

from keras_cnas.training.fit import fit_and_evaluate

__all__ = ["fit_and_evaluate"]
