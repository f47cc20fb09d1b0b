"""Ensemble: majority vote of the best N trained models (MIT-LL "Async Ensemble")."""

import numpy as np
import pytest

import keras_cnas as cnas
from keras_cnas.spaces import ConvLayer, Descriptor, FcLayer
from keras_cnas.training import Ensemble, KerasEvaluator, majority_vote
from keras_cnas.trial import Candidate

SPECS = [Descriptor((8, 8, 1), 10, (ConvLayer(8, 3, 3, 2, 2, 2, 2),)),
         Descriptor((8, 8, 1), 10, (ConvLayer(12, 3, 3, 2, 2, 2, 2),), (FcLayer(16),)),
         Descriptor((8, 8, 1), 10, (ConvLayer(6, 5, 5, 2, 2, 2, 2), ConvLayer(8)))]


@pytest.fixture(scope="module")
def digits():
    return cnas.data.load("digits")


@pytest.fixture(scope="module")
def member_dirs(tmp_path_factory):
    """Three small digits models, trained briefly (so they disagree) and saved by finalize."""
    root = tmp_path_factory.mktemp("members")
    evaluator = KerasEvaluator({"name": "digits"}, batch_size=64, learning_rate=5e-3)
    dirs = []
    for i, spec in enumerate(SPECS):
        evaluator.finalize(Candidate(spec), root / f"top_{i}", seed=i, epochs=2)
        dirs.append(root / f"top_{i}")
    return dirs


def test_majority_vote_counts_votes_before_confidence():
    # Two members vote class 0 with little confidence, one votes class 1 very confidently:
    # the majority wins although class 1 has the larger summed probability.
    p = np.array([[[0.51, 0.49]], [[0.51, 0.49]], [[0.0, 1.0]]])
    assert majority_vote(p).tolist() == [0]
    assert p.mean(axis=0).argmax() == 1  # soft voting would disagree


def test_majority_vote_breaks_ties_by_summed_probabilities():
    p = np.array([[[0.9, 0.1, 0.0], [0.4, 0.6, 0.0]],
                  [[0.3, 0.7, 0.0], [0.55, 0.45, 0.0]]])
    # example 0: one vote each, class 0 sums 1.2 > 0.8; example 1: class 0 sums 0.95 < 1.05
    assert majority_vote(p).tolist() == [0, 1]


def test_majority_vote_rejects_wrong_shapes():
    with pytest.raises(ValueError, match=r"probabilities: expected shape \[members, examples, "
                                         r"classes\] with no empty axis, got \(3, 4\)"):
        majority_vote(np.zeros((3, 4)))


def test_ensemble_of_trained_models_votes(member_dirs, digits):
    ensemble = Ensemble.load(member_dirs)
    x, y = digits.arrays("test")
    assert len(ensemble) == 3
    votes = ensemble.predict(x)
    assert votes.shape == (len(y),) and votes.dtype == np.int64
    members = ensemble.member_probabilities(x)
    assert members.shape == (3, len(y), 10)
    assert np.array_equal(votes, majority_vote(members))
    # The vote is not just a copy of one member: it overrules each of them somewhere.
    for m in members:
        assert (votes != m.argmax(axis=1)).any()
    proba = ensemble.predict_proba(x)
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    metrics = ensemble.evaluate(x, y)
    assert metrics["accuracy"] == pytest.approx(float((votes == y).mean()))
    member_acc = (members.argmax(axis=2) == y).mean(axis=1)
    assert metrics["mean_member_accuracy"] == pytest.approx(member_acc.mean())
    assert metrics["best_member_accuracy"] == pytest.approx(member_acc.max())
    assert metrics["accuracy"] > 0.5  # chance is 0.1


def test_ensemble_errors_say_what_to_do(member_dirs, tmp_path, digits):
    with pytest.raises(ValueError, match="models: expected at least one trained keras.Model"):
        Ensemble([])
    with pytest.raises(ValueError, match=r"models\[0\]: expected a keras.Model, got str"):
        Ensemble(["model.keras"])
    with pytest.raises(FileNotFoundError, match=r"dirs: no model at .*nowhere/model.keras"):
        Ensemble.load([tmp_path / "nowhere"])
    with pytest.raises(ValueError, match="dirs: expected a list of directories"):
        Ensemble.load(str(member_dirs[0]))
    x, y = digits.arrays("test")
    with pytest.raises(ValueError, match="y: 3 labels for 359 examples"):
        Ensemble.load(member_dirs[:1]).evaluate(x, y[:3])
