"""Repository hygiene: the Keras shim rule, the import direction of docs/architecture.md,
BUILD completeness, README's first screen."""

import ast
import pathlib
import re

import pytest

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


# --- import direction (docs/architecture.md, "Layers") ------------------------------------


def documented_layers(doc: str) -> dict[str, int]:
    """The layer of each unit of ``keras_cnas/`` (a subpackage ``x/`` or a module ``x.py``)
    from the code block of docs/architecture.md's "Layers": 0 is the top; names on one line
    share a layer. A continuation line (deeper indent) names nothing."""
    block = doc.split("## Layers", 1)[1].split("```", 2)[1]
    lines = block.splitlines()
    start = lines.index("keras_cnas/") + 1
    layers: dict[str, int] = {}
    for rank, line in enumerate(line for line in lines[start:] if re.match(r"  \S", line)):
        head = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0]
        for name, _ in re.findall(r"([A-Za-z_]\w*)(/|\.py)", head):
            layers[name] = rank
    return layers


def _unit(module: str) -> str | None:
    """``keras_cnas.engine.search`` -> ``engine``; ``keras_cnas`` -> ``__init__``."""
    parts = module.split(".")
    if parts[0] != "keras_cnas":
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def imported_modules(path: pathlib.Path, root: pathlib.Path):
    """Every module ``path`` imports (at the top, in functions, under TYPE_CHECKING), as
    ``(line, dotted name)``; ``from pkg import mod`` names ``pkg.mod`` when that is a module."""
    rel = path.relative_to(root).with_suffix("")
    package = list(rel.parts[:-1])  # the package a relative import starts from
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                as_path = root.joinpath(*sub.split("."))
                is_module = as_path.with_suffix(".py").is_file() or (as_path / "__init__.py").is_file()
                yield node.lineno, sub if is_module else base


def upward_imports(root: pathlib.Path, layers: dict[str, int]) -> list[tuple[str, int, str, str]]:
    """``(file, line, imported module, why)`` for every import under ``root/keras_cnas`` that
    points up the layering, or from or to a unit the layer block does not name."""
    found = []
    for path in sorted((root / "keras_cnas").rglob("*.py")):
        rel = path.relative_to(root)
        own = rel.parts[1] if len(rel.parts) > 2 else rel.stem
        if own not in layers:
            found.append((str(rel), 0, "", f"{own} is not in the layer block: add it"))
            continue
        for line, module in imported_modules(path, root):
            unit = _unit(module)
            if unit is None or unit == own:
                continue
            if unit not in layers:
                found.append((str(rel), line, module, f"{unit} is not in the layer block"))
            elif layers[unit] < layers[own]:
                found.append((str(rel), line, module, f"{own} imports {unit}, a higher layer"))
    return found


def test_no_import_points_up_the_layering():
    layers = documented_layers((REPO / "docs" / "architecture.md").read_text())
    found = upward_imports(REPO, layers)
    offenders = [f"{file}:{line} {module}: {why}" for file, line, module, why in found]
    assert offenders == [], "move the code down or invert the dependency (docs/architecture.md)"


def test_the_layer_block_names_every_unit_in_order():
    layers = documented_layers((REPO / "docs" / "architecture.md").read_text())
    assert layers["__init__"] < layers["cli"] < layers["engine"] < layers["training"] < layers["export"]
    assert layers["spaces"] < layers["registry"] == layers["errors"] < layers["_keras"]


@pytest.mark.parametrize("where, source, upward", [
    ("spaces/bad.py", "from keras_cnas.engine import search\n", True),
    ("spaces/bad.py", "def f():\n    import keras_cnas.engine.search\n", True),  # lazy: still up
    ("costs/bad.py", "from keras_cnas import devices\n", True),
    ("costs/bad.py", "from ..engine import store\n", True),  # relative
    ("engine/bad.py", "from keras_cnas.spaces import base\nimport numpy\n", False),
    ("engine/bad.py", "from . import store\n", False),
])
def test_an_injected_upward_import_fails(tmp_path, where, source, upward):
    for unit in ("engine", "spaces", "costs"):
        (tmp_path / "keras_cnas" / unit).mkdir(parents=True)
        (tmp_path / "keras_cnas" / unit / "__init__.py").write_text("")
        (tmp_path / "keras_cnas" / unit / "store.py").write_text("")
        (tmp_path / "keras_cnas" / unit / "search.py").write_text("")
        (tmp_path / "keras_cnas" / unit / "base.py").write_text("")
    (tmp_path / "keras_cnas" / "__init__.py").write_text("")
    (tmp_path / "keras_cnas" / "devices.py").write_text("from keras_cnas.costs import base\n")
    (tmp_path / "keras_cnas" / where).write_text(source)
    layers = {"__init__": 0, "engine": 1, "devices": 2, "costs": 3, "spaces": 4}
    found = upward_imports(tmp_path, layers)
    assert bool(found) == upward, found
    if upward:
        assert found[0][0] == f"keras_cnas/{where}" and "higher layer" in found[0][3]


@pytest.mark.parametrize("pattern, home", [
    (r"""["']dynamic["'],\s*["']float16["']|["']float16["'],\s*["']dynamic["']""",
     ("costs/quantization.py", "costs/micro_support.py")),
    (r"""["']tflite_bytes["'],\s*["']arena_bytes["'],\s*["']latency_ms["']""", ("costs/measured.py",)),
])
def test_quantization_and_measured_cost_names_are_spelled_in_one_home(pattern, home):
    """The quantizations, the TFLite Micro rule and the measured costs are imported from
    keras_cnas/costs, never spelled again (a copy drifts)."""
    regex = re.compile(pattern)
    homes = {REPO / "keras_cnas" / h for h in home}
    offenders = [str(p.relative_to(REPO)) for top in ("keras_cnas", "tools")
                 for p in sorted((REPO / top).rglob("*.py"))
                 if p not in homes and regex.search(p.read_text())]
    assert offenders == []
