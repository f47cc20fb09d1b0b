"""Reports of a real (table-backed) search: rejected proposals recorded, plots with the
right points, valid PNGs, the Markdown page, a search still running, tools/report.py."""

import json
import pathlib
import subprocess
import sys
import threading

import matplotlib.image
import numpy as np
import pytest

import keras_cnas as cnas
from keras_cnas import report
from keras_cnas.engine import TrialStore
from keras_cnas import ranking
from keras_cnas.spaces import CategoricalSpace
from keras_cnas.strategies import MonteCarlo, RandomSearch
from keras_cnas.training.tabular import TabularEvaluator
from keras_cnas.trial import TrialStatus

REPO = pathlib.Path(__file__).resolve().parents[1]
SIZES = [4, 4, 4, 4]
MAX_PARAMS = 7000
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _problem():
    """Accuracy peaks at (3, 1, 2, 0); params grow with the decisions' sum. Architectures
    whose last decision is 3 are missing from the table: they are FAILED trials."""
    space = CategoricalSpace(SIZES)
    table, costs = {}, {}
    for d in np.ndindex(*SIZES):
        key = space.from_decisions(list(d)).key()
        costs[key] = {"params": 1000 * (1 + sum(d)), "flops": 10.0 * (1 + d[0])}
        if d[3] != 3:
            table[key] = {"acc": 1.0 - 0.05 * sum(abs(a - b) for a, b in zip(d, (3, 1, 2, 0)))}
    return CategoricalSpace(SIZES, costs=costs), TabularEvaluator(table, metric="acc")


@pytest.fixture(scope="module")
def search_dir(tmp_path_factory):
    space, evaluator = _problem()
    path = tmp_path_factory.mktemp("search")
    cnas.search(space, cnas.Constraints(max_params=MAX_PARAMS),
                strategy=MonteCarlo(num_random=12, num_adaptive=8, num_full=4),
                evaluator=evaluator, search_dir=path, verbose=False)
    return path


@pytest.fixture(scope="module")
def record(search_dir):
    record = report.load_search(search_dir)
    # The fixture exercises every group the plots draw.
    assert {t.fidelity for t in record.trials if t.ok} == {"traction", "full"}
    assert any(t.status == TrialStatus.FAILED for t in record.trials)
    assert record.rejected
    return record


def _scatter_points(ax, prefix: str) -> int:
    return sum(len(c.get_offsets()) for c in ax.collections if c.get_label().startswith(prefix))


def test_rejected_proposals_are_recorded_with_the_costs_that_broke_the_bound(search_dir, record):
    summary = json.loads((search_dir / "summary.json").read_text())
    assert len(record.rejected) == summary["rejected_proposals"] == record.rejected_count
    assert all(r["costs"]["params"] > MAX_PARAMS and r["violated"] == ["params"]
               for r in record.rejected)
    assert all(t.costs["params"] <= MAX_PARAMS for t in record.trials)


def test_pareto_figure_draws_every_successful_trial_the_front_and_the_bound(record):
    ax = report.pareto_figure(record, "params").axes[0]
    ok = [t for t in record.trials if t.ok]
    assert _scatter_points(ax, "traction") == sum(t.fidelity == "traction" for t in ok)
    assert _scatter_points(ax, "full") == sum(t.fidelity == "full" for t in ok)
    front = ranking.pareto_front(record.trials, "params", record.objective)
    [front_line] = [line for line in ax.lines if line.get_label().startswith("Pareto front")]
    assert list(front_line.get_xdata()) == [p["params"] for p in front]
    [bound] = [line for line in ax.lines if line.get_label().startswith("max_params")]
    assert list(bound.get_xdata()) == [MAX_PARAMS, MAX_PARAMS]


def test_progress_figure_draws_each_trial_and_a_monotone_best_so_far(record):
    ax = report.progress_figure(record).axes[0]
    ok = [t for t in record.trials if t.ok]
    assert _scatter_points(ax, "traction") + _scatter_points(ax, "full") == len(ok)
    assert _scatter_points(ax, "failed") == sum(not t.ok for t in record.trials)
    for line in ax.lines:  # the objective (accuracy) is maximised: best so far never drops
        ys = list(line.get_ydata())
        assert ys == sorted(ys)
    full = [line for line in ax.lines if line.get_label() == "best so far, full"][0]
    assert max(full.get_ydata()) == max(t.metrics["acc"] for t in ok if t.fidelity == "full")


