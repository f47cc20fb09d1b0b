"""B-ENAS with weight sharing: SelectCell under hard bounds, its ranking rules, exact
resume after an interrupted epoch, clear errors, and the final network's training."""

import json

import numpy as np
import pytest

import keras_cnas as cnas
from keras_cnas.costs import Constraints
from keras_cnas.engine.benas import BEnasSearch
from keras_cnas.errors import InfeasibleConstraintsError
from keras_cnas.spaces import DescriptorSpace, EnasCellSpace
from keras_cnas.strategies import BEnasConfig
from keras_cnas.training import KerasEvaluator

SMALL = dict(child_steps=3, batch_size=32, controller_samples=3, select_samples=3, final_layers=3,
             lstm_size=8)


@pytest.fixture(scope="module")
def digits():
    return cnas.data.load("digits")


@pytest.fixture(scope="module")
def space(digits):
    return EnasCellSpace(digits.input_shape, digits.num_classes, filters=4, max_blocks=3)


def _run(search, digits, tmp_path, **kwargs):
    evaluator = KerasEvaluator(digits, full_epochs=1, batch_size=64)
    return search.run(digits, tmp_path / "benas", evaluator=evaluator, verbose=False, **kwargs)


def test_select_cell_honours_the_params_bound_the_final_network_is_trained_and_resumes(digits, space,
                                                                                tmp_path):
    bound = 6000
    search = BEnasSearch(space, Constraints(max_params=bound), BEnasConfig(epochs=1, **SMALL))
    result = _run(search, digits, tmp_path)
    state = json.loads((tmp_path / "benas" / "benas" / "state.json").read_text())
    selected = state["selected"]
    assert all(c["costs"]["params"] <= bound for c in selected["candidates"])
    assert result.best is not None and result.best.costs["params"] <= bound
    assert result.best.spec.num_layers == 3 and result.best.spec.cell.to_list() == selected["cell"]
    model = result.best_model()
    assert model.count_params() == result.best.costs["params"]
    assert result.best_metrics["test_accuracy"] > 0.0
    # The directory now holds a search: starting again needs resume, which has nothing
    # left to do; other settings are refused.
    with pytest.raises(cnas.engine.SearchDirError, match="already holds a B-ENAS search"):
        _run(search, digits, tmp_path)
    other = BEnasSearch(space, Constraints(max_params=bound), BEnasConfig(epochs=2, **SMALL))
    with pytest.raises(cnas.engine.SearchDirError, match="config differ"):
        _run(other, digits, tmp_path, resume=True)
    again = _run(search, digits, tmp_path, resume=True)
    assert again.best.id == result.best.id and again.best.score == result.best.score


def test_an_interrupted_search_resumes_exactly(digits, space, tmp_path):
    config = BEnasConfig(epochs=2, **SMALL)
    whole = BEnasSearch(space, Constraints(), config)
    whole_dir = tmp_path / "whole"
    whole_dir.mkdir()
    expected = whole._search(digits, whole_dir, lambda _: None)

    class Killed(Exception):
        pass

    def kill_in_epoch_2(message: str) -> None:
        if message.startswith("B-ENAS epoch 2/2"):
            raise Killed

    part_dir = tmp_path / "part"
    part_dir.mkdir()
    with pytest.raises(Killed):
        BEnasSearch(space, Constraints(), config)._search(digits, part_dir, kill_in_epoch_2)
    assert json.loads((part_dir / "state.json").read_text())["epoch"] == 1
    resumed = BEnasSearch(space, Constraints(), config)._search(digits, part_dir, lambda _: None)
    assert resumed["cell"] == expected["cell"]
    assert resumed["accuracy"] == pytest.approx(expected["accuracy"])
    history = json.loads((part_dir / "state.json").read_text())["history"]
    reference = json.loads((whole_dir / "state.json").read_text())["history"]
    assert [h["child_loss"] for h in history] == pytest.approx([h["child_loss"] for h in reference],
                                                               rel=1e-4)


def test_selection_rules():
    space = EnasCellSpace((8, 8, 1), 10, filters=4, max_blocks=3)
    entries = [{"accuracy": 0.9, "costs": {"params": 1000.0}},
               {"accuracy": 0.8, "costs": {"params": 2000.0}}]
    by_product = BEnasSearch(space, Constraints(max_params=4000), BEnasConfig(**SMALL))
    assert [by_product._selection_score(e) for e in entries] == pytest.approx([0.225, 0.4])
    by_accuracy = BEnasSearch(space, Constraints(max_params=4000),
                              BEnasConfig(select_by="accuracy", **SMALL))
    assert [by_accuracy._selection_score(e) for e in entries] == pytest.approx([0.9, 0.8])


def test_bad_settings_name_the_argument(digits, space, tmp_path):
    with pytest.raises(ValueError, match="space: B-ENAS searches ENAS cells"):
        BEnasSearch(DescriptorSpace((8, 8, 1), 10))
    with pytest.raises(ValueError, match="select_by: expected one of"):
        BEnasConfig(select_by="params")
    with pytest.raises(ValueError, match="epochs: expected a positive integer"):
        BEnasConfig(epochs=0)
    impossible = BEnasSearch(space, Constraints(max_params=10), BEnasConfig(epochs=1, **SMALL))
    with pytest.raises(InfeasibleConstraintsError, match=r"cheapest seen: params [\d,]+ vs max 10"):
        _run(impossible, digits, tmp_path)
