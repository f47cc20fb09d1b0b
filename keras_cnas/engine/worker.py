"""One trial in a fresh process: ``python -m keras_cnas.engine.worker TASK.json RESULT.json``.

The task holds the evaluator's JSON config, the candidate, a seed and a work directory; the
result is an :class:`EvaluationResult` as JSON, written atomically (temp file + rename), so
a result file either exists whole or not at all. A crash or OOM kill ends only this
process; the engine sees no result file and re-queues the trial.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import traceback
from typing import Any, Mapping

from keras_cnas.trial import Candidate, EvaluationResult, TrialStatus


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
    return evaluator.evaluate(candidate, seed=int(task["seed"]), workdir=workdir)


def write_result(path: pathlib.Path, result: EvaluationResult) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result.to_dict(), sort_keys=True))
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m keras_cnas.engine.worker TASK.json RESULT.json", file=sys.stderr)
        return 2
    task = json.loads(pathlib.Path(argv[1]).read_text())
    try:
        result = run_task(task)
    except Exception:  # an evaluator bug must still end as a FAILED trial, with the reason
        result = EvaluationResult(status=TrialStatus.FAILED, error=traceback.format_exc(limit=8))
    write_result(pathlib.Path(argv[2]), result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
