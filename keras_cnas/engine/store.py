"""TrialStore: every trial and the strategy's state in one SQLite file (WAL mode).

A trial is written when it is created and again the moment it finishes; the strategy's
state is written in the same transaction, so the file always holds a consistent pair:
after a kill, the trials marked RUNNING are exactly those the saved strategy state has
asked for but not been told about, and re-queuing them resumes the search exactly.
JSON columns only, never pickle. Other processes may read the file while a search runs
(``tools/report.py`` opens it with ``read_only=True``): WAL mode lets readers and the
writer proceed concurrently.

The ``rejections`` table keeps the analytic costs of the proposals the hard constraints
turned down (the strategy only counts them), written with the trial whose ask they
preceded, so that a report can compare the costs of rejected and evaluated samples.
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import sqlite3
import time
from typing import Any, Iterator, Mapping, Sequence

from keras_cnas.errors import KerasCnasError
from keras_cnas.spaces.base import spec_from_json
from keras_cnas.trial import Trial, TrialStatus

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS trials (
    id INTEGER PRIMARY KEY,
    status TEXT NOT NULL,
    fidelity TEXT NOT NULL,
    phase TEXT NOT NULL,
    spec_key TEXT NOT NULL,
    spec_json TEXT NOT NULL,
    metrics_json TEXT NOT NULL DEFAULT '{}',
    costs_json TEXT NOT NULL DEFAULT '{}',
    score REAL,
    timings_json TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    info_json TEXT NOT NULL DEFAULT '{}',
    attempts INTEGER NOT NULL DEFAULT 0,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS state (
    key TEXT PRIMARY KEY,
    value_json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rejections (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    spec_key TEXT NOT NULL,
    costs_json TEXT NOT NULL,
    violated_json TEXT NOT NULL,
    created REAL NOT NULL
);
"""


class StoreError(KerasCnasError, RuntimeError):
    """``trials.db`` is not a readable trial store (not SQLite, truncated, or rows that do
    not parse)."""


#: What a damaged file raises while it is opened or read.
_DAMAGE = (sqlite3.DatabaseError, ValueError, KeyError, TypeError)


