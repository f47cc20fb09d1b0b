"""tools/search.py as a user runs it: flags, errors, kill -9 and --resume."""

import json
import pathlib
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SMALL = ["--dataset=digits", "--space=descriptor", "--max_conv_layers=2", "--max_filters=8",
         "--max_fc_layers=1", "--max_hidden=16", "--traction_epochs=1", "--full_epochs=2",
         "--batch_size=64"]


def search_cmd(*args: str) -> list[str]:
    return [sys.executable, "tools/search.py", *SMALL, *args]


def run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(search_cmd(*args), cwd=REPO, capture_output=True, text=True, timeout=timeout)


def finished_rows(db: pathlib.Path) -> dict[int, tuple]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT id, status, spec_json, metrics_json, costs_json, score FROM trials "
                            "WHERE status IN ('COMPLETED', 'FAILED', 'INFEASIBLE')").fetchall()
    return {row[0]: row for row in rows}


def test_search_killed_with_sigkill_resumes_to_exactly_the_requested_trials(tmp_path):
    search_dir = tmp_path / "run"
    args = ["--strategy=montecarlo", "--num_random=5", "--num_adaptive=5", "--num_full=2",
            f"--search_dir={search_dir}", "--nofinalize"]
    proc = subprocess.Popen(search_cmd(*args), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    db = search_dir / "trials.db"
    deadline = time.time() + 240
    before: dict[int, tuple] = {}
    while time.time() < deadline and proc.poll() is None:
        if db.exists():
            try:
                before = finished_rows(db)
            except sqlite3.OperationalError:  # schema not created yet
                before = {}
            if len(before) >= 3:
                break
        time.sleep(0.1)
    assert proc.poll() is None, "the search ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
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


def test_unknown_names_list_the_known_ones(tmp_path):
    for flag, known in (("--strategy=annealing", "evolution|lazy_greedy|montecarlo|random|rcas"),
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
