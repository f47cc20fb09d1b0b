"""Strategies side by side on NAS benchmark tables: mean regret after N queries.

Each search runs through ``keras_cnas.search`` with a ``TabularEvaluator`` (no training).
A query is a feasible trial: the space checks the hard budget before a query, as a real
search checks analytic costs before training. Regret = best mean accuracy (%) among the
table's feasible architectures minus the best one the strategy found.

Budgets: params (and, on NAS-Bench-Macro, FLOPs) at the 10 / 25 / 50 % quantiles of the
table, so that 10 %, 25 % and 50 % of the architectures are feasible.

Usage:
  python benchmarks/tabular.py --data_dir=../shared/data [--seeds=20] [--queries=50,100,200]
      [--problems=nas-bench-macro,channel-bench-macro-mobilenet,channel-bench-macro-resnet]
      [--strategies=random,evolution,montecarlo,rcas,reinforce] [--workers=2]
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import math
import pathlib
import sys
import tempfile
import time
from typing import Callable

from absl import app, flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

import keras_cnas as cnas  # noqa: E402
from keras_cnas.strategies import (  # noqa: E402
    RCAS,
    MonteCarlo,
    RandomSearch,
    RegularizedEvolution,
    Reinforce,
    Strategy,
)
from keras_cnas.training.tabular import TABULAR_BENCHMARKS, tabular_problem  # noqa: E402

#: name -> strategy for a budget of N queries on a table whose accuracy field (in %) is the
#: second argument. A new strategy gets a line here.
STRATEGY_FACTORIES: dict[str, Callable[[int, str], Strategy]] = {
    "random": lambda n, metric: RandomSearch(num_samples=n),
    "evolution": lambda n, metric: RegularizedEvolution(population_size=min(20, n // 2),
                                                        sample_size=5, num_trials=n),
    # One fidelity in a table: a quarter random samples, the rest coordinate descent.
    "montecarlo": lambda n, metric: MonteCarlo(num_random=n // 4, num_adaptive=n - n // 4,
                                               num_full=0),
    # RCAS runs its three cost rules to completion (or until N evaluations).
    "rcas": lambda n, metric: RCAS(),
    # B-ENAS' controller without weight sharing; the tables' accuracies are in percent.
    "reinforce": lambda n, metric: Reinforce(num_trials=n, reward_metric=metric, reward_scale=0.01),
}
BUDGETS = {"nas-bench-macro": ("params", "flops"),
           "channel-bench-macro-mobilenet": ("params",),
           "channel-bench-macro-resnet": ("params",)}
QUANTILES = (0.10, 0.25, 0.50)

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", "../shared/data", "Directory with the benchmark folders.")
flags.DEFINE_integer("seeds", 20, "Seeds per setting.", lower_bound=1)
flags.DEFINE_list("queries", ["50", "100", "200"], "Query budgets N.")
flags.DEFINE_list("problems", list(BUDGETS), "Benchmark tables.")
flags.DEFINE_list("strategies", list(STRATEGY_FACTORIES), "Strategies to compare.")
flags.DEFINE_integer("workers", 2, "Processes running searches in parallel.", lower_bound=1)
flags.DEFINE_string("json_out", None, "Also write every figure to this JSON file.")


def budgets(problem: str, data_dir: str) -> list[tuple[str, float, float, str]]:
    """(cost, quantile, bound, best feasible accuracy) for each budget of ``problem``."""
    space, evaluator = tabular_problem(problem, data_dir)
    table = evaluator.table
    out = []
    for cost in BUDGETS[problem]:
        values = np.array([space.cost_table[k][cost] for k in table])
        accuracy = np.array([table[k][evaluator.metric] for k in table])
        for q in QUANTILES:
            bound = float(np.quantile(values, q))
            out.append((cost, q, bound, float(accuracy[values <= bound].max())))
    return out


def run_one(job: tuple) -> tuple:
    """One search; returns (job, best accuracy found or None, trials, seconds)."""
    problem, data_dir, cost, bound, strategy, n, seed = job
    logging.getLogger("keras_cnas").setLevel(logging.WARNING)  # no per-trial lines
    space, evaluator = tabular_problem(problem, data_dir)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as search_dir:
        result = cnas.search(space, cnas.Constraints(**{f"max_{cost}": bound}),
                             strategy=STRATEGY_FACTORIES[strategy](n, evaluator.metric),
                             evaluator=evaluator,
                             max_trials=n, search_dir=search_dir, seed=seed, finalize=False,
                             verbose=False)
    found = [t.metrics[evaluator.metric] for t in result.trials if t.ok]
    return job, (max(found) if found else None), len(result.trials), time.perf_counter() - started


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95 % normal-approximation confidence interval."""
    a = np.asarray(values, dtype=float)
    half = 1.96 * a.std(ddof=1) / math.sqrt(len(a)) if len(a) > 1 else float("nan")
    return float(a.mean()), float(half)