class TrialStore:
    """The trials of one search, in ``path`` (``search_dir/trials.db``; ``":memory:"`` for none).

    Args:
        path: the SQLite file (created with its directory unless ``read_only``).
        read_only: open an existing file for reading only, e.g. to report on a search that
            another process is running; nothing is created or written.

    Example:
        >>> from keras_cnas.spaces import CategoricalSpace
        >>> from keras_cnas.trial import Candidate, Trial
        >>> store = TrialStore(":memory:")
        >>> spec = CategoricalSpace([3, 3]).from_decisions([1, 2])
        >>> trial = store.create(Candidate(spec), strategy_state={"step": 1})
        >>> store.get(trial.id).spec == spec, store.load_state("strategy")
        (True, {'step': 1})
    """

    def __init__(self, path: str | pathlib.Path, *, read_only: bool = False):
        self.path = str(path)
        self.read_only = read_only
        try:
            self._open(read_only)
        except _DAMAGE as e:
            if getattr(self, "_db", None) is not None:
                self._db.close()
            raise self._damaged(e) from None

    def _damaged(self, error: BaseException) -> StoreError:
        return StoreError(
            f"search_dir: {self.path} is not a readable trial store ({type(error).__name__}: "
            f"{error}); restore it from a backup, or move it away (or pass --overwrite if a "
            "search wrote it) to start over")

    def _open(self, read_only: bool) -> None:
        self._db = None
        if read_only:
            if not pathlib.Path(self.path).is_file():
                raise FileNotFoundError(f"path: no trial store at {self.path}; pass the "
                                        "trials.db of a search (search_dir/trials.db)")
            # mode=ro: a reader can never take the writer's lock or change the schema.
            self._db = sqlite3.connect(pathlib.Path(self.path).resolve().as_uri() + "?mode=ro",
                                       uri=True, isolation_level=None, timeout=60.0)
            version = self.load_state("schema_version")
            if version not in (None, SCHEMA_VERSION):
                raise StoreError(f"search_dir: {self.path}: trial store schema {version}, this "
                                 f"keras_cnas reads {SCHEMA_VERSION}")
            return
        if self.path != ":memory:":
            pathlib.Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we open transactions explicitly (BEGIN IMMEDIATE).
        self._db = sqlite3.connect(self.path, isolation_level=None, timeout=60.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a finished trial survives a power cut
        self._db.executescript(_SCHEMA)
        version = self.load_state("schema_version")
        if version is None:
            with self._transaction():
                self._put_state("schema_version", SCHEMA_VERSION)
        elif version != SCHEMA_VERSION:
            self._db.close()
            raise StoreError(f"search_dir: {self.path}: trial store schema {version}, this "
                             f"keras_cnas reads {SCHEMA_VERSION}; use a new search_dir")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "TrialStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # --- trials -------------------------------------------------------------------------

    def create(self, candidate: Any, strategy_state: Mapping[str, Any] | None = None,
               rejected: Sequence[Mapping[str, Any]] = ()) -> Trial:
        """A new RUNNING trial for ``candidate`` (with the next id), saved with the state
        and the ``rejected`` proposals of the ask that produced it (see
        :meth:`add_rejections`)."""
        with self._transaction() as db:
            (last,) = db.execute("SELECT COALESCE(MAX(id), -1) FROM trials").fetchone()
            trial = Trial.from_candidate(last + 1, candidate)
            trial.status = TrialStatus.RUNNING
            trial.timings["created"] = time.time()
            db.execute(
                "INSERT INTO trials (id, status, fidelity, phase, spec_key, spec_json, "
                "timings_json, info_json, attempts, updated) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (trial.id, trial.status.value, trial.fidelity, trial.phase, trial.spec.key(),
                 trial.spec.to_json(), json.dumps(trial.timings), json.dumps(trial.info),
                 trial.attempts, time.time()))
            if strategy_state is not None:
                self._put_state("strategy", strategy_state)
            self._put_rejections(rejected)
        return trial

    def update(self, trial: Trial, strategy_state: Mapping[str, Any] | None = None) -> None:
        """Writes ``trial``'s current fields (and the strategy state) in one transaction."""
        d = trial.to_dict()
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE trials SET status=?, metrics_json=?, costs_json=?, score=?, "
                "timings_json=?, error=?, info_json=?, attempts=?, updated=? WHERE id=?",
                (d["status"], json.dumps(d["metrics"]), json.dumps(d["costs"]), d["score"],
                 json.dumps(d["timings"]), d["error"], json.dumps(d["info"]), d["attempts"],
                 time.time(), trial.id))
            if cursor.rowcount != 1:
                raise KeyError(f"trial {trial.id} is not in {self.path}")
            if strategy_state is not None:
                self._put_state("strategy", strategy_state)

    def get(self, trial_id: int) -> Trial:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM trials WHERE id=?", (trial_id,)).fetchone()
        if row is None:
            raise KeyError(f"trial {trial_id} is not in {self.path}")
        return self._parse(row)

    def trials(self, *statuses: TrialStatus) -> list[Trial]:
        """All trials in id order, or those with one of ``statuses``."""
        try:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM trials ORDER BY id").fetchall()
        except sqlite3.DatabaseError as e:
            raise self._damaged(e) from None
        trials = [self._parse(r) for r in rows]
        return [t for t in trials if not statuses or t.status in statuses]

    def _parse(self, row: tuple) -> Trial:
        try:
            return _trial_from_row(row)
        except (ValueError, KeyError, TypeError) as e:  # InvalidSpecError is a ValueError
            raise self._damaged(RuntimeError(f"trial {row[0]}: {e}")) from None

    def count(self, *statuses: TrialStatus) -> int:
        if not statuses:
            return self._db.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
        marks = ",".join("?" * len(statuses))
        return self._db.execute(f"SELECT COUNT(*) FROM trials WHERE status IN ({marks})",
                                [s.value for s in statuses]).fetchone()[0]

    def unfinished(self) -> list[Trial]:
        """Trials that were PENDING or RUNNING (after a kill: to re-queue)."""
        return self.trials(TrialStatus.PENDING, TrialStatus.RUNNING)

    # --- proposals the constraints rejected ----------------------------------------------

    def add_rejections(self, rejected: Sequence[Mapping[str, Any]]) -> None:
        """Records rejected proposals: ``{"spec_key", "costs", "violated"}`` each, where
        ``costs`` are the analytic costs and ``violated`` the names of the broken bounds."""
        if rejected:
            with self._transaction():
                self._put_rejections(rejected)

    def _put_rejections(self, rejected: Sequence[Mapping[str, Any]]) -> None:
        now = time.time()
        self._db.executemany(
            "INSERT INTO rejections (spec_key, costs_json, violated_json, created) "
            "VALUES (?,?,?,?)",
            [(r["spec_key"], json.dumps(dict(r["costs"]), sort_keys=True),
              json.dumps(list(r["violated"])), now) for r in rejected])

    def rejections(self) -> list[dict[str, Any]]:
        """Every recorded rejected proposal, oldest first (none for a store written before
        they were recorded)."""
        try:
            rows = self._db.execute("SELECT spec_key, costs_json, violated_json, created "
                                    "FROM rejections ORDER BY seq").fetchall()
        except sqlite3.OperationalError:  # an older store, opened read-only: no such table
            return []
        return [{"spec_key": key, "costs": json.loads(costs), "violated": json.loads(violated),
                 "created": created} for key, costs, violated, created in rows]

    # --- key/value state -------------------------------------------------------------

    def save_state(self, key: str, value: Any) -> None:
        with self._transaction():
            self._put_state(key, value)

    def _put_state(self, key: str, value: Any) -> None:
        self._db.execute("INSERT INTO state (key, value_json) VALUES (?, ?) "
                         "ON CONFLICT(key) DO UPDATE SET value_json=excluded.value_json",
                         (key, json.dumps(value, sort_keys=True)))

    def load_state(self, key: str) -> Any:
        try:
            row = self._db.execute("SELECT value_json FROM state WHERE key=?", (key,)).fetchone()
            return None if row is None else json.loads(row[0])
        except (sqlite3.DatabaseError, ValueError) as e:
            raise self._damaged(e) from None


_COLUMNS = ("id, status, fidelity, phase, spec_json, metrics_json, costs_json, score, "
            "timings_json, error, info_json, attempts")


def _trial_from_row(row: tuple) -> Trial:
    (tid, status, fidelity, phase, spec_json, metrics, costs, score, timings, error, info,
     attempts) = row
    return Trial(id=tid, spec=spec_from_json(spec_json), fidelity=fidelity, phase=phase,
                 status=TrialStatus(status), metrics=json.loads(metrics), costs=json.loads(costs),
                 score=score, timings=json.loads(timings), error=error, info=json.loads(info),
                 attempts=attempts)
