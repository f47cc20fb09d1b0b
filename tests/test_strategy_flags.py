"""Strategies declare their own flags; tools/search.py groups --help by strategy / space /
runner; B-ENAS is a strategy like the others (same search() path, quiet when not verbose)."""

import subprocess
import sys
import pathlib

import pytest
from absl import app

import keras_cnas as cnas
from keras_cnas.cli import search as cli
from keras_cnas.strategies import STRATEGIES, BEnas, MonteCarlo, RandomSearch

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_each_strategy_builds_from_its_declared_flags_with_their_defaults():
    assert STRATEGIES.get("montecarlo").from_flags({}).get_config() == MonteCarlo().get_config()
    assert RandomSearch.from_flags({"num_random": 9}).num_samples == 9
    assert RandomSearch.from_flags({"num_random": 9, "max_trials": 4}).num_samples == 4
    evolution = STRATEGIES.get("evolution").from_flags({"population_size": 3, "sample_size": 5})
    assert (evolution.population_size, evolution.sample_size, evolution.num_trials) == (3, 3, 100)
    assert STRATEGIES.get("lazy_greedy").from_flags({"cost_rule": "amr"}).cost_rules == ("amr",)
    assert STRATEGIES.get("rcas").from_flags({"cost_rule": "amr"}).cost_rules == ("uc", "apr", "amr")
    reinforce = STRATEGIES.get("reinforce").from_flags(
        {"alpha": 0.3, "penalty_beta": 2.0, "penalty_bounds": ["train_seconds=30"],
         "controller_learning_rate": 5e-3, "max_trials": 12})
    assert (reinforce.alpha, reinforce.beta, reinforce.num_trials) == (0.3, 2.0, 12)
    assert reinforce.penalty_bounds == {"train_seconds": 30.0}
    assert reinforce.config.learning_rate == 5e-3
    benas = STRATEGIES.get("benas").from_flags({"benas_epochs": 2, "controller_learning_rate": 5e-3,
                                                "batch_size": 32, "seed": 3})
    assert (benas.config.epochs, benas.config.controller_learning_rate,
            benas.config.batch_size, benas.config.seed) == (2, 5e-3, 32, 3)


def test_a_flag_shared_by_two_strategies_is_declared_once():
    declared = cli.strategy_flags()
    assert declared["num_random"][1] == ["montecarlo", "random"]
    assert declared["alpha"][1] == ["benas", "reinforce"]


def test_strategy_kwargs_of_an_unknown_strategy_is_a_clear_error():
    with pytest.raises(app.UsageError, match="--strategy=nope: unknown strategy .nope.; known .*montecarlo"):
        cli.strategy_kwargs("nope", {})
    with pytest.raises(app.UsageError, match="--penalty_bounds: expected cost=bound"):
        cli.strategy_kwargs("reinforce", {"penalty_bounds": ["oops"]})


def test_help_groups_every_flag_by_strategy_space_and_runner():
    run = lambda flag: subprocess.run([sys.executable, str(REPO / "tools" / "search.py"), flag],
                                      capture_output=True, text=True, timeout=300)
    short = run("--help")
    assert short.returncode == 0, short.stderr
    headers = [line[:-1] for line in short.stdout.splitlines() if line and not line[0].isspace()
               and line.endswith(":")]
    for group in ("data", "space", "constraints and export", "strategy", "strategy montecarlo",
                  "strategy benas, reinforce", "training", "search", "runner"):
        assert group in headers, headers
    assert short.stdout.count("--num_random:") == 1 and "--ray_address:" in short.stdout
    full = run("--helpfull").stdout
    assert "tools/search.py:" not in full  # every flag of the tool is in a group


@pytest.mark.slow  # ~30 s idle, 90 s on a busy machine: a supernet and a final network
def test_benas_runs_through_search_like_any_strategy_and_is_quiet(tmp_path, capsys):
    data = cnas.data.load("digits")
    space = cnas.spaces.EnasCellSpace(data.input_shape, data.num_classes, filters=4, max_blocks=3)
    strategy = BEnas(epochs=1, child_steps=2, batch_size=32, controller_samples=2,
                     select_samples=2, final_layers=2, lstm_size=8)
    result = cnas.search(space, strategy=strategy,
                         evaluator=cnas.training.KerasEvaluator(data, full_epochs=1),
                         search_dir=tmp_path, verbose=False, tensorboard=False, finalize=False)
    assert capsys.readouterr().out == ""
    assert result.best is not None and result.best.spec.num_layers == 2
    assert (tmp_path / "benas" / "state.json").is_file()


def test_benas_refuses_a_space_without_enas_cells(tmp_path):
    space = cnas.spaces.CategoricalSpace([2])
    table = {space.from_decisions([d]).key(): {"acc": d / 2} for d in range(2)}
    with pytest.raises(ValueError, match="space: B-ENAS searches ENAS cells"):
        cnas.search(space, strategy=BEnas(epochs=1),
                    evaluator=cnas.training.TabularEvaluator(table, metric="acc"),
                    search_dir=tmp_path, verbose=False)
