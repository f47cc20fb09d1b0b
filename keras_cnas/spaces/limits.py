"""Size limits on a spec, checked before any work on it (pure Python).

A spec file (or a trial store, a worker's task) is user input: a 1,000-block cell made the estimators recurse past Python's
limit, 100,000 layers made them run for minutes, ``n_filters = 10**9`` asks for a tensor
no machine holds. :func:`check_limits` refuses those from the spec's JSON form in time
linear in its size, naming the field, the value and the limit.

| limit | value | applies to |
|---|---|---|
| ``MAX_ITEMS`` | 256 | entries of any one list (conv / fc layers, blocks, cell nodes, stages) |
| ``MAX_UNITS`` | 65,536 | any integer field (filters, units, channels, kernel, classes, sizes) |
| ``MAX_TENSOR_ELEMENTS`` | 2**31 - 1 | the input tensor (height x width x channels) |
| ``MAX_DEPTH`` | 16 | nesting of the spec's JSON |

Example:
    >>> try:
    ...     check_limits({"conv_layers": [{"n_filters": 10**9}]})
    ... except InvalidSpecError as e:
    ...     print(str(e)[:60])
    conv_layers[0].n_filters: 1000000000 exceeds the limit of 65
"""

from __future__ import annotations

import math
from typing import Any

from keras_cnas._checks import is_int
from keras_cnas.errors import InvalidSpecError

__all__ = ["MAX_DEPTH", "MAX_ITEMS", "MAX_TENSOR_ELEMENTS", "MAX_UNITS", "check_limits"]

MAX_ITEMS = 256
MAX_UNITS = 65536
MAX_TENSOR_ELEMENTS = 2**31 - 1
MAX_DEPTH = 16


def check_limits(spec: Any) -> None:
    """Refuses a spec (or its ``to_dict()`` / parsed JSON) beyond the documented limits.

    Raises:
        InvalidSpecError: naming the field, its value and the limit.
    """
    data = spec.to_dict() if hasattr(spec, "to_dict") else spec
    _walk(data, "spec" if not isinstance(data, dict) else "", 0)
    shape = data.get("input_shape") if isinstance(data, dict) else None
    if isinstance(shape, list) and shape and all(isinstance(v, int) for v in shape):
        elements = math.prod(shape)
        if elements > MAX_TENSOR_ELEMENTS:
            raise InvalidSpecError(
                f"input_shape: {shape} is {elements:,} elements, more than the limit of "
                f"{MAX_TENSOR_ELEMENTS:,} for any tensor; use a smaller input")


def _walk(node: Any, where: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise InvalidSpecError(f"{where or 'spec'}: nested more than {MAX_DEPTH} levels deep; "
                               "not a spec keras_cnas writes")
    if isinstance(node, dict):
        for key, value in node.items():
            _walk(value, f"{where}.{key}" if where else str(key), depth + 1)
    elif isinstance(node, (list, tuple)):
        if len(node) > MAX_ITEMS:
            raise InvalidSpecError(
                f"{where}: {len(node):,} entries, more than the limit of {MAX_ITEMS:,}; use "
                "fewer layers / blocks")
        for i, value in enumerate(node):
            _walk(value, f"{where}[{i}]", depth + 1)
    elif is_int(node) and abs(node) > MAX_UNITS:
        shown = str(node) if node.bit_length() < 64 else f"a {node.bit_length()}-bit integer"
        raise InvalidSpecError(f"{where}: {shown} exceeds the limit of {MAX_UNITS:,} for any "
                               "size (filters, units, channels, kernel, classes); use a "
                               "smaller value")
