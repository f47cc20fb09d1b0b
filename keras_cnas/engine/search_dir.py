"""The search directory: who may use it, what a search wrote in it, how ``best/`` is replaced.

* :func:`check_path` refuses an empty, ``.``-like, home or root ``search_dir``: a search
  writes several entries there and ``--overwrite`` removes them again.
* :class:`SearchDirLock` is an OS-level exclusive lock (``fcntl.flock`` on
  ``search_dir/search.lock``) held for the whole search; a second process fails at once,
  naming the holder's pid. The kernel drops the lock when its holder dies, however it dies.
* :class:`Manifest` (``search_dir/written.json``) records the top-level entries a search
  created. ``overwrite`` deletes those and nothing else: a user's own ``report/notes.md`` in
  the folder stays.
* :func:`replace_dir` writes ``best/`` beside itself and renames it into place, so a kill at
  any moment leaves either the old ``best/`` or the new one, never an empty one.

Example:
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> with SearchDirLock(root):
    ...     Manifest(root).claim_absent(["summary.json"])
    ...     _ = (root / "summary.json").write_text("{}")
    >>> Manifest(root).entries()
    ['summary.json']
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pathlib
import shutil
from typing import Callable, Iterable, TypeVar

from keras_cnas.errors import KerasCnasError

__all__ = ["ENTRIES", "LOCK_FILE", "MANIFEST_FILE", "Manifest", "SearchDirError",
           "SearchDirLock", "check_path", "recover_dir", "replace_dir"]

LOCK_FILE = "search.lock"
MANIFEST_FILE = "written.json"
#: Every top-level entry a search (its engine, tools/search.py, tools/report.py, B-ENAS)
#: may write. Only those it created are recorded, and only recorded ones are ever deleted.
ENTRIES = ("trials.db", "trials.db-wal", "trials.db-shm", "trials.db-journal", "summary.json",
           "best", "best.new", "best.old", "trials", "cache", "tensorboard", "report",
           "flags.json", "ensemble.json", "benas", "top")
#: Entries a new search writes into or over: one that exists but was not recorded belongs
#: to someone else, and the search refuses to start rather than touch it.
_CLAIMED_ON_START = tuple(e for e in ENTRIES if e != "report")

T = TypeVar("T")


class SearchDirError(KerasCnasError, FileExistsError):
    """``search_dir`` holds another (or an incompatible) search, is in use, or is unusable."""


def check_path(search_dir: str | os.PathLike[str]) -> pathlib.Path:
    """``search_dir`` as a path, refusing one a search must not fill or clean up.

    Raises:
        SearchDirError: empty, the current directory, the home directory or ``/``.
    """
    text = os.fspath(search_dir)
    if not str(text).strip():
        raise SearchDirError("search_dir: got an empty path (the current directory); pass a "
                             "directory of its own for the search, e.g. runs/x")
    path = pathlib.Path(text).expanduser()
    resolved = path.resolve()
    for name, where in (("the current directory", pathlib.Path.cwd()),
                        ("your home directory", pathlib.Path.home()),
                        ("the file-system root", pathlib.Path(resolved.anchor))):
        if resolved == where.resolve():
            raise SearchDirError(
                f"search_dir: {text!r} is {name}; a search writes (and --overwrite deletes) "
                "several entries in its directory: pass a directory of its own, e.g. runs/x")
    if resolved.exists() and not resolved.is_dir():
        raise SearchDirError(f"search_dir: {text} is a file, not a directory; pass a directory "
                             "path (it is created if missing)")
    return path


class SearchDirLock:
    """An exclusive ``flock`` on ``search_dir/search.lock``, held until :meth:`release`.

    The file keeps the holder's pid for the error message; the lock itself is the kernel's
    and vanishes with the process, so a killed search never leaves a stale lock. Re-entrant
    within one process (B-ENAS holds it around its own phase and the search it ends with).
    """

    _held: dict[str, list[int]] = {}  # resolved lock path -> [fd, holders]

    def __init__(self, search_dir: pathlib.Path):
        self.path = pathlib.Path(search_dir) / LOCK_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._key: str | None = str(self.path.resolve())
        if self._key in self._held:
            self._held[self._key][1] += 1
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            self._key = None
            raise SearchDirError(
                f"search_dir: {search_dir} is in use by another search (process {holder} holds "
                f"{self.path}); wait for it to finish, stop it, or use another search_dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._held[self._key] = [fd, 1]

    def release(self) -> None:
        if self._key is None:
            return
        entry = self._held[self._key]
        entry[1] -= 1
        if entry[1] == 0:
            os.close(entry[0])  # closing the descriptor drops the flock
            del self._held[self._key]
        self._key = None

    def __enter__(self) -> "SearchDirLock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Manifest:
    """The top-level entries of ``search_dir`` that a search created (``written.json``)."""

    def __init__(self, search_dir: pathlib.Path):
        self.root = pathlib.Path(search_dir)
        self.path = self.root / MANIFEST_FILE

    def entries(self) -> list[str]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        except (ValueError, UnicodeDecodeError) as e:
            raise SearchDirError(f"search_dir: {self.path} is damaged ({e}); delete the search's "
                                 "files yourself or use another search_dir") from None
        written = data.get("written") if isinstance(data, dict) else None
        if not isinstance(written, list) or not all(n in ENTRIES for n in written):
            raise SearchDirError(f"search_dir: {self.path} does not list search entries; "
                                 "delete the search's files yourself or use another search_dir")
        return list(written)

    def claim_absent(self, names: Iterable[str]) -> None:
        """Records those of ``names`` that do not exist yet (the caller is about to write them)."""
        have = self.entries()
        new = [n for n in names if n not in have and not (self.root / n).exists()]
        if new:
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"written": sorted({*have, *new})}, indent=1) + "\n")
            os.replace(tmp, self.path)

    def foreign(self, names: Iterable[str] = _CLAIMED_ON_START) -> list[str]:
        """Entries of ``names`` that exist but were not written by a search."""
        have = self.entries()
        return [n for n in names if n not in have and (self.root / n).exists()]

    def remove_written(self) -> list[str]:
        """Deletes every recorded entry (never anything else); returns their names."""
        removed = []
        for name in self.entries():
            path = self.root / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
            else:
                continue
            removed.append(name)
        self.path.unlink(missing_ok=True)
        return removed

    def start(self) -> None:
        """Claims what a search is about to write; refuses entries written by someone else."""
        foreign = self.foreign()
        if foreign:
            raise SearchDirError(
                f"search_dir: {self.root} holds {', '.join(foreign)} that no search recorded "
                f"writing ({MANIFEST_FILE}); a search would write over them: move them away or "
                "use another search_dir")
        self.claim_absent(ENTRIES)


def recover_dir(target: pathlib.Path) -> None:
    """Finishes or undoes a :func:`replace_dir` that a kill interrupted."""
    new, old = _beside(target, "new"), _beside(target, "old")
    if not target.exists() and old.exists():
        os.rename(old, target)  # killed between the two renames: the old one is whole
    if old.exists():
        shutil.rmtree(old)
    if new.exists():
        shutil.rmtree(new)  # a half-written replacement


def replace_dir(target: pathlib.Path, write: Callable[[pathlib.Path], T]) -> T:
    """Runs ``write(tmp)`` on a fresh directory beside ``target``, then swaps it in.

    If ``write`` raises, ``target`` is untouched (the partial copy is removed).
    """
    recover_dir(target)
    new, old = _beside(target, "new"), _beside(target, "old")
    new.mkdir(parents=True)
    try:
        value = write(new)
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    _fsync_tree(new)
    if target.exists():
        os.rename(target, old)
    os.rename(new, target)
    shutil.rmtree(old, ignore_errors=True)
    return value


def _beside(target: pathlib.Path, tag: str) -> pathlib.Path:
    return target.with_name(f"{target.name}.{tag}")


def _fsync_tree(root: pathlib.Path) -> None:
    """Flushes the new files before the rename makes them the current ones."""
    for path in root.rglob("*"):
        if path.is_file():
            with contextlib.suppress(OSError), open(path, "rb") as f:
                os.fsync(f.fileno())