def test_cost_histograms_count_evaluated_and_rejected_samples(record):
    fig = report.cost_histogram_figure(record)
    ax = [a for a in fig.axes if a.get_title() == "params"][0]
    # ax.hist labels a bar container's first patch.
    heights = {c.patches[0].get_label(): sum(p.get_height() for p in c) for c in ax.containers}
    assert heights == {f"evaluated ({len(record.trials)})": len(record.trials),
                       f"rejected ({len(record.rejected)})": len(record.rejected)}
    assert [a.get_title() for a in fig.axes if a.get_visible()] == ["params"]


def test_write_report_renders_valid_pngs_and_a_markdown_page(search_dir, record, tmp_path):
    files = report.write_report(search_dir, tmp_path / "out", top=5)
    assert sorted(files) == ["cost_histograms", "pareto_params", "progress", "report"]
    for name, path in files.items():
        if name == "report":
            continue
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        image = matplotlib.image.imread(path)
        assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 300
        assert image.std() > 0  # not a blank canvas
    text = files["report"].read_text()
    best = record.best
    assert f"Trial **{best.id}**" in text and "_finished;" in text
    for name in ("pareto_params", "progress", "cost_histograms"):
        assert f"]({name}.png)" in text  # linked relative to the report
    table = text.split("## Top 5 trials")[1].split("## Pareto fronts")[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and "rank" not in line]
    assert len(rows) == 5 and rows[0].startswith(f"| 1 | {best.id} |")
    assert f"rejected by the hard constraints before training: {len(record.rejected)}" in text
    assert "not in the in-memory table" in text  # why the FAILED trials failed


class _GatedTable(TabularEvaluator):
    """A table lookup that holds trial ``hold_from`` and later until released, so that a
    report can be taken while the search is really running."""

    def __init__(self, *args, hold_from: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.hold_from, self.calls = hold_from, 0
        self.reached, self.release = threading.Event(), threading.Event()

    def evaluate(self, candidate, *, seed=0, workdir=None):
        self.calls += 1
        if self.calls > self.hold_from:
            self.reached.set()
            assert self.release.wait(60)
        return super().evaluate(candidate, seed=seed, workdir=workdir)


def test_a_report_of_a_search_still_running_reads_its_store(tmp_path):
    space, plain = _problem()
    evaluator = _GatedTable(plain.table, metric="acc", hold_from=4)
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.setdefault("result", cnas.search(
        space, cnas.Constraints(max_params=MAX_PARAMS), strategy=RandomSearch(num_samples=6),
        evaluator=evaluator, search_dir=tmp_path, verbose=False)))
    thread.start()
    try:
        assert evaluator.reached.wait(60)
        files = report.write_report(tmp_path, tmp_path / "live")
        live = report.load_search(tmp_path)
        assert live.in_progress and len(live.running) == 1 and len(live.finished) == 4
        assert live.objective == "acc"  # known before summary.json exists
        ax = report.progress_figure(live).axes[0]
        assert _scatter_points(ax, "full") + _scatter_points(ax, "failed") == 4
        assert "**in progress**: 1 trial(s) running" in files["report"].read_text()
        with TrialStore(tmp_path / "trials.db", read_only=True) as store:
            assert store.count(TrialStatus.RUNNING) == 1  # the reader changed nothing
    finally:
        evaluator.release.set()
        thread.join(60)
    assert len(outcome["result"].trials) == 6
    assert not report.load_search(tmp_path).in_progress


def test_tools_report_writes_the_report_and_tensorboard(search_dir, record, tmp_path):
    out = subprocess.run([sys.executable, "tools/report.py", f"--search_dir={search_dir}",
                          f"--out={tmp_path}"], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"{len(record.trials)} trials (finished)" in out.stdout
    assert (tmp_path / "report.md").is_file() and (tmp_path / "progress.png").is_file()
    # The search wrote TensorBoard as it went: the tool had nothing to add.
    assert "(0 trial(s) added)" in out.stdout


def test_tools_report_names_a_directory_without_a_search(tmp_path):
    out = subprocess.run([sys.executable, "tools/report.py", f"--search_dir={tmp_path}"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert f"--search_dir: {tmp_path} holds no trials.db" in out.stderr


def test_load_search_of_a_directory_without_a_search_says_what_to_pass(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"holds no trials.db; pass the directory a search"):
        report.load_search(tmp_path)
