"""Shared helpers of the binaries: spec files, reference networks, cost output."""

from __future__ import annotations

import json
import pathlib
from typing import Any, Callable, Sequence

from absl import app

from keras_cnas.costs import estimate
from keras_cnas.errors import InvalidSpecError
from keras_cnas.spaces import Spec, reference, spec_from_json

REFERENCES: dict[str, Callable[..., Spec]] = {
    "vgg19": lambda shape, classes, alpha: reference.vgg19(shape, classes),
    "mobilenet_v2": lambda shape, classes, alpha: reference.mobilenet_v2(shape, classes, alpha=alpha),
}


def valid_shape(values: Sequence[str] | None) -> bool:
    try:
        return values is not None and len(values) == 3 and all(int(v) > 0 for v in values)
    except ValueError:
        return False


def load_spec(path: str) -> Spec:
    """Reads a spec JSON file; a missing or malformed file is a usage error naming it."""
    file = pathlib.Path(path)
    if not file.is_file():
        raise app.UsageError(f"--spec: {path} does not exist; pass the path of a spec JSON file "
                             "(for example runs/x/best/spec.json)")
    try:
        return spec_from_json(file.read_text())
    except InvalidSpecError as e:
        raise app.UsageError(f"--spec: {path} is not a valid spec: {e}") from None


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
