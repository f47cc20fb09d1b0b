"""Weight inheritance: a child trial starts from its parent's trained weights (npz, no pickle)."""

import numpy as np
import pytest

import keras_cnas as cnas
from keras_cnas.spaces import ConvLayer, Descriptor, FcLayer
from keras_cnas.training.inherit import WEIGHTS_FILE, inherit_weights, save_weights
from keras_cnas.trial import Candidate, TrialStatus


@pytest.fixture(scope="module")
def digits():
    return cnas.data.load("digits")


def _spec(filters=8, hidden=16):
    return Descriptor((8, 8, 1), 10, [ConvLayer(filters, pool_x=2, pool_y=2, sub_x=2, sub_y=2)],
                      [FcLayer(hidden)])


def test_an_identical_child_starts_where_its_parent_ended(digits, tmp_path):
    evaluator = cnas.training.KerasEvaluator(digits, traction_epochs=2, batch_size=64,
                                             inherit_weights=True)
    parent_dir, child_dir = tmp_path / "trials" / "00000", tmp_path / "trials" / "00001"
    parent_dir.mkdir(parents=True), child_dir.mkdir()
    parent = evaluator.evaluate(Candidate(_spec(), "traction"), seed=0, workdir=parent_dir)
    assert parent.status == TrialStatus.COMPLETED and (parent_dir / WEIGHTS_FILE).is_file()
    child = evaluator.evaluate(Candidate(_spec(), "traction", info={"parent": 0}), seed=1,
                               workdir=child_dir)
    assert child.metrics["inherited_layers"] == 4 and child.metrics["inherited_partial"] == 0
    # The loss before training is the parent's final validation loss: its weights, exactly.
    assert child.metrics["initial_val_loss"] == pytest.approx(parent.metrics["val_loss"], rel=1e-5)
    fresh = evaluator.evaluate(Candidate(_spec(), "traction"), seed=1, workdir=None)
    assert "initial_val_loss" not in fresh.metrics
    # Without the option nothing is saved or inherited.
    plain = cnas.training.KerasEvaluator(digits, traction_epochs=1, batch_size=64)
    other = tmp_path / "trials" / "00002"
    other.mkdir()
    result = plain.evaluate(Candidate(_spec(), "traction", info={"parent": 0}), workdir=other)
    assert "inherited_layers" not in result.metrics and not (other / WEIGHTS_FILE).exists()
    assert "inherit_weights" not in plain.identity()["training"]
    assert evaluator.identity()["training"]["inherit_weights"] is True


def test_a_wider_child_gets_the_overlapping_slices(tmp_path):
    from keras_cnas._keras import keras

    keras.backend.clear_session()
    parent = cnas.build_model(_spec(8, 16))
    path = tmp_path / WEIGHTS_FILE
    save_weights(parent, path)
    np.load(path, allow_pickle=False).close()  # plain arrays: loads without pickle
    child = cnas.build_model(_spec(12, 16))
    counts = inherit_weights(child, path)
    # conv and its BN widen (partial); fc_0 reads 4x4x12 inputs now (partial); the classifier
    # keeps its shape (copied).
    assert counts == {"copied": 1, "partial": 3}
    kernel = child.get_layer("conv_0").get_weights()[0]
    np.testing.assert_array_equal(kernel[..., :8], parent.get_layer("conv_0").get_weights()[0])
    np.testing.assert_array_equal(child.get_layer("classifier").get_weights()[0],
                                  parent.get_layer("classifier").get_weights()[0])


def test_a_local_search_neighbour_starts_from_its_incumbents_weights(digits, tmp_path):
    """Local search names the incumbent's trial as a neighbour's parent: with
    ``inherit_weights`` the neighbour's weights when its training begins equal the
    incumbent's trained ones on every layer whose shapes match."""
    from keras_cnas._keras import keras

    class Snapshot(keras.callbacks.Callback):
        """Every layer's weights when a trial's training begins (trials run in order)."""

        def __init__(self):
            super().__init__()
            self.starts = []

        def on_train_begin(self, logs=None):
            self.starts.append({layer.name: [np.array(w) for w in layer.get_weights()]
                                for layer in self.model.layers if layer.get_weights()})

    snapshot = Snapshot()
    evaluator = cnas.training.KerasEvaluator(digits, traction_epochs=1, batch_size=64,
                                             inherit_weights=True, callbacks=[snapshot])
    space = cnas.spaces.DescriptorSpace((8, 8, 1), 10, max_conv_layers=2, max_filters=16,
                                        max_fc_layers=1, max_hidden=32)
    start = _spec(8, 16)
    result = cnas.search(space, strategy=cnas.strategies.LocalSearch(3, fidelity="traction",
                                                                     start=start),
                         evaluator=evaluator, search_dir=tmp_path / "search", finalize=False,
                         verbose=False, tensorboard=False)
    first, *children = result.trials
    assert first.spec.key() == start.key() and first.info == {"move": "start"}
    assert len(children) == 2 and len(snapshot.starts) == 3
    with np.load(tmp_path / "search" / "trials" / "00000" / WEIGHTS_FILE,
                 allow_pickle=False) as saved:
        parent = {k: saved[k] for k in saved.files}
    for child, start_weights in zip(children, snapshot.starts[1:]):
        assert child.info["parent"] == first.id and child.info["parent_key"] == start.key()
        matching = [name for name, arrays in start_weights.items()
                    if all(f"{name}/{i}" in parent and parent[f"{name}/{i}"].shape == w.shape
                           for i, w in enumerate(arrays))]
        assert matching and child.metrics["inherited_layers"] == len(matching)
        for name in matching:
            for i, w in enumerate(start_weights[name]):
                np.testing.assert_array_equal(w, parent[f"{name}/{i}"], err_msg=name)
