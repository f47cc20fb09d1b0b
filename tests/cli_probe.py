"""Runs many argument lists through one binary in one process (for tests/test_cli_errors.py).

Usage: python tests/cli_probe.py tools/NAME.py CASES.json RESULTS.json

CASES.json is a list of argument lists. Each goes through the binary's real entry point,
``keras_cnas.cli.common.run(main, blame=BLAME)``, exactly as ``python tools/NAME.py ARGS``
would, with stdout and stderr captured; RESULTS.json gets ``{"code", "stdout", "stderr"}``
per case. One process per binary keeps a hundred bad inputs to seconds (TensorFlow and
the flags load once).
"""

import contextlib
import importlib.util
import io
import json
import pathlib
import sys
import traceback


def main(tool: str, cases_file: str, results_file: str) -> None:
    path = pathlib.Path(tool).resolve()
    sys.path.insert(0, str(path.parents[1]))
    spec = importlib.util.spec_from_file_location(f"tool_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from keras_cnas.cli import common

    results = []
    for argv in json.loads(pathlib.Path(cases_file).read_text()):
        out, err = io.StringIO(), io.StringIO()
        code = None
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                common.run(module.main, [str(path), *argv], blame=getattr(module, "BLAME", None))
            except SystemExit as e:
                code = 0 if e.code is None else e.code
            except BaseException:  # noqa: BLE001  what the binary would have let escape
                traceback.print_exc()
                code = "escaped"
        results.append({"argv": argv, "code": code, "stdout": out.getvalue(),
                        "stderr": err.getvalue()})
    pathlib.Path(results_file).write_text(json.dumps(results))


if __name__ == "__main__":
    main(*sys.argv[1:])
