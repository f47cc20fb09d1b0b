"""The MIT-LL variable-length conv/fc descriptor (eqs. 3-5) and its search space.

A descriptor is an input size, a list of conv layers
``(n_filters, filt_x, filt_y, pool_x, pool_y, sub_x, sub_y)`` and a list of fully
connected layers ``(n_hidden)``, followed by the classifier. The network it describes:

* each conv layer is ``Conv2D(n_filters, (filt_y, filt_x), padding="same", no bias)`` ->
  ``BatchNormalization`` -> ``ReLU``, then, unless pool and sub are all 1,
  ``MaxPool2D(pool_size=(pool_y, pool_x), strides=(sub_y, sub_x), padding="valid")``
  (a pool of 1 with a stride of 2 is plain subsampling);
* ``Flatten``, each fc layer ``Dense(n_hidden, relu)``, then ``Dense(num_classes, softmax)``.

Validity (the paper's FailValidArch): the spatial size never drops below 1. A valid max-pool
output is ``(x - pool) // sub + 1``, so that means ``pool <= x`` in each direction.

Pure Python: sampling, validation and mutation take microseconds (see
``benchmarks/cost_speed.py``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

from keras_cnas.errors import InvalidSpecError
from keras_cnas.spaces.base import (
    SPACES,
    SPEC_TYPES,
    Mutation,
    Space,
    Spec,
    check_int,
    check_shape,
    require,
)

CONV_FIELDS = ("n_filters", "filt_x", "filt_y", "pool_x", "pool_y", "sub_x", "sub_y")
FC_FIELDS = ("n_hidden",)
#: Coordinate-descent step factors of Algorithm II (increase, decrease).
ALPHAS = (1.5, 0.66)


class ConvLayer(NamedTuple):
    """One conv layer of a descriptor (a NamedTuple: immutable, hashable and cheap)."""

    n_filters: int
    filt_x: int = 3
    filt_y: int = 3
    pool_x: int = 1
    pool_y: int = 1
    sub_x: int = 1
    sub_y: int = 1

    @property
    def pools(self) -> bool:
        """Whether a max-pool layer follows the convolution."""
        return not (self.pool_x == self.pool_y == self.sub_x == self.sub_y == 1)


class FcLayer(NamedTuple):
    """One hidden fully connected layer of a descriptor."""

    n_hidden: int


class Coordinate(NamedTuple):
    """A numeric coordinate of a descriptor: ``section`` is ``"conv"`` or ``"fc"``."""

    section: str
    layer: int
    field: str

    def __str__(self) -> str:
        return f"{self.section}_layers[{self.layer}].{self.field}"


def pooled_size(size: int, pool: int, sub: int) -> int:
    """Output length of a valid max-pool (0 or less means the layer is invalid)."""
    return (size - pool) // sub + 1


@dataclasses.dataclass(frozen=True)
class Descriptor(Spec):
    """An MIT-LL network descriptor.

    Example:
        >>> d = Descriptor((28, 28, 1), 10,
        ...                conv_layers=[ConvLayer(16, pool_x=2, pool_y=2, sub_x=2, sub_y=2)],
        ...                fc_layers=[FcLayer(64)])
        >>> d.spatial_sizes()
        [(14, 14)]
        >>> Descriptor.from_json(d.to_json()) == d
        True
    """

    SPACE = "descriptor"
    VERSION = 1

    input_shape: tuple[int, int, int]
    num_classes: int
    conv_layers: tuple[ConvLayer, ...] = ()
    fc_layers: tuple[FcLayer, ...] = ()

    def __post_init__(self) -> None:
        setattr_ = object.__setattr__
        setattr_(self, "input_shape", check_shape("input_shape", self.input_shape))
        check_int("num_classes", self.num_classes, 1)
        setattr_(self, "conv_layers", tuple(_as_conv(i, l) for i, l in enumerate(self.conv_layers)))
        setattr_(self, "fc_layers", tuple(_as_fc(i, l) for i, l in enumerate(self.fc_layers)))
        self.spatial_sizes()  # raises if the spatial size drops below 1

    @classmethod
    def _trusted(cls, input_shape, num_classes, conv_layers, fc_layers) -> "Descriptor":
        """Builds without validation: for specs valid by construction (sampling)."""
        spec = object.__new__(cls)
        object.__setattr__(spec, "input_shape", input_shape)
        object.__setattr__(spec, "num_classes", num_classes)
        object.__setattr__(spec, "conv_layers", conv_layers)
        object.__setattr__(spec, "fc_layers", fc_layers)
        return spec

    def spatial_sizes(self) -> list[tuple[int, int]]:
        """(height, width) after each conv layer; raises InvalidSpecError if one is < 1."""
        h, w = self.input_shape[0], self.input_shape[1]
        sizes = []
        for i, layer in enumerate(self.conv_layers):
            if layer.pools:
                nh = pooled_size(h, layer.pool_y, layer.sub_y)
                nw = pooled_size(w, layer.pool_x, layer.sub_x)
                if nh < 1 or nw < 1:
                    raise InvalidSpecError(
                        f"conv_layers[{i}]: a {layer.pool_y}x{layer.pool_x} pool with stride "
                        f"{layer.sub_y}x{layer.sub_x} on the {h}x{w} (height x width) map "
                        f"reached after layer {i - 1 if i else 'input'} gives {nh}x{nw}; the "
                        "spatial size must stay >= 1: use pool sizes <= the map size, or "
                        "fewer subsampling layers (FailValidArch)")
                h, w = nh, nw
            sizes.append((h, w))
        return sizes

    def with_layers(self, conv_layers: Sequence[ConvLayer] | None = None,
                    fc_layers: Sequence[FcLayer] | None = None) -> "Descriptor":
        """A copy with other layers (validated)."""
        return Descriptor(self.input_shape, self.num_classes,
                          tuple(self.conv_layers if conv_layers is None else conv_layers),
                          tuple(self.fc_layers if fc_layers is None else fc_layers))

    def describe(self) -> str:
        """The network in words, e.g. ``"conv16x3x3/p2s2 > fc64 > out10"``."""
        parts = []
        for l in self.conv_layers:
            text = f"conv{l.n_filters}x{l.filt_y}x{l.filt_x}"
            if l.pools:
                text += f"/p{l.pool_y}x{l.pool_x}s{l.sub_y}x{l.sub_x}"
            parts.append(text)
        parts += [f"fc{l.n_hidden}" for l in self.fc_layers]
        parts.append(f"out{self.num_classes}")
        return " > ".join(parts)

    def _payload(self) -> dict[str, Any]:
        return {
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "conv_layers": [l._asdict() for l in self.conv_layers],
            "fc_layers": [l._asdict() for l in self.fc_layers],
        }

    @classmethod
    def _from_payload(cls, payload: Mapping[str, Any]) -> "Descriptor":
        conv = require(payload, "conv_layers")
        fc = require(payload, "fc_layers")
        for field, value in (("conv_layers", conv), ("fc_layers", fc)):
            if not isinstance(value, list):
                raise InvalidSpecError(f"{field}: expected a list, got {value!r:.80}")
        unknown = set(payload) - {"input_shape", "num_classes", "conv_layers", "fc_layers"}
        if unknown:
            raise InvalidSpecError(f"descriptor: unknown fields {sorted(unknown)}")
        return cls(require(payload, "input_shape"), require(payload, "num_classes"),
                   tuple(_conv_from_json(i, l) for i, l in enumerate(conv)),
                   tuple(_fc_from_json(i, l) for i, l in enumerate(fc)))


SPEC_TYPES.add(Descriptor.SPACE, Descriptor)


def _as_conv(i: int, layer: Any) -> ConvLayer:
    if not isinstance(layer, ConvLayer):
        if not isinstance(layer, (tuple, list)) or not 1 <= len(layer) <= 7:
            raise InvalidSpecError(
                f"conv_layers[{i}]: expected a ConvLayer or a tuple {CONV_FIELDS}, got {layer!r}")
        layer = ConvLayer(*layer)
    for field, value in zip(CONV_FIELDS, layer):
        check_int(f"conv_layers[{i}].{field}", value, 1)
    return ConvLayer(*(int(v) for v in layer))


def _as_fc(i: int, layer: Any) -> FcLayer:
    if isinstance(layer, (int, np.integer)) and not isinstance(layer, bool):
        layer = FcLayer(int(layer))
    if not isinstance(layer, FcLayer):
        if not isinstance(layer, (tuple, list)) or len(layer) != 1:
            raise InvalidSpecError(f"fc_layers[{i}]: expected an FcLayer or (n_hidden,), got {layer!r}")
        layer = FcLayer(*layer)
    return FcLayer(check_int(f"fc_layers[{i}].n_hidden", layer.n_hidden, 1))


def _conv_from_json(i: int, data: Any) -> ConvLayer:
    if not isinstance(data, Mapping) or set(data) != set(CONV_FIELDS):
        raise InvalidSpecError(
            f"conv_layers[{i}]: expected an object with fields {list(CONV_FIELDS)}, got {data!r:.120}")
    return _as_conv(i, tuple(data[f] for f in CONV_FIELDS))


def _fc_from_json(i: int, data: Any) -> FcLayer:
    if not isinstance(data, Mapping) or set(data) != {"n_hidden"}:
        raise InvalidSpecError(f"fc_layers[{i}]: expected {{\"n_hidden\": int}}, got {data!r:.120}")
    return _as_fc(i, (data["n_hidden"],))


@SPACES.register("descriptor")
class DescriptorSpace(Space):
    """The MIT-LL descriptor space; defaults are the paper's CIFAR-10 bounds.

    Args:
        input_shape: (height, width, channels) of the images.
        num_classes: classifier outputs.
        min_conv_layers, max_conv_layers: bounds on the number of conv layers (paper: <= 26).
        min_filters, max_filters: bounds on ``n_filters`` (paper: <= 128).
        max_kernel: largest ``filt_x`` / ``filt_y`` (paper: 3).
        max_pool: largest ``pool_x`` / ``pool_y`` (paper: 2).
        max_subsample: largest ``sub_x`` / ``sub_y`` (paper: 2).
        min_fc_layers, max_fc_layers: bounds on the number of hidden fc layers.
        min_hidden, max_hidden: bounds on ``n_hidden`` (paper: <= 2048).

    Example:
        >>> space = DescriptorSpace((28, 28, 1), 10, max_conv_layers=4)
        >>> spec = space.sample(np.random.default_rng(0))
        >>> space.validate(spec)
        >>> space.from_decisions(space.to_decisions(spec)) == spec
        True
    """

    name = "descriptor"

    def __init__(self, input_shape: Sequence[int], num_classes: int, *,
                 min_conv_layers: int = 1, max_conv_layers: int = 26,
                 min_filters: int = 1, max_filters: int = 128, max_kernel: int = 3,
                 max_pool: int = 2, max_subsample: int = 2,
                 min_fc_layers: int = 0, max_fc_layers: int = 2,
                 min_hidden: int = 1, max_hidden: int = 2048):
        self.input_shape = check_shape("input_shape", tuple(input_shape))
        self.num_classes = check_int("num_classes", num_classes, 1)
        self.min_conv_layers = check_int("min_conv_layers", min_conv_layers, 0)
        self.max_conv_layers = check_int("max_conv_layers", max_conv_layers, self.min_conv_layers,
                                         fix="max_conv_layers must be >= min_conv_layers")
        self.min_filters = check_int("min_filters", min_filters, 1)
        self.max_filters = check_int("max_filters", max_filters, self.min_filters,
                                     fix="max_filters must be >= min_filters")
        self.max_kernel = check_int("max_kernel", max_kernel, 1)
        self.max_pool = check_int("max_pool", max_pool, 1)
        self.max_subsample = check_int("max_subsample", max_subsample, 1)
        self.min_fc_layers = check_int("min_fc_layers", min_fc_layers, 0)
        self.max_fc_layers = check_int("max_fc_layers", max_fc_layers, self.min_fc_layers,
                                       fix="max_fc_layers must be >= min_fc_layers")
        self.min_hidden = check_int("min_hidden", min_hidden, 1)
        self.max_hidden = check_int("max_hidden", max_hidden, self.min_hidden,
                                    fix="max_hidden must be >= min_hidden")
        # (low, high) of each conv field, in CONV_FIELDS order.
        self._conv_bounds = ((self.min_filters, self.max_filters), (1, self.max_kernel),
                             (1, self.max_kernel), (1, self.max_pool), (1, self.max_pool),
                             (1, self.max_subsample), (1, self.max_subsample))

    def get_config(self) -> dict[str, Any]:
        return {
            "input_shape": list(self.input_shape), "num_classes": self.num_classes,
            "min_conv_layers": self.min_conv_layers, "max_conv_layers": self.max_conv_layers,
            "min_filters": self.min_filters, "max_filters": self.max_filters,
            "max_kernel": self.max_kernel, "max_pool": self.max_pool,
            "max_subsample": self.max_subsample, "min_fc_layers": self.min_fc_layers,
            "max_fc_layers": self.max_fc_layers, "min_hidden": self.min_hidden,
            "max_hidden": self.max_hidden,
        }

    # --- sampling ---------------------------------------------------------------------

    def sample(self, rng: np.random.Generator) -> Descriptor:
        """The paper's chained sampling: layer counts first, then each layer's parameters.

        Every parameter is uniform over its range; a pool size is uniform over the sizes
        that keep the map at least 1 wide, so every sample is valid (no rejection loop).
        """
        n_conv_choices = self.max_conv_layers - self.min_conv_layers + 1
        n_fc_choices = self.max_fc_layers - self.min_fc_layers + 1
        head = rng.random(2).tolist()
        n_conv = self.min_conv_layers + int(head[0] * n_conv_choices)
        n_fc = self.min_fc_layers + int(head[1] * n_fc_choices)
        u = rng.random(n_conv * 7 + n_fc).tolist()
        h, w = self.input_shape[0], self.input_shape[1]
        f_lo, f_span = self.min_filters, self.max_filters - self.min_filters + 1
        k, s = self.max_kernel, self.max_subsample
        conv = []
        for i in range(0, n_conv * 7, 7):
            px = 1 + int(u[i + 3] * min(self.max_pool, w))
            py = 1 + int(u[i + 4] * min(self.max_pool, h))
            sx = 1 + int(u[i + 5] * s)
            sy = 1 + int(u[i + 6] * s)
            if px != 1 or py != 1 or sx != 1 or sy != 1:
                h = (h - py) // sy + 1
                w = (w - px) // sx + 1
            conv.append(ConvLayer(f_lo + int(u[i] * f_span), 1 + int(u[i + 1] * k),
                                  1 + int(u[i + 2] * k), px, py, sx, sy))
        h_lo, h_span = self.min_hidden, self.max_hidden - self.min_hidden + 1
        fc = tuple(FcLayer(h_lo + int(x * h_span)) for x in u[n_conv * 7:])
        return Descriptor._trusted(self.input_shape, self.num_classes, tuple(conv), fc)

    def sample_layer(self, section: str, rng: np.random.Generator) -> ConvLayer | FcLayer:
        """One random layer of ``section`` ("conv" or "fc"), pools unconstrained."""
        if section == "fc":
            return FcLayer(int(rng.integers(self.min_hidden, self.max_hidden + 1)))
        if section == "conv":
            return ConvLayer(*(int(rng.integers(lo, hi + 1)) for lo, hi in self._conv_bounds))
        raise ValueError(f"section: expected 'conv' or 'fc', got {section!r}")

    # --- validation -------------------------------------------------------------------

    def validate(self, spec: Spec) -> None:
        if not isinstance(spec, Descriptor):
            raise InvalidSpecError(f"spec: expected a Descriptor, got {type(spec).__name__}")
        if tuple(spec.input_shape) != self.input_shape or spec.num_classes != self.num_classes:
            raise InvalidSpecError(
                f"spec: input_shape {spec.input_shape} / num_classes {spec.num_classes} differ "
                f"from the space's {self.input_shape} / {self.num_classes}")
        check_int("len(conv_layers)", len(spec.conv_layers), self.min_conv_layers, self.max_conv_layers)
        check_int("len(fc_layers)", len(spec.fc_layers), self.min_fc_layers, self.max_fc_layers)
        # Hot path (thousands of specs a second): one unrolled test per layer, details
        # only when it fails.
        f_lo, f_hi = self._conv_bounds[0]
        k, p, s = self.max_kernel, self.max_pool, self.max_subsample
        h, w = self.input_shape[0], self.input_shape[1]
        for i, (n, fx, fy, px, py, sx, sy) in enumerate(spec.conv_layers):
            if not (f_lo <= n <= f_hi and 1 <= fx <= k and 1 <= fy <= k and 1 <= px <= p
                    and 1 <= py <= p and 1 <= sx <= s and 1 <= sy <= s):
                self._raise_out_of_bounds(i, spec.conv_layers[i])
            if px != 1 or py != 1 or sx != 1 or sy != 1:
                h, w = (h - py) // sy + 1, (w - px) // sx + 1
                if h < 1 or w < 1:
                    spec.spatial_sizes()  # raises with the full explanation
        for i, layer in enumerate(spec.fc_layers):
            if not self.min_hidden <= layer.n_hidden <= self.max_hidden:
                raise InvalidSpecError(
                    f"fc_layers[{i}].n_hidden: {layer.n_hidden} is outside the space's range "
                    f"[{self.min_hidden}, {self.max_hidden}]")

    def _raise_out_of_bounds(self, i: int, layer: ConvLayer) -> None:
        for field, value, (lo, hi) in zip(CONV_FIELDS, layer, self._conv_bounds):
            if not lo <= value <= hi:
                raise InvalidSpecError(
                    f"conv_layers[{i}].{field}: {value} is outside the space's range [{lo}, {hi}]")

    # --- Algorithm II moves -------------------------------------------------------------

    def coordinates(self, spec: Descriptor) -> list[Coordinate]:
        """Every numeric coordinate of ``spec`` that coordinate descent may scale."""
        coords = [Coordinate("conv", i, f) for i in range(len(spec.conv_layers)) for f in CONV_FIELDS]
        coords += [Coordinate("fc", i, "n_hidden") for i in range(len(spec.fc_layers))]
        return coords

    def bounds(self, coordinate: Coordinate) -> tuple[int, int]:
        if coordinate.section == "fc":
            return self.min_hidden, self.max_hidden
        return self._conv_bounds[CONV_FIELDS.index(coordinate.field)]

    def scale(self, spec: Descriptor, coordinate: Coordinate, alpha: float) -> Descriptor | None:
        """``spec`` with one coordinate multiplied by ``alpha``, rounded and clipped.

        A step always moves by at least 1 in its direction (``round(1 * 0.66)`` would
        otherwise never decrease). Returns None when the clipped value equals the current
        one or the result is not a valid network.
        """
        layers = list(spec.conv_layers if coordinate.section == "conv" else spec.fc_layers)
        layer = layers[coordinate.layer]
        value = getattr(layer, coordinate.field)
        new = int(round(value * alpha))
        if new == value:
            new = value + (1 if alpha > 1 else -1)
        lo, hi = self.bounds(coordinate)
        new = min(max(new, lo), hi)
        if new == value:
            return None
        layers[coordinate.layer] = layer._replace(**{coordinate.field: new})
        try:
            if coordinate.section == "conv":
                return spec.with_layers(conv_layers=layers)
            return spec.with_layers(fc_layers=layers)
        except InvalidSpecError:
            return None

    def add_layer(self, spec: Descriptor, section: str, index: int | None,
                  rng: np.random.Generator) -> Descriptor | None:
        """A copy of layer ``index`` of ``section`` inserted right after it.

        With no layer to copy (``index`` None), a random layer is appended. Returns None
        when the section is full or the result is invalid.
        """
        layers = list(spec.conv_layers if section == "conv" else spec.fc_layers)
        limit = self.max_conv_layers if section == "conv" else self.max_fc_layers
        if len(layers) >= limit:
            return None
        if index is None:
            layers.append(self.sample_layer(section, rng))
        else:
            layers.insert(index + 1, layers[index])
        try:
            return spec.with_layers(**{f"{section}_layers": layers})
        except InvalidSpecError:
            return None

    def remove_layer(self, spec: Descriptor, section: str, index: int) -> Descriptor | None:
        """``spec`` without layer ``index`` of ``section``; None if that breaks a bound."""
        layers = list(spec.conv_layers if section == "conv" else spec.fc_layers)
        limit = self.min_conv_layers if section == "conv" else self.min_fc_layers
        if len(layers) <= limit:
            return None
        del layers[index]
        try:
            return spec.with_layers(**{f"{section}_layers": layers})
        except InvalidSpecError:
            return None

    def mutations(self, spec: Spec, rng: np.random.Generator) -> list[Mutation]:
        """Algorithm II's moves: scale every coordinate by 1.5 and 0.66; add a copy of a
        randomly chosen layer and remove a randomly chosen layer, in each section."""
        self.validate(spec)
        assert isinstance(spec, Descriptor)
        out = []
        for coord in self.coordinates(spec):
            for alpha in ALPHAS:
                new = self.scale(spec, coord, alpha)
                if new is not None:
                    out.append(Mutation("scale", f"{coord} x{alpha}", new))
        for section in ("conv", "fc"):
            layers = spec.conv_layers if section == "conv" else spec.fc_layers
            index = int(rng.integers(len(layers))) if layers else None
            new = self.add_layer(spec, section, index, rng)
            if new is not None:
                where = f"copy of {section}_layers[{index}]" if index is not None else "new layer"
                out.append(Mutation("add_layer", f"{section}: {where}", new))
            if layers:
                assert index is not None
                new = self.remove_layer(spec, section, index)
                if new is not None:
                    out.append(Mutation("remove_layer", f"{section}_layers[{index}]", new))
        return out

    # --- categorical view ---------------------------------------------------------------

    def decision_sizes(self) -> list[int]:
        conv = [hi - lo + 1 for lo, hi in self._conv_bounds]
        return ([self.max_conv_layers - self.min_conv_layers + 1] + conv * self.max_conv_layers
                + [self.max_fc_layers - self.min_fc_layers + 1]
                + [self.max_hidden - self.min_hidden + 1] * self.max_fc_layers)

    def ordered_decisions(self) -> list[bool]:
        """Every decision is a count or a size (layers, filters, kernel, pool, stride,
        hidden units): all ordered."""
        return [True] * len(self.decision_sizes())

    def to_decisions(self, spec: Spec) -> list[int]:
        self.validate(spec)
        assert isinstance(spec, Descriptor)
        out = [len(spec.conv_layers) - self.min_conv_layers]
        for i in range(self.max_conv_layers):
            if i < len(spec.conv_layers):
                out += [v - lo for v, (lo, _) in zip(spec.conv_layers[i], self._conv_bounds)]
            else:
                out += [0] * len(CONV_FIELDS)
        out.append(len(spec.fc_layers) - self.min_fc_layers)
        for i in range(self.max_fc_layers):
            out.append(spec.fc_layers[i].n_hidden - self.min_hidden if i < len(spec.fc_layers) else 0)
        return out

    def from_decisions(self, decisions: Sequence[int]) -> Descriptor:
        sizes = self.decision_sizes()
        if len(decisions) != len(sizes):
            raise InvalidSpecError(
                f"decisions: expected {len(sizes)} values for this descriptor space, got {len(decisions)}")
        for i, (d, size) in enumerate(zip(decisions, sizes)):
            check_int(f"decisions[{i}]", d, 0, size - 1)
        d = [int(x) for x in decisions]
        n_conv = self.min_conv_layers + d[0]
        conv = []
        for i in range(n_conv):
            raw = d[1 + 7 * i: 8 + 7 * i]
            conv.append(ConvLayer(*(v + lo for v, (lo, _) in zip(raw, self._conv_bounds))))
        base = 1 + 7 * self.max_conv_layers
        n_fc = self.min_fc_layers + d[base]
        fc = [FcLayer(self.min_hidden + d[base + 1 + i]) for i in range(n_fc)]
        return Descriptor(self.input_shape, self.num_classes, tuple(conv), tuple(fc))
