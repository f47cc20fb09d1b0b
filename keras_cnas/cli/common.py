"""Shared helpers of the binaries: how they run and fail, spec files, reference networks,
cost output.

:func:`run` replaces ``absl.app.run`` in every binary. It turns every user error into one
line on stderr (``error: --flag=value: what was wrong; the fix``) and an exit code: 2 for
usage errors (bad flags, :class:`absl.app.UsageError`), 1 for everything else, 130 for
Ctrl-C (``interrupted after N trials; continue with --resume``), 128 + N for signal N
(SIGTERM runs the same clean-up as Ctrl-C, so no worker outlives the binary).
``--verbose_errors`` keeps the traceback for debugging. A message that does not name a
flag gets the one whose value it mentions (a path in an ``OSError``, say) or the one the
binary blames for that kind of error, so a new flag gets all this for free.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import signal
import sqlite3
import sys
from typing import Any, Callable, Mapping, NoReturn, Sequence

from absl import app, flags

from keras_cnas.costs import estimate
from keras_cnas.errors import InvalidSpecError, KerasCnasError
from keras_cnas.spaces import Spec, reference, spec_from_json

FLAGS = flags.FLAGS
flags.DEFINE_bool("verbose_errors", False, "Print the full traceback of an error instead of one "
                  "line (for debugging and bug reports).")

#: Largest --seed: a trial's seed is seed + trial id, and TensorFlow seeds are 64-bit, some
#: of its kernels' 32-bit: the bound keeps seed + a million trials below 2**31.
MAX_SEED = 2**31 - 1 - 10**6
#: Exit codes: a usage error (bad flags), any other error, Ctrl-C.
EXIT_USAGE, EXIT_ERROR, EXIT_INTERRUPTED = 2, 1, 130
#: Errors users cause (bad files, full disks, damaged stores...), as opposed to bugs.
USER_ERRORS = (KerasCnasError, OSError, ValueError, KeyError, LookupError, RuntimeError,
               sqlite3.Error, RecursionError, UnicodeError, MemoryError, ImportError,
               ConnectionError, TypeError, OverflowError)
#: Longest message printed; hostile inputs (a 5,000-digit number) stay one readable line.
MAX_MESSAGE_CHARS = 600
#: Largest spec JSON file read (a spec of the documented limits is a few hundred kB).
MAX_SPEC_BYTES = 4 * 2**20


#: The flags that ask for help; with help groups, run() answers them itself.
HELP_FLAGS = ("--help", "-help", "-?", "--helpshort", "-helpshort")
_HELP_GROUPS: list[str] = []


def group_flags(groups: Mapping[str, Sequence[str]], flag_values: Any = None) -> None:
    """Files the named flags under ``--help`` groups (absl's per-module sections), moving
    them out of the binary's own section, and makes ``--help`` print every group in order
    (including groups defined elsewhere with ``module_name=``, such as the strategies').

    Raises:
        ValueError: a named flag does not exist.
    """
    fv = flag_values if flag_values is not None else FLAGS
    by_module = fv.flags_by_module_dict()
    for group, names in groups.items():
        for name in names:
            if name not in fv:
                raise ValueError(f"group_flags: no flag --{name} to put in group {group!r}")
            flag = fv[name]
            owner = fv.find_module_defining_flag(name)
            if owner in by_module and flag in by_module[owner]:
                by_module[owner].remove(flag)
            fv.register_flag_by_module(group, flag)
        if group not in _HELP_GROUPS:
            _HELP_GROUPS.append(group)


def help_text(groups: Sequence[str], flag_values: Any = None) -> str:
    """The grouped ``--help``: the binary's docstring, then each group's flags."""
    fv = flag_values if flag_values is not None else FLAGS
    doc = (sys.modules["__main__"].__doc__ or "").strip()
    sections = [fv.module_help(group) for group in groups]
    return "\n".join([doc, *sections, "", "Try --helpfull to get a list of all flags."])


def run(main: Callable[[list[str]], Any], argv: Sequence[str] | None = None, *,
        blame: Mapping[type[BaseException], str] | None = None,
        help_groups: Sequence[str] = ()) -> NoReturn:
    """``absl.app.run(main)`` with one-line errors and exit codes (see the module docstring).

    Args:
        main: the binary's main(argv).
        argv: default ``sys.argv``.
        blame: exception type -> flag name, for messages that name no flag, e.g.
            ``{DataError: "data_dir"}``.
        help_groups: more ``--help`` groups after those of :func:`group_flags`, in order.

    Example:
        >>> if __name__ == "__main__":  # doctest: +SKIP
        ...     common.run(main, blame={DataError: "data_dir"})
    """
    blame = dict(blame or {})

    def guarded(args: list[str]) -> Any:
        previous = signal.signal(signal.SIGTERM, _terminate)
        try:
            return main(args)
        except SystemExit as e:
            if isinstance(e.code, str):  # sys.exit("error: ...") from a binary
                text = e.code[len("error: "):] if e.code.startswith("error: ") else e.code
                _fail(f"error: {describe(RuntimeError(text), blame)}", EXIT_ERROR)
            raise
        except app.UsageError as e:
            _fail(f"error: {describe(e, blame)}", EXIT_USAGE)
        except KeyboardInterrupt as e:
            # The engine re-raises Ctrl-C as SearchInterrupted (with the resume hint); a
            # SIGTERM underneath keeps its own exit code.
            signal_error = next((x for x in (e, e.__context__) if isinstance(x, _Terminated)), None)
            code = EXIT_INTERRUPTED if signal_error is None else 128 + signal_error.signum
            _fail(f"{_one_line(str(e)) or 'interrupted'}", code)
        except Exception as e:  # noqa: BLE001  the point: no traceback wall for users
            if FLAGS.verbose_errors:
                raise
            hint = "" if isinstance(e, USER_ERRORS) else (
                " (an internal error: rerun with --verbose_errors for the traceback and "
                "report it)")
            _fail(f"error: {describe(e, blame)}{hint}", EXIT_ERROR)
        finally:
            signal.signal(signal.SIGTERM, previous)

    args = list(argv) if argv is not None else list(sys.argv)
    groups = [*_HELP_GROUPS, *(g for g in help_groups if g not in _HELP_GROUPS)]
    if groups and any(a in HELP_FLAGS for a in args[1:]):
        print(help_text(groups))
        raise SystemExit(0)
    app.run(guarded, argv=list(argv) if argv is not None else None, flags_parser=_parse_flags)
    raise AssertionError("unreachable: app.run exits")  # pragma: no cover


def describe(error: BaseException, blame: Mapping[type[BaseException], str] | None = None) -> str:
    """``error`` as one line that names the argument it is about."""
    message = _one_line(str(error)) or type(error).__name__
    if isinstance(error, (RecursionError, MemoryError)) and message == type(error).__name__:
        message = f"{type(error).__name__}: input too large or too deeply nested"
    lead = re.match(r"^([A-Za-z_][\w]*)(=[^:]*)?:", message)
    if lead and lead.group(1) in FLAGS and not lead.group(1).startswith("--"):
        return f"--{message}"  # "search_dir: ..." from the library: the flag of that name
    if any(name in FLAGS for name in re.findall(r"--(?:no)?(\w+)", message)):
        return message
    flag = _flag_in(error, message)
    if flag is None:
        flag = next((name for kind, name in (blame or {}).items() if isinstance(error, kind)),
                    None)
    if flag is None:
        return message
    value = FLAGS[flag].value
    shown = f"={_short(value)}" if value not in (None, "", [], False) else ""
    return f"--{flag}{shown}: {message}"


def _parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, with one line and exit code 2 on a bad flag."""
    FLAGS.unparse_flags()  # a fresh parse (the tests call run() several times in one process)
    try:
        return FLAGS(argv)
    except flags.Error as e:
        _fail(f"error: {_one_line(str(e))} (--helpshort lists the flags)", EXIT_USAGE)


def _fail(line: str, code: int) -> NoReturn:
    sys.stdout.flush()
    print(line, file=sys.stderr, flush=True)
    raise SystemExit(code)


class _Terminated(KeyboardInterrupt):
    def __init__(self, signum: int):
        super().__init__(f"terminated by signal {signum}")
        self.signum = signum


def _terminate(signum: int, frame: Any) -> None:
    # Raised in the main thread: the same clean-up as Ctrl-C (the runner stops its workers).
    raise _Terminated(signum)


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= MAX_MESSAGE_CHARS else line[:MAX_MESSAGE_CHARS - 1] + "…"


def _short(value: Any) -> str:
    text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
    return text if len(text) <= 80 else text[:79] + "…"


def _flag_in(error: BaseException, message: str) -> str | None:
    """The flag given on the command line whose (path) value the error is about."""
    given = [(name, str(FLAGS[name].value)) for name in FLAGS
             if FLAGS[name].present and isinstance(FLAGS[name].value, str) and FLAGS[name].value]
    filename = getattr(error, "filename", None)
    if filename is not None:
        target = os.path.abspath(os.fspath(filename))
        hits = [(len(v), n) for n, v in given
                if target == os.path.abspath(v) or target.startswith(os.path.abspath(v) + os.sep)]
        if hits:
            return max(hits)[1]
    hits = [(len(v), n) for n, v in given if len(v) >= 3 and v in message]
    return max(hits)[1] if hits else None

REFERENCES: dict[str, Callable[..., Spec]] = {
    "vgg19": lambda shape, classes, alpha: reference.vgg19(shape, classes),
    "mobilenet_v2": lambda shape, classes, alpha: reference.mobilenet_v2(shape, classes, alpha=alpha),
}


def valid_shape(values: Sequence[str] | None) -> bool:
    try:
        return values is not None and len(values) == 3 and all(int(v) > 0 for v in values)
    except ValueError:
        return False


def load_spec(path: str, flag: str = "spec") -> Spec:
    """Reads a spec JSON file; a missing, oversized, binary or malformed file (deep
    nesting, huge numbers included) is a usage error naming ``--<flag>``."""
    file = pathlib.Path(path)
    if not file.is_file():
        what = ("got an empty path" if not str(path).strip() else
                f"{path} is not a file" if file.exists() else f"{path} does not exist")
        raise app.UsageError(f"--{flag}: {what}; pass the path of a spec JSON file (for example "
                             "runs/x/best/spec.json)")
    size = file.stat().st_size
    if size > MAX_SPEC_BYTES:
        raise app.UsageError(f"--{flag}: {path} is {size:,} bytes, more than a spec can be "
                             f"({MAX_SPEC_BYTES:,}); pass a spec JSON file")
    try:
        text = file.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise app.UsageError(f"--{flag}: {path} is not UTF-8 text; pass a spec JSON file") from None
    try:
        return spec_from_json(text)
    except (InvalidSpecError, ValueError, TypeError, KeyError, RecursionError) as e:
        why = str(e) if not isinstance(e, RecursionError) else "it nests too deeply"
        raise app.UsageError(f"--{flag}: {path} is not a valid spec: {_one_line(why)}") from None


def reference_spec(name: str, input_shape: Sequence[str], num_classes: int, alpha: float) -> Spec:
    shape = tuple(int(v) for v in input_shape)
    try:
        return REFERENCES[name](shape, num_classes, alpha)
    except InvalidSpecError as e:
        raise app.UsageError(f"--reference={name} at --input_shape={','.join(input_shape)}: {e}") from None


def cost_summary(spec: Spec, bytes_per_element: int = 4, build: bool = True,
                 as_json: bool = False) -> str:
    """Every analytic cost of ``spec`` (plus ``keras_params`` if ``build``), as a table or JSON."""
    report = estimate(spec, bytes_per_element=bytes_per_element)
    more: dict[str, Any] = {}
    if build:
        from keras_cnas.builders import build_model  # imports TensorFlow

        more["keras_params"] = build_model(spec).count_params()
    if as_json:
        return json.dumps({**report.to_dict(), **more, "space": spec.SPACE, "key": spec.key()},
                          sort_keys=True)
    describe = getattr(spec, "describe", None)
    header = f"{spec.SPACE} spec {spec.key()}" + (f"\n{describe()}" if describe else "")
    return f"{header}\n{report.table(**more)}"