def main(argv):
    del argv
    queries = [int(q) for q in FLAGS.queries]
    for name in FLAGS.strategies:
        if name not in STRATEGY_FACTORIES:
            raise app.UsageError(f"--strategies: unknown {name!r}; known: {', '.join(STRATEGY_FACTORIES)}")
    for problem in FLAGS.problems:
        TABULAR_BENCHMARKS.get(problem)  # KeyError listing the known ones
    settings = {problem: budgets(problem, FLAGS.data_dir) for problem in FLAGS.problems}
    jobs = [(problem, FLAGS.data_dir, cost, bound, strategy, n, seed)
            for problem, rows in settings.items() for cost, _, bound, _ in rows
            for strategy in FLAGS.strategies for n in queries for seed in range(FLAGS.seeds)]
    print(f"{len(jobs)} searches on {FLAGS.workers} processes ...", flush=True)
    started = time.time()
    found: dict[tuple, tuple] = {}
    with concurrent.futures.ProcessPoolExecutor(FLAGS.workers) as pool:
        for job, best, trials, seconds in pool.map(run_one, jobs, chunksize=8):
            found[job] = (best, trials, seconds)
    print(f"done in {time.time() - started:.0f} s\n")

    figures = []
    header = "| table | budget | N | " + " | ".join(f"{s} regret" for s in FLAGS.strategies) + " |"
    print(header)
    print("|" + "---|" * (3 + len(FLAGS.strategies)))
    for problem, rows in settings.items():
        for cost, q, bound, best in rows:
            for n in queries:
                cells = []
                for strategy in FLAGS.strategies:
                    results = [found[(problem, FLAGS.data_dir, cost, bound, strategy, n, s)]
                               for s in range(FLAGS.seeds)]
                    regrets = [best - (r[0] if r[0] is not None else 0.0) for r in results]
                    mean, half = mean_ci(regrets)
                    misses = sum(r[0] is None for r in results)
                    evaluations = float(np.mean([r[1] for r in results]))
                    cells.append(f"{mean:.2f} ± {half:.2f}"
                                 + (f" [{evaluations:.0f} evals]" if evaluations < n else "")
                                 + (f" ({misses} found none)" if misses else ""))
                    figures.append({"table": problem, "cost": cost, "quantile": q, "bound": bound,
                                    "best_feasible": best, "queries": n, "strategy": strategy,
                                    "mean_regret": mean, "ci95": half, "seeds": FLAGS.seeds,
                                    "mean_trials": float(np.mean([r[1] for r in results]))})
                print(f"| {problem} | {cost} ≤ q{int(q * 100)} ({bound:,.0f}) | {n} | " + " | ".join(cells) + " |")
    if FLAGS.json_out:
        pathlib.Path(FLAGS.json_out).write_text(json.dumps(figures, indent=1))
    print("\n" + json.dumps({"tabular_regret": len(figures), "seeds": FLAGS.seeds}))


if __name__ == "__main__":
    app.run(main)
