"""One split of errors for every runner: *this trial failed* versus *stop the search*.

An evaluator's exception is either about the candidate (it cannot be built, it runs out of
memory, a layer rejects a shape: the trial is FAILED and the search goes on) or about the
search's set-up (the data cannot be loaded, a bound names a cost nothing reports: every
trial would fail the same way, so the search stops and says why). :func:`evaluate` draws
that line once; the in-process, process-pool and Ray runners all call it, and a stop
error raised in a worker travels back as JSON (:func:`stop_to_dict`) and is raised again in
the driver (:func:`raise_stop`), whatever the runner.

Example:
    >>> from keras_cnas.errors import DataError
    >>> class Broken:
    ...     def evaluate(self, candidate, *, seed, workdir):
    ...         raise TypeError("no such layer")
    >>> result = evaluate(Broken(), None, seed=0)
    >>> result.status.value, result.error.splitlines()[0]
    ('FAILED', 'TypeError: no such layer')
"""

from __future__ import annotations

import pathlib
import traceback
from typing import Any, Mapping

from keras_cnas import errors
from keras_cnas.trial import EvaluationResult, TrialStatus

__all__ = ["STOP_ERRORS", "evaluate", "failed_result", "raise_stop", "stop_to_dict"]

#: Exceptions that stop the search, by name (so that a worker can send them as JSON).
STOP_ERRORS: dict[str, type[Exception]] = {
    "DataError": errors.DataError,
    "UnknownCostError": errors.UnknownCostError,
    "InfeasibleConstraintsError": errors.InfeasibleConstraintsError,
}


def evaluate(evaluator: Any, candidate: Any, *, seed: int,
             workdir: pathlib.Path | None = None) -> EvaluationResult:
    """``evaluator.evaluate`` with the split applied: stop errors propagate, any other
    exception is a FAILED result whose first error line is ``Type: message``."""
    try:
        return evaluator.evaluate(candidate, seed=seed, workdir=workdir)
    except tuple(STOP_ERRORS.values()):
        raise
    except Exception as e:  # noqa: BLE001  a bad candidate fails its trial only
        return failed_result(e)


def failed_result(error: BaseException) -> EvaluationResult:
    """A FAILED result: ``Type: message`` on the first line (what progress lines show),
    then the last frames of the traceback for the log."""
    first = " ".join(str(error).split()) or "(no message)"
    frames = "".join(traceback.format_exception(error, limit=-8))
    return EvaluationResult(status=TrialStatus.FAILED,
                            error=f"{type(error).__name__}: {first}\n{frames}")


def is_stop(error: BaseException) -> bool:
    return isinstance(error, tuple(STOP_ERRORS.values()))


def stop_to_dict(error: BaseException) -> dict[str, Any]:
    """A stop error as the JSON a worker writes instead of a result."""
    name = next(n for n, t in STOP_ERRORS.items() if isinstance(error, t))
    return {"stop": {"type": name, "message": str(error)}}


def raise_stop(data: Mapping[str, Any]) -> None:
    """Raises the stop error a worker sent (see :func:`stop_to_dict`), if it sent one."""
    stop = data.get("stop")
    if stop is None:
        return
    kind = STOP_ERRORS.get(stop.get("type"), errors.KerasCnasError)
    raise kind(stop.get("message", ""))
