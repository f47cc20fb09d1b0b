"""tools/search.py as a user runs it: flags, errors, kill -9 and --resume."""

import json
import pathlib
import sqlite3
import subprocess
import sys
import time

import pytest
from conftest import finished_rows, sigkill_after_finished

REPO = pathlib.Path(__file__).resolve().parents[1]
SMALL = ["--dataset=digits", "--space=descriptor", "--max_conv_layers=2", "--max_filters=8",
         "--max_fc_layers=1", "--max_hidden=16", "--traction_epochs=1", "--full_epochs=2",
         "--batch_size=64"]


def search_cmd(*args: str) -> list[str]:
    return [sys.executable, "tools/search.py", *SMALL, *args]


def run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(search_cmd(*args), cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_search_killed_with_sigkill_resumes_to_exactly_the_requested_trials(tmp_path):
    search_dir = tmp_path / "run"
    args = ["--strategy=montecarlo", "--num_random=5", "--num_adaptive=5", "--num_full=2",
            f"--search_dir={search_dir}", "--nofinalize"]
    proc = subprocess.Popen(search_cmd(*args), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    db = search_dir / "trials.db"
    sigkill_after_finished(proc, db, 3, timeout=240, poll=0.1)
    before = finished_rows(db)  # exactly what had finished at the kill
    assert 3 <= len(before) < 12

    out = run(*args, "--resume")
    assert out.returncode == 0, out.stderr[-3000:]
    after = finished_rows(db)
    with sqlite3.connect(db) as conn:
        ids = [row[0] for row in conn.execute("SELECT id FROM trials ORDER BY id")]
    assert ids == list(range(12))  # exactly the requested number, no duplicate ids
    assert all(after[i] == row for i, row in before.items())  # finished trials unchanged
    summary = json.loads((search_dir / "summary.json").read_text())
    assert summary["num_trials"] == 12


def test_impossible_constraints_exit_non_zero_within_60_seconds(tmp_path):
    started = time.time()
    out = run("--max_params=5", f"--search_dir={tmp_path}", timeout=120)
    assert time.time() - started < 60
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "broke the hard constraints" in out.stderr and "raise max_params" in out.stderr
    # flags.json is written when the run starts, so a run that fails still says how it began.
    assert json.loads((tmp_path / "flags.json").read_text())["max_params"] == 5


def test_unknown_names_list_the_known_ones(tmp_path):
    for flag, known in (("--strategy=annealing", "bayesopt|evolution|lazy_greedy|local_search|montecarlo|random"),
                        ("--space=cells", "descriptor|blockset"),
                        ("--dataset=imagenet", "cifar10|digits|mnist")):
        out = subprocess.run([sys.executable, "tools/search.py", flag, f"--search_dir={tmp_path}"],
                             cwd=REPO, capture_output=True, text=True, timeout=120)
        assert out.returncode != 0 and known in out.stderr and "Traceback" not in out.stderr


def test_a_search_dir_holding_a_search_needs_resume_or_overwrite(tmp_path):
    args = ["--strategy=random", "--max_trials=1", f"--search_dir={tmp_path}", "--nofinalize"]
    assert run(*args).returncode == 0
    again = run(*args)
    assert again.returncode != 0 and "already holds a search (1 trials)" in again.stderr
    assert run(*args, "--overwrite").returncode == 0
    assert json.loads((tmp_path / "flags.json").read_text())["overwrite"] is True


def test_max_fraction_bounds_memory_and_flops_at_a_fraction_of_a_reference(tmp_path):
    first = tmp_path / "unconstrained"
    assert run("--strategy=random", "--max_trials=2", f"--search_dir={first}").returncode == 0
    ref = json.loads((first / "summary.json").read_text())["best"]["costs"]
    second = tmp_path / "half"
    out = run("--strategy=random", "--max_trials=2", f"--search_dir={second}", "--nofinalize",
              "--max_fraction=0.5", f"--reference={first}")
    assert out.returncode == 0, out.stderr[-2000:]
    bounds = json.loads((second / "summary.json").read_text())["config"]["constraints"]
    assert bounds == {"max_memory_bytes": 0.5 * ref["memory_bytes"], "max_flops": 0.5 * ref["flops"]}
    with sqlite3.connect(second / "trials.db") as conn:
        costs = [json.loads(c) for (c,) in conn.execute("SELECT costs_json FROM trials")]
    assert len(costs) == 2 and all(c["memory_bytes"] <= bounds["max_memory_bytes"]
                                   and c["flops"] <= bounds["max_flops"] for c in costs)
    bad = run("--max_fraction=0.5", f"--search_dir={tmp_path / 'x'}")
    assert bad.returncode != 0 and "--max_fraction needs --reference" in bad.stderr


def test_ensemble_size_reports_the_majority_vote_test_accuracy(tmp_path):
    out = run("--strategy=random", "--max_trials=3", "--ensemble_size=2", f"--search_dir={tmp_path}",
              "--nofinalize")
    assert out.returncode == 0, out.stderr[-2000:]
    ensemble = json.loads((tmp_path / "ensemble.json").read_text())
    assert ensemble["members"] == 2 and 0.0 <= ensemble["accuracy"] <= 1.0
    assert "ensemble of the best 2 trials, majority vote: test accuracy" in out.stdout


def test_the_default_strategy_searches_digits_spends_its_budget_and_exports(tmp_path):
    """No --strategy: the benchmark's winner (Bayesian optimisation) under a params bound,
    its surrogate steering the trials after the random start, then a verified int8 export."""
    search_dir = tmp_path / "default"
    out = run("--max_trials=12", "--full_epochs=1", "--max_params=5000", "--export=int8",
              f"--search_dir={search_dir}", timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((search_dir / "summary.json").read_text())
    assert summary["config"]["strategy"]["name"] == "bayesopt"
    assert summary["num_trials"] == 12 and summary["ended_early"] is None
    with sqlite3.connect(search_dir / "trials.db") as conn:
        phases = [row[0] for row in conn.execute("SELECT phase FROM trials ORDER BY id")]
        params = [json.loads(row[0])["params"] for row in conn.execute("SELECT costs_json FROM trials")]
    assert phases[:10] == ["random"] * 10 and "model" in phases[10:]
    assert max(params) <= 5000 and summary["best"]["costs"]["params"] <= 5000
    export = json.loads((search_dir / "best" / "export.json").read_text())
    assert export["quantize"] == "int8" and export["tflite_bytes"] > 0
    assert (search_dir / "best" / "model.tflite").stat().st_size == export["tflite_bytes"]


@pytest.mark.slow  # ~70 s; lazy greedy itself is tested on tables in test_lazy_greedy
def test_blockset_lazy_greedy_search_on_digits_completes_and_exports(tmp_path):
    """Issue 5's end-to-end run, small: RCAS' APR rule over a 7-position block-set, trained
    with the RCAS SGD recipe, then the best model exported to a verified int8 TFLite."""
    search_dir = tmp_path / "rcas"
    cmd = [sys.executable, "tools/search.py", "--dataset=digits", "--space=blockset",
           "--stage_positions=1,1,1,1,1,1,1", "--width_multiplier=0.35", "--head_filters=32",
           "--strategy=lazy_greedy", "--cost_rule=apr", "--max_params=16000",
           "--full_epochs=1", "--batch_size=64", "--rcas_recipe", "--export=int8",
           f"--search_dir={search_dir}"]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((search_dir / "summary.json").read_text())
    report = summary["strategy_report"]
    path = report["rules"]["apr"]["path"]
    assert len(path) >= 2 and report["evaluations"] == summary["num_trials"]
    assert all(step["costs"]["params"] <= 16000 for step in path)
    assert summary["best"]["costs"]["params"] <= 16000
    assert summary["config"]["evaluator"]["config"]["optimizer"] == "sgd_nesterov"
    export = json.loads((search_dir / "best" / "export.json").read_text())
    assert export["quantize"] == "int8" and export["tflite_bytes"] > 0
    assert (search_dir / "best" / "model.tflite").stat().st_size == export["tflite_bytes"]
    assert "exported int8 model.tflite" in out.stdout


def test_reinforce_penalises_the_measured_training_time(tmp_path):
    """B-ENAS' reward from the shell: a soft train_seconds bound is priced after training."""
    search_dir = tmp_path / "reinforce"
    out = run("--strategy=reinforce", "--max_trials=3", "--lstm_size=16", "--max_params=5000",
              "--penalty_bounds=train_seconds=0.001", f"--search_dir={search_dir}", "--nofinalize")
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((search_dir / "summary.json").read_text())
    rewards = summary["strategy_report"]["rewards"]
    assert len(rewards) == 3 and summary["strategy_report"]["policy_updates"] >= 3
    for r in rewards:  # any real training takes far over 10 x 1 ms: the capped penalty 10
        assert r["penalty"] == 10.0 and r["reward"] == pytest.approx(r["accuracy"] - 1.0)
    bad = run("--strategy=reinforce", "--penalty_bounds=train_seconds", f"--search_dir={tmp_path / 'x'}")
    assert bad.returncode != 0 and "--penalty_bounds: expected cost=bound items" in bad.stderr


@pytest.mark.slow  # ~30 s; test_benas covers the bound, selection and resume
def test_benas_search_honours_the_params_bound_and_exports(tmp_path):
    """B-ENAS from the shell, tiny: weight-sharing epochs, SelectCell, the final network
    trained from scratch under --max_params, and its int8 export."""
    search_dir = tmp_path / "benas"
    cmd = [sys.executable, "tools/search.py", "--dataset=digits", "--space=enas_cell",
           "--strategy=benas", "--filters=4", "--max_blocks=3", "--benas_epochs=1",
           "--child_steps=3", "--controller_samples=2", "--select_samples=2", "--final_layers=3",
           "--lstm_size=8", "--max_params=8000", "--full_epochs=1", "--batch_size=64",
           "--export=int8", f"--search_dir={search_dir}"]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "B-ENAS epoch 1/1" in out.stdout and "B-ENAS chose cell" in out.stdout
    summary = json.loads((search_dir / "summary.json").read_text())
    assert summary["best"]["costs"]["params"] <= 8000
    assert summary["config"]["benas"]["final_layers"] == 3
    export = json.loads((search_dir / "best" / "export.json").read_text())
    assert export["quantize"] == "int8" and export["tflite_bytes"] > 0
    wrong = run("--strategy=benas", f"--search_dir={tmp_path / 'x'}")  # SMALL: descriptor space
    assert wrong.returncode != 0 and "use --space=enas_cell" in wrong.stderr


def test_no_trial_meeting_a_measured_bound_exits_non_zero_naming_it_and_the_closest(tmp_path):
    # Host latency is only known after training: every trial is measured, none fits.
    out = run("--strategy=random", "--max_trials=2", "--max_latency_ms=0.00001",
              f"--search_dir={tmp_path}")
    assert out.returncode != 0 and "Traceback" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: no trial met the bounds: 2 of 2 trials broke max_latency_ms; "
                           "the closest, trial "), last
    assert "> max 1e-05 " in last
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["best"] is None and summary["no_best"] in last
    for noise in ("Found untraced functions", "Using new converter", "Sharding callback"):
        assert noise not in out.stderr


def test_an_impossible_flash_bound_stops_before_training_naming_the_cheapest_file(tmp_path):
    # The flatbuffer size is priced from the spec: no candidate is trained to find out.
    out = run("--strategy=random", "--max_trials=2", "--max_tflite_bytes=1KiB",
              f"--search_dir={tmp_path}")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "broke the hard constraints" in last, last
    assert "the cheapest costs seen: tflite_bytes " in last and "max_tflite_bytes=1,024" in last
    with sqlite3.connect(tmp_path / "trials.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM trials").fetchone()[0] == 0


def test_device_preset_bounds_the_search_and_records_where_each_bound_came_from(tmp_path):
    out = run("--strategy=random", "--max_trials=1", "--device=nano33ble",
              "--max_arena_bytes=100KiB", f"--search_dir={tmp_path}", "--nofinalize")
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    config = summary["config"]
    assert config["constraints"] == {"max_arena_bytes": 102400, "max_tflite_bytes": 786432}
    assert config["bound_sources"] == {
        "max_arena_bytes": "flag --max_arena_bytes=100KiB",
        "max_tflite_bytes": "device nrf52840: flash 1,048,576 B - reserve 262,144 B"}
    assert config["device"]["name"] == "nrf52840" and config["device"]["sources"]
    measured = config["evaluator"]["config"]
    assert measured["export_quantize"] == "int8" and measured["export_int8_io"] is True
    assert "device: nrf52840: Nordic nRF52840" in out.stdout
    unknown = run("--device=uno", f"--search_dir={tmp_path / 'x'}")
    assert unknown.returncode != 0 and "Traceback" not in unknown.stderr
    assert "--device: unknown device 'uno'; known: stm32f746" in unknown.stderr
