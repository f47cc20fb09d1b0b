"""Strategies side by side on NAS benchmark tables: mean regret after N queries.

Each search runs through ``keras_cnas.search`` with a ``TabularEvaluator`` (no training)
and ``max_trials=N``, so every strategy gets the whole budget. A query is a feasible
trial: the space checks the hard budget before a query, as a real search checks analytic
costs before training. Regret = best mean accuracy (%) among the table's feasible
architectures minus the best one the strategy found in its first N trials.

Settings: each table under a params bound and a FLOPs bound at its 10 / 25 / 50 %
quantile (10 %, 25 %, 50 % of the architectures feasible), on the table as published and
on a copy whose choice labels are shuffled per decision (the empty choice stays the
empty choice), declared unordered, so that an order in the labels cannot help by accident.
Budgets N = 25, 50, 100, 200, 20 seeds (the same seeds for every strategy).

A strategy whose budget only caps it (``ANYTIME``: its asks do not depend on
``max_trials``) runs once with the largest N, and its first N trials are exactly a run
with ``max_trials=N`` (``tests/test_tabular.py`` checks this); the others (Monte Carlo
scales its phases, evolution its population) run once per N.

Settings were chosen on NAS-Bench-Macro and Channel-Bench-Macro MobileNet;
Channel-Bench-Macro ResNet is reported as unseen (``--tuned``).

Usage:
  python benchmarks/tabular.py --data_dir=../shared/data [--seeds=20] [--queries=25,50,100,200]
      [--problems=nas-bench-macro,channel-bench-macro-mobilenet,channel-bench-macro-resnet]
      [--strategies=random,evolution,montecarlo,rcas,local_search,bayesopt] [--copies=original,shuffled]
      [--workers=2] [--json_out=regret.json]
  python benchmarks/tabular.py --from_json=run1.json,run2.json   # earlier runs side by side
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import logging
import math
import os
import pathlib
import sys
import tempfile
import time
from typing import Callable

from absl import app, flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

import keras_cnas as cnas  # noqa: E402
from keras_cnas.engine.search import _default_strategy  # noqa: E402
from keras_cnas.spaces.categorical import load_table  # noqa: E402
from keras_cnas.strategies import (  # noqa: E402
    RCAS,
    BayesOpt,
    LocalSearch,
    MonteCarlo,
    RandomSearch,
    RegularizedEvolution,
    Reinforce,
    Strategy,
    TPE,
)
from keras_cnas.training.tabular import TABULAR_BENCHMARKS, TabularBenchmark  # noqa: E402

#: name -> strategy for a budget of N queries on a table whose accuracy field (in %) is the
#: second argument; the search's max_trials=N then sets its budget. A new strategy gets a
#: line here.
STRATEGY_FACTORIES: dict[str, Callable[[int, str], Strategy]] = {
    "random": lambda n, metric: RandomSearch(),
    # A population of at most N / 2, so that half of the budget goes to mutations.
    "evolution": lambda n, metric: RegularizedEvolution(population_size=min(20, n // 2),
                                                        sample_size=5),
    # One fidelity in a table: a quarter random samples, the rest coordinate descent.
    "montecarlo": lambda n, metric: MonteCarlo(num_random=1, num_adaptive=3, num_full=0),
    # The three cost rules, then local search from the best set with the budget left.
    "rcas": lambda n, metric: RCAS(),
    "local_search": lambda n, metric: LocalSearch(),
    "bayesopt": lambda n, metric: BayesOpt(),
    # A setting tried on the tuning tables and not taken (docs/results.md): 5 random starts.
    "bayesopt_i5": lambda n, metric: BayesOpt(num_initial=5),
    # Optuna's TPE (pip install keras_cnas[tpe]); not in the default list: with the
    # infeasible proposals it tells, a 200-trial search grows to thousands of Optuna trials.
    "tpe": lambda n, metric: TPE(),
    # B-ENAS' controller without weight sharing; the tables' accuracies are in percent.
    # Not in the default list: a TensorFlow LSTM step per sample makes a 200-trial search
    # take ~30 s here (run it with --strategies=random,reinforce --seeds=5).
    "reinforce": lambda n, metric: Reinforce(reward_metric=metric, reward_scale=0.01),
}
DEFAULT_STRATEGIES = ["random", "evolution", "montecarlo", "rcas", "local_search", "bayesopt"]
#: Strategies whose asks do not depend on max_trials: one run at the largest N serves all.
ANYTIME = frozenset({"random", "rcas", "local_search", "bayesopt", "bayesopt_i5", "tpe",
                     "reinforce"})
COSTS = ("params", "flops")
QUANTILES = (0.10, 0.25, 0.50)
COPIES = ("original", "shuffled")

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", "../shared/data", "Directory with the benchmark folders.")
flags.DEFINE_integer("seeds", 20, "Seeds per setting.", lower_bound=1)
flags.DEFINE_list("queries", ["25", "50", "100", "200"], "Query budgets N.")
flags.DEFINE_list("problems", list(TABULAR_BENCHMARKS.names()), "Benchmark tables.")
flags.DEFINE_list("strategies", DEFAULT_STRATEGIES, "Strategies to compare.")
flags.DEFINE_list("copies", list(COPIES), "original: the table as published; shuffled: its "
                  "choice labels permuted per decision and declared unordered.")
flags.DEFINE_list("tuned", ["nas-bench-macro", "channel-bench-macro-mobilenet"],
                  "Tables the settings were chosen on; the others are marked unseen.")
flags.DEFINE_integer("workers", 2, "Processes running searches in parallel.", lower_bound=1)
flags.DEFINE_string("json_out", None, "Also write every figure to this JSON file.")
flags.DEFINE_string("runs_log", None, "Append every search to this JSON-lines file as it ends "
                    "and skip the searches already in it, so a stopped run resumes.")
flags.DEFINE_list("only_seeds", [], "Run only these of the --seeds (two processes sharing "
                  "a machine can split them; the report counts every seed in --runs_log).")
flags.DEFINE_bool("report_only", False, "Run nothing: report the searches in --runs_log, each "
                  "strategy over the seeds 0..k-1 that all of its settings have.")
flags.DEFINE_list("from_json", [], "Run nothing: print the tables of these --json_out files "
                  "of earlier runs, side by side (the settings both measured must agree).")


# --- the tables and their shuffled copies ---------------------------------------------------


def shuffled_copy(name: str, data_dir: str, out_dir: pathlib.Path, seed: int = 0) -> TabularBenchmark:
    """The benchmark ``name`` with each decision's choice labels permuted (the empty choice
    fixed), written to ``out_dir`` in the table's own key format, declared unordered."""
    bench = TABULAR_BENCHMARKS.get(name)
    rng = np.random.default_rng(seed)
    perms = []
    for size in bench.decision_sizes:
        movable = [v for v in range(size) if v != bench.empty_choice]
        perm = list(range(size))
        for v, w in zip(movable, rng.permutation(movable).tolist()):
            perm[v] = w
        perms.append(perm)
    table = load_table(pathlib.Path(data_dir) / bench.path)  # keys as in the file
    off = bench.key_offset
    out = {"".join(str(perms[i][int(c) - off] + off) for i, c in enumerate(key)): row
           for key, row in table.items()}
    path = out_dir / f"{name}-shuffled.json"
    path.write_text(json.dumps(out))
    return dataclasses.replace(bench, path=str(path), ordered=False)


