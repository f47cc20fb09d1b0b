"""One trial in a fresh process: ``python -m keras_cnas.engine.worker TASK.json RESULT.json``.

The task holds the evaluator's JSON config, the candidate, a seed and a work directory; the
result is an :class:`EvaluationResult` as JSON, written atomically (temp file + rename), so
a result file either exists whole or not at all. A crash or OOM kill ends only this
process; the engine sees no result file and re-queues the trial. An error that stops the
search (:mod:`keras_cnas.engine.guard`) is written as ``{"stop": ...}`` instead, and the
driver raises it again.

The driver starts workers with ``python -P`` (the working directory is not on
``sys.path``, so a user's ``concurrent.py`` there is never imported) in their own process
group, and the worker ends with its driver however the driver ends: Linux's parent-death
signal (``prctl(PR_SET_PDEATHSIG)``) plus a watchdog pipe (the driver holds its write end;
end-of-file means the driver is gone) that kills the worker's whole process group.
"""

from __future__ import annotations

import ctypes
import json
import os
import pathlib
import signal
import sys
import threading
from typing import Any, Mapping

from keras_cnas.engine import guard
from keras_cnas.trial import Candidate, EvaluationResult

#: Environment variables through which the driver hands a worker its watchdog.
WATCHDOG_FD_ENV = "KERAS_CNAS_WATCHDOG_FD"
PARENT_PID_ENV = "KERAS_CNAS_PARENT_PID"
_PR_SET_PDEATHSIG = 1


def make_task(evaluator_config: Mapping[str, Any], candidate: Candidate, seed: int,
              workdir: str | None) -> dict[str, Any]:
    return {"evaluator": dict(evaluator_config), "spec": candidate.spec.to_dict(),
            "fidelity": candidate.fidelity, "phase": candidate.phase, "info": dict(candidate.info),
            "seed": seed, "workdir": workdir}


def run_task(task: Mapping[str, Any]) -> EvaluationResult:
    from keras_cnas.spaces.base import spec_from_dict
    from keras_cnas.training.base import Evaluator

    evaluator = Evaluator.from_json_config(task["evaluator"])
    candidate = Candidate(spec_from_dict(task["spec"]), task["fidelity"], task["phase"], task["info"])
    workdir = pathlib.Path(task["workdir"]) if task.get("workdir") else None
    return guard.evaluate(evaluator, candidate, seed=int(task["seed"]), workdir=workdir)


def run_task_guarded(task: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`run_task` as the JSON a worker returns: a result, or ``{"stop": ...}``."""
    try:
        return run_task(task).to_dict()
    except Exception as e:  # noqa: BLE001  building the evaluator or the spec failed
        if guard.is_stop(e):
            return guard.stop_to_dict(e)
        return guard.failed_result(e).to_dict()


def write_result(path: pathlib.Path, result: EvaluationResult | Mapping[str, Any]) -> None:
    data = result.to_dict() if isinstance(result, EvaluationResult) else dict(result)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, sort_keys=True))
    os.replace(tmp, path)


def end_with_parent() -> None:
    """Makes this process (and its process group) die with the driver that started it."""
    parent = int(os.environ.get(PARENT_PID_ENV, "0") or 0)
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: the watchdog pipe still works
            pass
        signal.signal(signal.SIGTERM, lambda *_: _kill_group())
    if parent and os.getppid() != parent:  # the driver died before the signal was armed
        _kill_group()
    fd = os.environ.get(WATCHDOG_FD_ENV)
    if fd:
        threading.Thread(target=_watch, args=(int(fd),), daemon=True,
                         name="keras_cnas-watchdog").start()


def _watch(fd: int) -> None:
    while True:
        try:
            if not os.read(fd, 1):  # end of file: every write end (the driver's) is closed
                break
        except InterruptedError:
            continue
        except OSError:
            break
    _kill_group()


def _kill_group() -> None:
    try:
        if os.getpgrp() == os.getpid():  # our own group: take any helper process with us
            os.killpg(os.getpid(), signal.SIGKILL)
    finally:
        os._exit(137)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m keras_cnas.engine.worker TASK.json RESULT.json", file=sys.stderr)
        return 2
    end_with_parent()
    task = json.loads(pathlib.Path(argv[1]).read_text())
    write_result(pathlib.Path(argv[2]), run_task_guarded(task))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
