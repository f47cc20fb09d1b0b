"""Table-backed evaluation: look an architecture's result up instead of training it.

NAS benchmarks publish the trained result of every architecture of a space; a strategy
that queries such a table instead of training can be compared with others in seconds, by
the gap ("regret") between the best feasible architecture it finds in N queries and the
best feasible one in the table.

Pure Python: nothing here imports TensorFlow.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
from typing import Any, Mapping, Sequence

from keras_cnas._checks import is_int, is_real
from keras_cnas.registry import Registry
from keras_cnas.spaces.categorical import CategoricalSpace, load_table, rekey_table
from keras_cnas.training.base import DIRECTIONS, EVALUATORS, Evaluator
from keras_cnas.trial import Candidate, EvaluationResult, TrialStatus

__all__ = ["TABULAR_BENCHMARKS", "TabularBenchmark", "TabularEvaluator", "load_table",
           "tabular_problem"]

# (resolved path, mtime, key_offset) -> table: a worker evaluating many trials reads once.
_TABLES: dict[tuple[str, int, int], dict[str, dict[str, Any]]] = {}


def _cached_table(path: pathlib.Path, key_offset: int) -> dict[str, dict[str, Any]]:
    if not path.is_file():
        load_table(path)  # raises FileNotFoundError with the fix.
    key = (str(path), path.stat().st_mtime_ns, key_offset)
    if key not in _TABLES:
        _TABLES[key] = load_table(path, key_offset=key_offset)
    return _TABLES[key]


@EVALUATORS.register("tabular")
class TabularEvaluator(Evaluator):
    """Looks ``candidate.spec.key()`` up in a table of per-architecture results.

    Give either ``table`` (in memory, kept inline in the config) or ``table_path`` (a JSON
    file, read once per process; the config stores the path). Both map spec keys to rows
    ``{field: value}``; every numeric field of the row is returned as a metric. A field
    holding a list (e.g. the accuracies of 3 training runs) gives run ``seed % len`` — a
    different seed sees a different training run, as it would when training for real.
    Both fidelities look up the same row: a table has one.

    Args:
        table: ``{spec key: {field: value}}``.
        metric: the row field the search optimises (the evaluator's ``objective``).
        direction: ``"max"`` (accuracy) or ``"min"`` (error, loss).
        table_path: a JSON file holding the table, instead of ``table``.
        key_offset: the digit the table's keys use for a decision's first choice (1 for
            Channel-Bench-Macro): subtracted on load so that the table is indexed by
            ``spec.key()`` (see ``CategoricalSpace``).

    A spec whose key is not in the table is a FAILED trial naming the key.

    Example:
        >>> from keras_cnas.spaces import CategoricalSpace
        >>> space = CategoricalSpace([2, 2])
        >>> evaluator = TabularEvaluator({"01": {"acc": 0.9}, "11": {"acc": 0.7}}, metric="acc")
        >>> evaluator.evaluate(Candidate(space.from_decisions([0, 1]))).metrics
        {'acc': 0.9}
        >>> evaluator.evaluate(Candidate(space.from_decisions([0, 0]))).status.value
        'FAILED'
    """

    name = "tabular"

    def __init__(self, table: Mapping[str, Mapping[str, Any]] | None = None,
                 metric: str = "accuracy", direction: str = "max", *,
                 table_path: str | os.PathLike[str] | None = None, key_offset: int = 0):
        if (table is None) == (table_path is None):
            raise ValueError("TabularEvaluator: give exactly one of table= (a mapping key -> "
                             "{metric: value}) and table_path= (a JSON file); got "
                             + ("both" if table is not None else "neither"))
        if not isinstance(metric, str) or not metric:
            raise ValueError(f"metric: expected a field name of the table's rows, got {metric!r}")
        if direction not in DIRECTIONS:
            raise ValueError(f"direction: expected one of {DIRECTIONS}, got {direction!r}")
        if not is_int(key_offset) or key_offset < 0:
            raise ValueError(f"key_offset: expected a non-negative integer, got {key_offset!r}")
        self.objective = metric
        self.direction = direction
        self.key_offset = key_offset
        self._inline = table
        self._path = (None if table_path is None
                      else pathlib.Path(os.fspath(table_path)).expanduser().resolve())
        self._table = (_cached_table(self._path, key_offset) if self._path is not None
                       else rekey_table(table, key_offset=key_offset))
        first_key, first = next(iter(self._table.items()))
        if metric not in first:
            raise ValueError(f"metric: {metric!r} is not a field of the table's rows; row "
                             f"{first_key!r} has {sorted(first)}; pass one of those")

    @property
    def metric(self) -> str:
        return self.objective

    @property
    def table(self) -> Mapping[str, Mapping[str, Any]]:
        """The table, keyed by ``spec.key()``."""
        return self._table

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"metric": self.objective, "direction": self.direction}
        if self._path is not None:
            config["table_path"] = str(self._path)
        else:
            config["table"] = {k: dict(v) for k, v in self._inline.items()}
        if self.key_offset:
            config["key_offset"] = self.key_offset
        return config

    def evaluate(self, candidate: Candidate, *, seed: int = 0,
                 workdir: pathlib.Path | None = None) -> EvaluationResult:
        key = candidate.spec.key()
        row = self._table.get(key)
        if row is None:
            where = f"{self._path}" if self._path is not None else "the in-memory table"
            return EvaluationResult(status=TrialStatus.FAILED, error=(
                f"spec key {key!r} is not in {where} ({len(self._table)} architectures); the "
                "space and the table disagree: check decision_sizes and key_offset"))
        metrics: dict[str, float] = {}
        for field, value in row.items():
            if isinstance(value, list) and value:
                value = value[seed % len(value)]
            if is_real(value):
                metrics[field] = value
        value = metrics.get(self.objective)
        if value is None or not math.isfinite(value):
            return EvaluationResult(metrics, status=TrialStatus.FAILED, error=(
                f"table row {key!r} has no finite {self.objective!r} (got {row.get(self.objective)!r})"))
        return EvaluationResult(metrics)


@dataclasses.dataclass(frozen=True)
class TabularBenchmark:
    """A published benchmark table and the categorical space it covers.

    Attributes:
        path: the table's path relative to the data directory.
        decision_sizes, empty_choice: the space.
        key_offset: the digit of a decision's first choice in the table's keys.
        metric: the field to maximise (mean test accuracy, %).
        cost_fields: the fields that are costs (checked by constraints before a query).
        ordered: whether the choices are ordered (identity < small < big block, widths):
            ``CategoricalSpace(..., ordered=)``.
    """

    path: str
    decision_sizes: Sequence[int]
    empty_choice: int | None
    key_offset: int
    metric: str
    cost_fields: Sequence[str] = ("params", "flops")
    ordered: bool = False

    def problem(self, data_dir: str | os.PathLike[str]) -> tuple[CategoricalSpace, TabularEvaluator]:
        path = pathlib.Path(os.fspath(data_dir)).expanduser() / self.path
        if not path.is_file():
            raise FileNotFoundError(
                f"data_dir: no {self.path} under {data_dir}; pass the directory that holds the "
                "benchmark folders (the shared data directory described in its README)")
        space = CategoricalSpace(list(self.decision_sizes), self.empty_choice, costs=path,
                                 cost_fields=list(self.cost_fields), key_offset=self.key_offset,
                                 ordered=self.ordered)
        return space, TabularEvaluator(metric=self.metric, direction="max", table_path=path,
                                       key_offset=self.key_offset)


#: The benchmark tables :func:`tabular_problem` knows. NAS-Bench-Macro: 8 layers, each
#: identity (0, the empty choice) or one of two MobileNetV2 blocks, ordered by size. Channel-Bench-Macro: 7
#: width multipliers 0.25..1.0, keyed by the digits 1..4 (hence ``key_offset=1``). Costs as
#: the tables define them: ``params`` are trainable parameters, ``flops`` multiply-adds.
TABULAR_BENCHMARKS: Registry[TabularBenchmark] = Registry("tabular benchmark")
TABULAR_BENCHMARKS.add("nas-bench-macro", TabularBenchmark(
    "nas-bench-macro/nas-bench-macro_cifar10.json", (3,) * 8, 0, 0, "mean_acc", ordered=True))
TABULAR_BENCHMARKS.add("channel-bench-macro-mobilenet", TabularBenchmark(
    "channel-bench-macro/Results_MobileNet.json", (4,) * 7, None, 1, "mean", ordered=True))
TABULAR_BENCHMARKS.add("channel-bench-macro-resnet", TabularBenchmark(
    "channel-bench-macro/Results_ResNet.json", (4,) * 7, None, 1, "mean", ordered=True))


def tabular_problem(name: str, data_dir: str | os.PathLike[str]
                    ) -> tuple[CategoricalSpace, TabularEvaluator]:
    """The space and evaluator of a benchmark table, ready for a strategy comparison.

    The space carries the table's ``params`` and ``flops`` as costs (so constraints are
    checked before a query); the evaluator maximises the mean test accuracy (%).

    Args:
        name: one of :data:`TABULAR_BENCHMARKS`: ``"nas-bench-macro"``,
            ``"channel-bench-macro-mobilenet"``, ``"channel-bench-macro-resnet"``.
        data_dir: the directory holding the ``nas-bench-macro/`` and
            ``channel-bench-macro/`` folders.

    Raises:
        KeyError: unknown ``name`` (the message lists the known ones).
        FileNotFoundError: the table is not under ``data_dir``.

    Example:
        >>> space, evaluator = tabular_problem("nas-bench-macro", data_dir)  # doctest: +SKIP
        >>> spec = space.from_decisions([0, 2, 0, 1, 2, 1, 0, 0])  # doctest: +SKIP
        >>> estimate(space=space, spec=spec).params  # doctest: +SKIP
        890666
        >>> evaluator.evaluate(Candidate(spec)).metrics["mean_acc"]  # doctest: +SKIP
        89.19666544596355
    """
    return TABULAR_BENCHMARKS.get(name).problem(data_dir)