_PROBLEMS: dict[tuple[str, str], tuple] = {}  # per process: (name, copy) -> (space, evaluator)


def problem(name: str, copy: str, data_dir: str, copies_dir: str):
    """The (space, evaluator) of a table or its shuffled copy, built once per process."""
    if (name, copy) not in _PROBLEMS:
        bench = TABULAR_BENCHMARKS.get(name)
        if copy == "shuffled":
            bench = dataclasses.replace(bench, path=str(pathlib.Path(copies_dir) / f"{name}-shuffled.json"),
                                        ordered=False)
        _PROBLEMS[(name, copy)] = bench.problem(data_dir)
    return _PROBLEMS[(name, copy)]


def budgets(name: str, data_dir: str) -> list[tuple[str, float, float, float]]:
    """(cost, quantile, bound, best feasible accuracy) for each budget of table ``name``."""
    space, evaluator = problem(name, "original", data_dir, "")
    table = evaluator.table
    keys = list(table)
    accuracy = np.array([table[k][evaluator.metric] for k in keys])
    out = []
    for cost in COSTS:
        values = np.array([space.cost_table[k][cost] for k in keys])
        for q in QUANTILES:
            bound = float(np.quantile(values, q))
            out.append((cost, q, bound, float(accuracy[values <= bound].max())))
    return out


