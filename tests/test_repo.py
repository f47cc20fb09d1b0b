"""Repository hygiene: the Keras shim rule, BUILD completeness, README's first screen."""

import pathlib
import re

REPO = pathlib.Path(__file__).resolve().parents[1]
PY_DIRS = ("keras_cnas", "tools", "benchmarks", "tests")


def _python_files():
    for top in PY_DIRS:
        yield from sorted((REPO / top).rglob("*.py"))


def test_keras_is_imported_only_by_the_shim():
    pattern = re.compile(r"\btf\.keras\b|^\s*import keras\b|^\s*from keras\b|^\s*import tf_keras|"
                         r"^\s*from tf_keras|^\s*import tensorflow|^\s*from tensorflow", re.M)
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "keras_cnas").rglob("*.py")
                 if p.name != "_keras.py" and pattern.search(p.read_text())]
    assert offenders == []


def test_every_python_file_is_named_in_a_build_file():
    named = set()
    for build in REPO.rglob("BUILD"):
        if ".venv" in build.parts:
            continue
        for src in re.findall(r'"([\w./-]+\.py)"', build.read_text()):
            named.add((build.parent / src).resolve())
    missing = [str(p.relative_to(REPO)) for p in _python_files() if p.resolve() not in named]
    assert missing == [], "add these to a BUILD file's srcs"


def test_readme_first_screen_shows_the_two_commands():
    first_screen = "\n".join((REPO / "README.md").read_text().splitlines()[:40])
    assert "make demo" in first_screen and "make test" in first_screen
