"""The best N trained models combined by majority vote (MIT-LL's "Async Ensemble").

Each member votes for its most probable class; the class with most votes wins, and a tie
is broken by the members' summed probabilities (the more confident side wins).
"""

from __future__ import annotations

import os
import pathlib
from typing import Any, Sequence

import numpy as np

from keras_cnas._keras import keras
from keras_cnas.export.model_file import load_model_file

__all__ = ["Ensemble", "majority_vote"]


def majority_vote(probabilities: Any) -> np.ndarray:
    """Class indices by majority vote over members; ties broken by summed probabilities.

    Args:
        probabilities: ``[members, examples, classes]`` class probabilities.

    Returns:
        ``[examples]`` int class indices.

    Example:
        >>> p = np.array([[[0.6, 0.4, 0.0]],     # member 0 votes class 0
        ...               [[0.0, 0.51, 0.49]],   # member 1 votes class 1
        ...               [[0.0, 0.45, 0.55]]])  # member 2 votes class 2
        >>> int(majority_vote(p)[0])  # a 3-way tie; class 1 has the largest summed probability
        1
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 3 or 0 in p.shape:
        raise ValueError(f"probabilities: expected shape [members, examples, classes] with no "
                         f"empty axis, got {p.shape}")
    members, _, classes = p.shape
    votes = np.zeros(p.shape[1:], dtype=np.int64)
    np.add.at(votes, (np.arange(p.shape[1])[None, :], p.argmax(axis=2)), 1)
    summed = p.sum(axis=0)
    # Lexicographic (votes, summed): summed lies in [0, members], below one vote's weight.
    return np.argmax(votes * (members + 1.0) + summed, axis=1).astype(np.int64)


class Ensemble:
    """Several trained classifiers voting together.

    Args:
        models: trained Keras models with the same input shape and a softmax over the same
            classes (e.g. the best N of a search, each retrained by ``finalize``).

    Example:
        >>> ensemble = Ensemble.load([f"runs/x/top_{i}" for i in range(3)])  # doctest: +SKIP
        >>> x_test, y_test = data.arrays("test")  # doctest: +SKIP
        >>> ensemble.evaluate(x_test, y_test)  # doctest: +SKIP
        {'accuracy': 0.97, 'mean_member_accuracy': 0.95, 'best_member_accuracy': 0.96}
    """

    def __init__(self, models: Sequence[keras.Model]):
        models = list(models)
        if not models:
            raise ValueError("models: expected at least one trained keras.Model, got none")
        for i, model in enumerate(models):
            if not isinstance(model, keras.Model):
                raise ValueError(f"models[{i}]: expected a keras.Model, got {type(model).__name__}")
        outputs = {m.output_shape[-1] for m in models}
        if len(outputs) != 1:
            raise ValueError(f"models: members predict different numbers of classes "
                             f"{sorted(outputs)}; an ensemble needs the same classes")
        self.models = models

    @classmethod
    def load(cls, dirs: Sequence[str | os.PathLike[str]]) -> "Ensemble":
        """Loads the members from directories holding a ``model.keras`` (or .keras files)."""
        if isinstance(dirs, (str, os.PathLike)):
            raise ValueError(f"dirs: expected a list of directories, got the single path {dirs!r}; "
                             "wrap it in a list")
        models = []
        for d in dirs:
            path = pathlib.Path(d)
            if path.suffix != ".keras":
                path = path / "model.keras"
            if not path.is_file():
                raise FileNotFoundError(
                    f"dirs: no model at {path}; pass directories written by "
                    "KerasEvaluator.finalize (or with save_models=True), each with a model.keras")
            models.append(load_model_file(path))  # v3 archives only, safe mode
        return cls(models)

    def __len__(self) -> int:
        return len(self.models)

    def member_probabilities(self, x: Any, batch_size: int = 256) -> np.ndarray:
        """``[members, examples, classes]`` probabilities of every member."""
        return np.stack([np.asarray(m.predict(x, batch_size=batch_size, verbose=0))
                         for m in self.models])

    def predict_proba(self, x: Any, batch_size: int = 256) -> np.ndarray:
        """``[examples, classes]`` probabilities averaged over members (soft voting)."""
        return self.member_probabilities(x, batch_size).mean(axis=0)

    def predict(self, x: Any, batch_size: int = 256) -> np.ndarray:
        """``[examples]`` class indices by majority vote (see :func:`majority_vote`)."""
        return majority_vote(self.member_probabilities(x, batch_size))

    def evaluate(self, x: Any, y: Any, batch_size: int = 256) -> dict[str, float]:
        """``accuracy`` of the vote, plus ``mean_member_accuracy`` and ``best_member_accuracy``."""
        y = np.asarray(y).reshape(-1)
        p = self.member_probabilities(x, batch_size)
        if p.shape[1] != len(y):
            raise ValueError(f"y: {len(y)} labels for {p.shape[1]} examples in x; pass one "
                             "label per example")
        members = (p.argmax(axis=2) == y[None, :]).mean(axis=1)
        return {"accuracy": float((majority_vote(p) == y).mean()),
                "mean_member_accuracy": float(members.mean()),
                "best_member_accuracy": float(members.max())}