# --- one search ---------------------------------------------------------------------------------


def run_one(job: tuple) -> tuple:
    """One search; returns (job, accuracy of each trial in order (None: not ok), seconds)."""
    name, copy, data_dir, copies_dir, cost, bound, strategy, n, seed = job
    logging.getLogger("keras_cnas").setLevel(logging.ERROR)  # no per-trial lines
    space, evaluator = problem(name, copy, data_dir, copies_dir)
    started = time.perf_counter()
    # tmpfs when there is one: the trial store commits after every trial.
    scratch = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(dir=scratch) as search_dir:
        result = cnas.search(space, cnas.Constraints(**{f"max_{cost}": bound}),
                             strategy=STRATEGY_FACTORIES[strategy](n, evaluator.metric),
                             evaluator=evaluator, max_trials=n, search_dir=search_dir, seed=seed,
                             finalize=False, verbose=False, tensorboard=False)
    found = [t.metrics[evaluator.metric] if t.ok else None for t in result.trials]
    return job, found, time.perf_counter() - started


def job_key(job: tuple) -> tuple:
    """What identifies a search across runs: the job without its directories."""
    name, copy, _, _, cost, bound, strategy, n, seed = job
    return name, copy, cost, bound, strategy, n, seed


def best_of_first(found: list[float | None], n: int) -> float | None:
    values = [v for v in found[:n] if v is not None]
    return max(values) if values else None


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95 % normal-approximation confidence interval."""
    a = np.asarray(values, dtype=float)
    half = 1.96 * a.std(ddof=1) / math.sqrt(len(a)) if len(a) > 1 else float("nan")
    return float(a.mean()), float(half)


def ratio_text(mean: float, reference: float) -> str:
    return f"{mean / reference:.2f}x" if reference > 0 else ("=" if mean == 0 else "—")


# --- main ----------------------------------------------------------------------------------------


def main(argv):
    del argv
    queries = sorted(int(q) for q in FLAGS.queries)
    strategies = list(FLAGS.strategies)
    for s in strategies:
        if s not in STRATEGY_FACTORIES:
            raise app.UsageError(f"--strategies: unknown {s!r}; known: {', '.join(STRATEGY_FACTORIES)}")
    if "random" not in strategies:
        strategies.insert(0, "random")  # the baseline every ratio is taken against
    for c in FLAGS.copies:
        if c not in COPIES:
            raise app.UsageError(f"--copies: unknown {c!r}; known: {', '.join(COPIES)}")
    for name in FLAGS.problems:
        TABULAR_BENCHMARKS.get(name)  # KeyError listing the known ones
    default = _default_strategy().name
    if FLAGS.from_json:
        figures = merge_figures(FLAGS.from_json)
        names = list(dict.fromkeys(["random", *STRATEGY_FACTORIES,
                                    *(f["strategy"] for f in figures)]))
        verdicts = print_tables(figures, names, default, FLAGS.tuned)
        print("\n" + json.dumps({"tabular_regret": len(figures), "goal_met": sum(verdicts),
                                 "goal_settings": len(verdicts)}))
        return
    copies_dir = tempfile.mkdtemp(prefix="tabular_copies_")
    for name in FLAGS.problems:
        if "shuffled" in FLAGS.copies:
            shuffled_copy(name, FLAGS.data_dir, pathlib.Path(copies_dir))
    settings = {name: budgets(name, FLAGS.data_dir) for name in FLAGS.problems}
    jobs = []
    for name, rows in settings.items():
        for copy in FLAGS.copies:
            for cost, _, bound, _ in rows:
                for strategy in strategies:
                    # An RCAS needs an empty choice: Channel-Bench-Macro has none.
                    if strategy in ("rcas",) and TABULAR_BENCHMARKS.get(name).empty_choice is None:
                        continue
                    budgets_run = [queries[-1]] if strategy in ANYTIME else queries
                    for n in budgets_run:
                        for seed in range(FLAGS.seeds):
                            jobs.append((name, copy, FLAGS.data_dir, copies_dir, cost, bound,
                                         strategy, n, seed))
    # Seed by seed, so that a run stopped early has every setting for its first seeds; in
    # each seed the model-based searches first (they take longest).
    jobs.sort(key=lambda j: (j[8], j[6] != "bayesopt"))
    found: dict[tuple, list] = {}
    log = pathlib.Path(FLAGS.runs_log) if FLAGS.runs_log else None
    if log is not None and log.exists():
        for line in log.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                found[tuple(row["job"])] = row["found"]
    only = {int(s) for s in FLAGS.only_seeds} or set(range(FLAGS.seeds))
    todo = [] if FLAGS.report_only else [j for j in jobs
                                         if job_key(j) not in found and j[8] in only]
    done = sum(job_key(j) in found for j in jobs)
    print(f"{len(todo)} searches on {FLAGS.workers} processes ({done} of {len(jobs)} in "
          f"{log}) ..." if log else f"{len(todo)} searches on {FLAGS.workers} processes ...",
          flush=True)
    started = time.time()
    seconds: dict[str, float] = {}
    with concurrent.futures.ProcessPoolExecutor(FLAGS.workers) as pool, \
            (open(log, "a") if log is not None else open(os.devnull, "w")) as out:
        futures = [pool.submit(run_one, job) for job in todo]
        for k, future in enumerate(concurrent.futures.as_completed(futures)):
            job, trials, secs = future.result()
            found[job_key(job)] = trials
            out.write(json.dumps({"job": list(job_key(job)), "found": trials,
                                  "seconds": round(secs, 3)}) + "\n")
            out.flush()
            seconds[job[6]] = seconds.get(job[6], 0.0) + secs
            if (k + 1) % max(1, len(todo) // 20) == 0:
                print(f"  {k + 1}/{len(todo)} after {time.time() - started:.0f} s", flush=True)
    wall = time.time() - started
    print(f"done in {wall:.0f} s; search seconds per strategy: "
          + ", ".join(f"{s} {v:.0f}" for s, v in seconds.items()) + "\n")

    def run_n(strategy, n):
        return queries[-1] if strategy in ANYTIME else n

    # Each strategy over the seeds 0..k-1 that every one of its searches has.
    seeds_of = {}
    for strategy in strategies:
        mine = [j for j in jobs if j[6] == strategy]
        seeds_of[strategy] = next((k for k in range(FLAGS.seeds) if any(
            j[8] == k and job_key(j) not in found for j in mine)), FLAGS.seeds)

    def results(name, copy, cost, bound, strategy, n):
        return [found.get((name, copy, cost, bound, strategy, run_n(strategy, n), s))
                for s in range(seeds_of[strategy])]

    figures = []
    for name, rows in settings.items():
        for copy in FLAGS.copies:
            for cost, q, bound, best in rows:
                for n in queries:
                    for strategy in strategies:
                        runs = results(name, copy, cost, bound, strategy, n)
                        if not runs or any(r is None for r in runs):
                            continue  # not run here (an RCAS without an empty choice)
                        regrets = [best - (best_of_first(r, n) or 0.0) for r in runs]
                        mean, half = mean_ci(regrets)
                        figures.append({"table": name, "labels": copy, "cost": cost, "quantile": q,
                                        "bound": bound, "best_feasible": best, "queries": n,
                                        "strategy": strategy, "mean_regret": mean, "ci95": half,
                                        "seeds": len(runs),
                                        "mean_trials": float(np.mean([min(len(r), n)
                                                                      for r in runs]))})
    if FLAGS.json_out:
        pathlib.Path(FLAGS.json_out).write_text(json.dumps(figures, indent=1))
    verdicts = print_tables(figures, strategies, default, FLAGS.tuned)
    print("\n" + json.dumps({"tabular_regret": len(figures), "seeds": seeds_of,
                             "goal_met": sum(verdicts), "goal_settings": len(verdicts),
                             "wall_seconds": round(wall)}))


def merge_figures(paths: list[str]) -> list[dict]:
    """The figures of several runs' ``--json_out`` files as one list. A setting two runs
    both measured over the same seeds (random search, the reference every run includes)
    must agree: a seed fixes a search, so the same searches give the same figures. Over
    different seeds, the figure with more seeds is kept."""
    merged: dict[tuple, dict] = {}
    for path in paths:
        for f in json.loads(pathlib.Path(path).read_text()):
            key = (f["table"], f["labels"], f["cost"], f["quantile"], f["queries"], f["strategy"])
            old = merged.get(key)
            if old is not None and old["seeds"] == f["seeds"] \
                    and old["mean_regret"] != f["mean_regret"]:
                raise app.UsageError(f"--from_json: {path} disagrees with an earlier file on "
                                     f"{key}: {f['mean_regret']} vs {old['mean_regret']} "
                                     f"over {f['seeds']} seeds (another version of the strategy?)")
            if old is None or f["seeds"] > old["seeds"]:
                merged[key] = f
    return list(merged.values())


def print_tables(figures: list[dict], strategies: list[str], default: str,
                 tuned: list[str]) -> list[bool]:
    """Prints every setting and the per-table summary; returns the goal verdict of each
    summary row with N >= 50."""
    by = {(f["table"], f["labels"], f["cost"], f["quantile"], f["queries"], f["strategy"]): f
          for f in figures}
    settings = list(dict.fromkeys((f["table"], f["labels"], f["cost"], f["quantile"], f["bound"],
                                   f["queries"]) for f in figures))
    shown = [s for s in strategies if any(f["strategy"] == s for f in figures)]
    seeds = {s: sorted({f["seeds"] for f in figures if f["strategy"] == s}) for s in shown}
    uniform = len({tuple(v) for v in seeds.values()}) == 1
    print("Mean regret (accuracy points) ± 95 % CI over "
          + (f"{'/'.join(map(str, seeds[shown[0]]))} seeds" if uniform else "the seeds named")
          + ", and the ratio to random search\n")

    def head(s: str) -> str:
        notes = (["default"] if s == default else []) + (
            [] if uniform else [f"{'/'.join(map(str, seeds[s]))} seeds"])
        return s + (f" ({', '.join(notes)})" if notes else "")

    print("| table | labels | bound | N | " + " | ".join(head(s) for s in shown) + " |")
    print("|" + "---|" * (4 + len(shown)))
    summary: dict[tuple, dict[str, list[float]]] = {}
    for name, copy, cost, q, bound, n in settings:
        unseen = "" if name in tuned else " (unseen)"
        cells = []
        for strategy in shown:
            f = by.get((name, copy, cost, q, n, strategy))
            if f is None:
                cells.append("n/a")
                continue
            summary.setdefault((name, copy, n), {}).setdefault(strategy, []).append(
                f["mean_regret"])
            cell = f"{f['mean_regret']:.2f} ± {f['ci95']:.2f}"
            if f["mean_trials"] < n:
                cell += f" [{f['mean_trials']:.0f} trials]"
            ref = by.get((name, copy, cost, q, n, "random"))
            if strategy != "random" and ref is not None:
                cell += f" ({ratio_text(f['mean_regret'], ref['mean_regret'])})"
            cells.append(cell)
        print(f"| {name}{unseen} | {copy} | {cost} ≤ q{int(q * 100)} ({bound:,.0f}) | {n} | "
              + " | ".join(cells) + " |")

    print("\nOver the six bounds of each table (mean regret, ratio to random); goal for N ≥ 50: "
          f"best ≤ 0.5x random, the default ({default}) ≤ 1x\n")
    print("| table | labels | N | " + " | ".join(head(s) for s in shown) + " | goal |")
    print("|" + "---|" * (4 + len(shown)))
    verdicts = []
    for name, copy, n in dict.fromkeys((t, c, n) for t, c, _, _, _, n in settings):
        unseen = "" if name in tuned else " (unseen)"
        # Every bound has the same seeds: the mean of the bounds' means is the mean regret.
        per = {s: float(np.mean(v)) for s, v in summary.get((name, copy, n), {}).items()}
        ref = per.get("random", float("nan"))
        cells = [f"{per[s]:.3f}" + ("" if s == "random" else f" ({ratio_text(per[s], ref)})")
                 if s in per else "n/a" for s in shown]
        best = min((v for s, v in per.items() if s != "random"), default=float("nan"))
        ok = best <= 0.5 * ref and per.get(default, float("inf")) <= ref
        goal = "—" if n < 50 else ("met" if ok else "not met")
        if n >= 50:
            verdicts.append(ok)
        print(f"| {name}{unseen} | {copy} | {n} | " + " | ".join(cells) + f" | {goal} |")
    return verdicts


if __name__ == "__main__":
    app.run(main)
