"""The library behind the absl binaries in ``tools/``: flags to objects, output, kept testable.

Pure Python at import; building or training a Keras model imports TensorFlow on demand.
"""
