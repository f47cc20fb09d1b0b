"""The MIT-LL variable-length conv/fc descriptor (eqs. 3-5) and its search space.

A descriptor is an input size, a list of conv layers
``(n_filters, filt_x, filt_y, pool_x, pool_y, sub_x, sub_y)`` and a list of fully
connected layers ``(n_hidden)``, followed by the classifier. The network it describes:

* each conv layer is ``Conv2D(n_filters, (filt_y, filt_x), padding="same", no bias)`` ->
  ``BatchNormalization`` -> ``ReLU``, then, unless pool and sub are all 1,
  ``MaxPool2D(pool_size=(pool_y, pool_x), strides=(sub_y, sub_x), padding="valid")``
  (a pool of 1 with a stride of 2 is plain subsampling);
* ``Flatten`` (or ``GlobalAveragePooling2D`` when ``global_pool``), each fc layer
  ``Dense(n_hidden, relu)``, then ``Dense(num_classes, softmax)``.

Version 2 adds what residual networks need, each optional (a descriptor without them is
written as version 1, so its JSON and key are those of older releases):

* a conv ``stride`` (default 1): ``Conv2D(..., strides=stride, padding="same")``, output
  ``ceil(x / stride)``;
* ``skips``: a :class:`Skip` ``(start, end)`` adds the input of conv layer ``start`` to the
  output of conv layer ``end`` after its BatchNorm and before its ReLU (then the ReLU, then
  layer ``end``'s pool), as in a ResNet basic block. The shortcut is the identity where the
  shapes agree, else a projection ``Conv2D(c, 1, strides=(s_y, s_x))`` + BatchNorm with the
  smallest strides that give the path's output size (a skip whose size change no such
  stride gives is invalid). Skips are sorted and do not overlap;
* ``global_pool``: global average pooling instead of ``Flatten`` before the fc layers.

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
    SIZERS,
    SPACES,
    SPEC_TYPES,
    Mutation,
    Space,
    Spec,
    check_int,
    check_shape,
    require,
)

#: A conv layer's fields; version 1 JSON has the first seven (no ``stride``).
CONV_FIELDS = ("n_filters", "filt_x", "filt_y", "pool_x", "pool_y", "sub_x", "sub_y", "stride")
V1_CONV_FIELDS = CONV_FIELDS[:7]
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
    stride: int = 1

    @property
    def pools(self) -> bool:
        """Whether a max-pool layer follows the convolution."""
        return not (self.pool_x == self.pool_y == self.sub_x == self.sub_y == 1)


class FcLayer(NamedTuple):
    """One hidden fully connected layer of a descriptor."""

    n_hidden: int


class Skip(NamedTuple):
    """A skip connection from the input of conv layer ``start`` to the output of conv layer
    ``end`` (``start <= end``), added before layer ``end``'s ReLU."""

    start: int
    end: int

    @property
    def span(self) -> int:
        """The conv layers it bypasses."""
        return self.end - self.start + 1


def shortcut_stride(size_in: int, size_out: int) -> int | None:
    """The smallest stride ``s`` with ``ceil(size_in / s) == size_out`` (what a 1x1
    "same" conv with stride ``s`` gives), or None when no stride gives it.

    Example:
        >>> shortcut_stride(32, 16), shortcut_stride(31, 15), shortcut_stride(8, 8)
        (2, None, 1)
    """
    if not 1 <= size_out <= size_in:
        return None
    s = -(-size_in // size_out)
    return s if -(-size_in // s) == size_out else None


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
        >>> r = Descriptor((8, 8, 3), 10, [ConvLayer(8), ConvLayer(16, stride=2)],
        ...                skips=[Skip(0, 1)], global_pool=True)
        >>> r.shortcut(r.skips[0])      # 8x8x3 -> 4x4x16: a 1x1 projection, strides (2, 2)
        (2, 2)
    """

    SPACE = "descriptor"
    VERSION = 2

    input_shape: tuple[int, int, int]
    num_classes: int
    conv_layers: tuple[ConvLayer, ...] = ()
    fc_layers: tuple[FcLayer, ...] = ()
    skips: tuple[Skip, ...] = ()
    global_pool: bool = False

    def __post_init__(self) -> None:
        setattr_ = object.__setattr__
        setattr_(self, "input_shape", check_shape("input_shape", self.input_shape))
        check_int("num_classes", self.num_classes, 1)
        setattr_(self, "conv_layers", tuple(_as_conv(i, l) for i, l in enumerate(self.conv_layers)))
        setattr_(self, "fc_layers", tuple(_as_fc(i, l) for i, l in enumerate(self.fc_layers)))
        if not isinstance(self.global_pool, (bool, np.bool_)):
            raise InvalidSpecError(f"global_pool: expected true or false, got {self.global_pool!r:.40}")
        setattr_(self, "global_pool", bool(self.global_pool))
        setattr_(self, "skips", tuple(_as_skip(i, s) for i, s in enumerate(self.skips)))
        self.spatial_sizes()  # raises if the spatial size drops below 1
        self._check_skips()

    @classmethod
    def _trusted(cls, input_shape, num_classes, conv_layers, fc_layers, skips=(),
                 global_pool=False) -> "Descriptor":
        """Builds without validation: for specs valid by construction (sampling)."""
        spec = object.__new__(cls)
        object.__setattr__(spec, "input_shape", input_shape)
        object.__setattr__(spec, "num_classes", num_classes)
        object.__setattr__(spec, "conv_layers", conv_layers)
        object.__setattr__(spec, "fc_layers", fc_layers)
        object.__setattr__(spec, "skips", skips)
        object.__setattr__(spec, "global_pool", global_pool)
        return spec

    @property
    def is_v1(self) -> bool:
        """Whether the paper's (version 1) descriptor says it all: no stride, skip or
        global pool."""
        return (not self.skips and not self.global_pool
                and all(l.stride == 1 for l in self.conv_layers))

    def spatial_sizes(self) -> list[tuple[int, int]]:
        """(height, width) after each conv layer; raises InvalidSpecError if one is < 1."""
        h, w = self.input_shape[0], self.input_shape[1]
        sizes = []
        for i, layer in enumerate(self.conv_layers):
            if layer.stride != 1:
                h, w = -(-h // layer.stride), -(-w // layer.stride)
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

    def input_of(self, layer: int) -> tuple[int, int, int]:
        """(height, width, channels) of conv layer ``layer``'s input."""
        if layer == 0:
            return self.input_shape
        h, w = self.spatial_sizes()[layer - 1]
        return h, w, self.conv_layers[layer - 1].n_filters

    def skip_output(self, skip: Skip) -> tuple[int, int, int]:
        """(height, width, channels) where ``skip`` is added: conv layer ``end``'s output
        before its pool."""
        h, w, _ = self.input_of(skip.end)
        layer = self.conv_layers[skip.end]
        return -(-h // layer.stride), -(-w // layer.stride), layer.n_filters

    def shortcut(self, skip: Skip) -> tuple[int, int] | None:
        """None for an identity shortcut, else the (y, x) strides of its 1x1 projection.

        Raises InvalidSpecError when no 1x1 projection gives the path's output shape.
        """
        hi, wi, ci = self.input_of(skip.start)
        ho, wo, co = self.skip_output(skip)
        if (hi, wi, ci) == (ho, wo, co):
            return None
        sy, sx = shortcut_stride(hi, ho), shortcut_stride(wi, wo)
        if sy is None or sx is None:
            raise InvalidSpecError(
                f"skips: the skip from conv_layers[{skip.start}] to conv_layers[{skip.end}] "
                f"goes from a {hi}x{wi} map to a {ho}x{wo} one, which no strided 1x1 "
                "projection gives; end it before the pool that breaks the ratio, or use "
                "pools that halve evenly")
        return sy, sx

    def _check_skips(self) -> None:
        n, previous = len(self.conv_layers), -1
        for i, skip in enumerate(self.skips):
            if not previous < skip.start <= skip.end < n:
                raise InvalidSpecError(
                    f"skips[{i}]: {list(skip)} must have start <= end < {n} (the conv layers) "
                    "and start after the previous skip's end (skips are sorted and do not "
                    "overlap)")
            previous = skip.end
            self.shortcut(skip)

    def with_layers(self, conv_layers: Sequence[ConvLayer] | None = None,
                    fc_layers: Sequence[FcLayer] | None = None,
                    skips: Sequence[Skip] | None = None) -> "Descriptor":
        """A copy with other layers or skips (validated)."""
        return Descriptor(self.input_shape, self.num_classes,
                          tuple(self.conv_layers if conv_layers is None else conv_layers),
                          tuple(self.fc_layers if fc_layers is None else fc_layers),
                          tuple(self.skips if skips is None else skips), self.global_pool)

    def describe(self) -> str:
        """The network in words, e.g. ``"conv16x3x3/p2s2 > fc64 > out10"``; a skip is
        ``[...]+`` around the layers it bypasses, ``/2`` a conv stride, ``gap`` the global pool."""
        starts = {s.start for s in self.skips}
        ends = {s.end for s in self.skips}
        parts = []
        for i, l in enumerate(self.conv_layers):
            text = f"conv{l.n_filters}x{l.filt_y}x{l.filt_x}"
            if l.stride != 1:
                text += f"/{l.stride}"
            if i in starts:
                text = "[" + text
            if i in ends:
                text += "]+"
            if l.pools:
                text += f"/p{l.pool_y}x{l.pool_x}s{l.sub_y}x{l.sub_x}"
            parts.append(text)
        if self.global_pool:
            parts.append("gap")
        parts += [f"fc{l.n_hidden}" for l in self.fc_layers]
        parts.append(f"out{self.num_classes}")
        return " > ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """Version 1 JSON when the paper's descriptor says it all (so keys of such specs
        are those older releases computed), version 2 otherwise."""
        if self.is_v1:
            return {"space": self.SPACE, "version": 1, **self._payload()}
        return super().to_dict()

    def _payload(self) -> dict[str, Any]:
        if self.is_v1:
            return {
                "input_shape": list(self.input_shape),
                "num_classes": self.num_classes,
                "conv_layers": [dict(zip(V1_CONV_FIELDS, l)) for l in self.conv_layers],
                "fc_layers": [l._asdict() for l in self.fc_layers],
            }
        return {
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "conv_layers": [l._asdict() for l in self.conv_layers],
            "fc_layers": [l._asdict() for l in self.fc_layers],
            "skips": [list(s) for s in self.skips],
            "global_pool": self.global_pool,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Descriptor":
        """Reads version 2 and version 1 (older releases') JSON."""
        if isinstance(data, Mapping) and data.get("version") == 1 and data.get("space") == cls.SPACE:
            payload = {k: v for k, v in data.items() if k not in ("space", "version")}
            return cls._from_payload(payload, version=1)
        return super().from_dict(data)  # type: ignore[return-value]

    @classmethod
    def _from_payload(cls, payload: Mapping[str, Any], version: int = 2) -> "Descriptor":
        conv = require(payload, "conv_layers")
        fc = require(payload, "fc_layers")
        for field, value in (("conv_layers", conv), ("fc_layers", fc)):
            if not isinstance(value, list):
                raise InvalidSpecError(f"{field}: expected a list, got {value!r:.80}")
        fields = {"input_shape", "num_classes", "conv_layers", "fc_layers"}
        if version == 2:
            fields |= {"skips", "global_pool"}
        unknown = set(payload) - fields
        if unknown:
            raise InvalidSpecError(f"descriptor: unknown fields {sorted(unknown)} in version "
                                   f"{version} JSON (fields: {sorted(fields)})")
        skips, global_pool = [], False
        if version == 2:
            skips = require(payload, "skips")
            if not isinstance(skips, list):
                raise InvalidSpecError(f"skips: expected a list of [start, end], got {skips!r:.80}")
            global_pool = require(payload, "global_pool")
            if not isinstance(global_pool, bool):
                raise InvalidSpecError(f"global_pool: expected true or false, got {global_pool!r:.40}")
        names = CONV_FIELDS if version == 2 else V1_CONV_FIELDS
        return cls(require(payload, "input_shape"), require(payload, "num_classes"),
                   tuple(_conv_from_json(i, l, names) for i, l in enumerate(conv)),
                   tuple(_fc_from_json(i, l) for i, l in enumerate(fc)),
                   tuple(skips), global_pool)


SPEC_TYPES.add(Descriptor.SPACE, Descriptor)


def _as_conv(i: int, layer: Any) -> ConvLayer:
    if not isinstance(layer, ConvLayer):
        if not isinstance(layer, (tuple, list)) or not 1 <= len(layer) <= len(CONV_FIELDS):
            raise InvalidSpecError(
                f"conv_layers[{i}]: expected a ConvLayer or a tuple {CONV_FIELDS}, got {layer!r}")
        layer = ConvLayer(*layer)
    for field, value in zip(CONV_FIELDS, layer):
        check_int(f"conv_layers[{i}].{field}", value, 1)
    return ConvLayer(*(int(v) for v in layer))


def _as_skip(i: int, skip: Any) -> Skip:
    if not isinstance(skip, (tuple, list)) or len(skip) != 2:
        raise InvalidSpecError(f"skips[{i}]: expected [start, end] (conv layer indices), got {skip!r:.80}")
    return Skip(check_int(f"skips[{i}].start", skip[0], 0), check_int(f"skips[{i}].end", skip[1], 0))


def _as_fc(i: int, layer: Any) -> FcLayer:
    if isinstance(layer, (int, np.integer)) and not isinstance(layer, bool):
        layer = FcLayer(int(layer))
    if not isinstance(layer, FcLayer):
        if not isinstance(layer, (tuple, list)) or len(layer) != 1:
            raise InvalidSpecError(f"fc_layers[{i}]: expected an FcLayer or (n_hidden,), got {layer!r}")
        layer = FcLayer(*layer)
    return FcLayer(check_int(f"fc_layers[{i}].n_hidden", layer.n_hidden, 1))


def _conv_from_json(i: int, data: Any, names: Sequence[str] = CONV_FIELDS) -> ConvLayer:
    if not isinstance(data, Mapping) or set(data) != set(names):
        raise InvalidSpecError(
            f"conv_layers[{i}]: expected an object with fields {list(names)}, got {data!r:.120}")
    return _as_conv(i, tuple(data[f] for f in names))


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
        max_stride: largest conv ``stride`` (paper: 1, no strided convs).
        max_skip_span: longest skip connection, in conv layers (paper: 0, none).
        global_pool: global average pooling before the fc layers instead of ``Flatten``.

    The paper's space (the defaults) has the paper's categorical view and sampling; a
    stride or skip decision is added per conv slot only when ``max_stride`` or
    ``max_skip_span`` allows one.

    Example:
        >>> space = DescriptorSpace((28, 28, 1), 10, max_conv_layers=4)
        >>> spec = space.sample(np.random.default_rng(0))
        >>> space.validate(spec)
        >>> space.from_decisions(space.to_decisions(spec)) == spec
        True
        >>> residual = DescriptorSpace((32, 32, 3), 10, max_conv_layers=6, max_stride=2,
        ...                            max_skip_span=2, global_pool=True)
        >>> spec = residual.sample(np.random.default_rng(1))
        >>> residual.from_decisions(residual.to_decisions(spec)) == spec
        True
    """

    name = "descriptor"

    def __init__(self, input_shape: Sequence[int], num_classes: int, *,
                 min_conv_layers: int = 1, max_conv_layers: int = 26,
                 min_filters: int = 1, max_filters: int = 128, max_kernel: int = 3,
                 max_pool: int = 2, max_subsample: int = 2,
                 min_fc_layers: int = 0, max_fc_layers: int = 2,
                 min_hidden: int = 1, max_hidden: int = 2048,
                 max_stride: int = 1, max_skip_span: int = 0, global_pool: bool = False):
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
        self.max_stride = check_int("max_stride", max_stride, 1)
        self.max_skip_span = check_int("max_skip_span", max_skip_span, 0)
        if not isinstance(global_pool, (bool, np.bool_)):
            raise InvalidSpecError(f"global_pool: expected True or False, got {global_pool!r:.40}")
        self.global_pool = bool(global_pool)
        # (low, high) of each conv field, in CONV_FIELDS order.
        self._conv_bounds = ((self.min_filters, self.max_filters), (1, self.max_kernel),
                             (1, self.max_kernel), (1, self.max_pool), (1, self.max_pool),
                             (1, self.max_subsample), (1, self.max_subsample),
                             (1, self.max_stride))
        # The conv fields the search varies: stride only when it may exceed 1.
        self._fields = CONV_FIELDS if self.max_stride > 1 else V1_CONV_FIELDS

    @property
    def residual(self) -> bool:
        """Whether this space goes beyond the paper's (strides, skips or a global pool)."""
        return self.max_stride > 1 or self.max_skip_span > 0 or self.global_pool

    @classmethod
    def for_budget(cls, constraints: Any, input_shape: Sequence[int], num_classes: int,
                   **options: Any) -> "DescriptorSpace":
        """A residual descriptor space whose bounds fit ``constraints`` (see
        :func:`keras_cnas.costs.sizing.descriptor_space_for_budget`, which this calls)."""
        return SIZERS.get(cls.name)(constraints, input_shape, num_classes, **options)

    def get_config(self) -> dict[str, Any]:
        config = {
            "input_shape": list(self.input_shape), "num_classes": self.num_classes,
            "min_conv_layers": self.min_conv_layers, "max_conv_layers": self.max_conv_layers,
            "min_filters": self.min_filters, "max_filters": self.max_filters,
            "max_kernel": self.max_kernel, "max_pool": self.max_pool,
            "max_subsample": self.max_subsample, "min_fc_layers": self.min_fc_layers,
            "max_fc_layers": self.max_fc_layers, "min_hidden": self.min_hidden,
            "max_hidden": self.max_hidden,
        }
        # Only when set: an older search's configuration still compares equal on resume.
        if self.max_stride != 1:
            config["max_stride"] = self.max_stride
        if self.max_skip_span:
            config["max_skip_span"] = self.max_skip_span
        if self.global_pool:
            config["global_pool"] = True
        return config

    # --- sampling ---------------------------------------------------------------------

    def sample(self, rng: np.random.Generator) -> Descriptor:
        """The paper's chained sampling: layer counts first, then each layer's parameters.

        Every parameter is uniform over its range; a pool size is uniform over the sizes
        that keep the map at least 1 wide, so every sample is valid (no rejection loop).
        In a residual space each layer's stride comes next, then, layer by layer, whether a
        skip ends there and how far back it starts, uniform over "none" and the spans that
        fit (the shapes allow a shortcut and it starts after the previous skip).
        """
        n_conv_choices = self.max_conv_layers - self.min_conv_layers + 1
        n_fc_choices = self.max_fc_layers - self.min_fc_layers + 1
        head = rng.random(2).tolist()
        n_conv = self.min_conv_layers + int(head[0] * n_conv_choices)
        n_fc = self.min_fc_layers + int(head[1] * n_fc_choices)
        u = rng.random(n_conv * 7 + n_fc).tolist()
        extra = rng.random(2 * n_conv).tolist() if self.residual else None
        h, w = self.input_shape[0], self.input_shape[1]
        f_lo, f_span = self.min_filters, self.max_filters - self.min_filters + 1
        k, s = self.max_kernel, self.max_subsample
        conv = []
        for i in range(0, n_conv * 7, 7):
            stride = 1
            if extra is not None:
                stride = 1 + int(extra[i // 7] * self.max_stride)
                h, w = -(-h // stride), -(-w // stride)
            px = 1 + int(u[i + 3] * min(self.max_pool, w))
            py = 1 + int(u[i + 4] * min(self.max_pool, h))
            sx = 1 + int(u[i + 5] * s)
            sy = 1 + int(u[i + 6] * s)
            if px != 1 or py != 1 or sx != 1 or sy != 1:
                h = (h - py) // sy + 1
                w = (w - px) // sx + 1
            conv.append(ConvLayer(f_lo + int(u[i] * f_span), 1 + int(u[i + 1] * k),
                                  1 + int(u[i + 2] * k), px, py, sx, sy, stride))
        h_lo, h_span = self.min_hidden, self.max_hidden - self.min_hidden + 1
        fc = tuple(FcLayer(h_lo + int(x * h_span)) for x in u[n_conv * 7:])
        conv_t = tuple(conv)
        skips: tuple[Skip, ...] = ()
        if self.max_skip_span and extra is not None:
            plain = Descriptor._trusted(self.input_shape, self.num_classes, conv_t, fc)
            chosen: list[Skip] = []
            for end in range(n_conv):
                options = [None] + self._skips_ending_at(plain, end, chosen[-1].end if chosen else -1)
                pick = options[int(extra[n_conv + end] * len(options))]
                if pick is not None:
                    chosen.append(pick)
            skips = tuple(chosen)
        return Descriptor._trusted(self.input_shape, self.num_classes, conv_t, fc, skips,
                                   self.global_pool)

    def _skips_ending_at(self, spec: Descriptor, end: int, previous_end: int) -> list[Skip]:
        """The skips of at most ``max_skip_span`` layers ending at conv layer ``end`` that
        start after ``previous_end`` and whose shapes allow a shortcut."""
        out = []
        for span in range(1, self.max_skip_span + 1):
            skip = Skip(end - span + 1, end)
            if skip.start <= previous_end:
                break
            try:
                spec.shortcut(skip)
            except InvalidSpecError:
                continue
            out.append(skip)
        return out

    def sample_layer(self, section: str, rng: np.random.Generator) -> ConvLayer | FcLayer:
        """One random layer of ``section`` ("conv" or "fc"), pools unconstrained."""
        if section == "fc":
            return FcLayer(int(rng.integers(self.min_hidden, self.max_hidden + 1)))
        if section == "conv":
            return ConvLayer(*(int(rng.integers(lo, hi + 1))
                               for lo, hi in self._conv_bounds[:len(self._fields)]))
        raise ValueError(f"section: expected 'conv' or 'fc', got {section!r}")

    # --- validation -------------------------------------------------------------------

    def validate(self, spec: Spec) -> None:
        if not isinstance(spec, Descriptor):
            raise InvalidSpecError(f"spec: expected a Descriptor, got {type(spec).__name__}")
        if tuple(spec.input_shape) != self.input_shape or spec.num_classes != self.num_classes:
            raise InvalidSpecError(
                f"spec: input_shape {spec.input_shape} / num_classes {spec.num_classes} differ "
                f"from the space's {self.input_shape} / {self.num_classes}")
        if spec.global_pool != self.global_pool:
            raise InvalidSpecError(
                f"global_pool: the spec has {spec.global_pool}, the space {self.global_pool}; "
                "make the space with global_pool={spec.global_pool}")
        check_int("len(conv_layers)", len(spec.conv_layers), self.min_conv_layers, self.max_conv_layers)
        check_int("len(fc_layers)", len(spec.fc_layers), self.min_fc_layers, self.max_fc_layers)
        # Hot path (thousands of specs a second): one unrolled test per layer, details
        # only when it fails.
        f_lo, f_hi = self._conv_bounds[0]
        k, p, s, st_hi = self.max_kernel, self.max_pool, self.max_subsample, self.max_stride
        h, w = self.input_shape[0], self.input_shape[1]
        for i, (n, fx, fy, px, py, sx, sy, st) in enumerate(spec.conv_layers):
            if not (f_lo <= n <= f_hi and 1 <= fx <= k and 1 <= fy <= k and 1 <= px <= p
                    and 1 <= py <= p and 1 <= sx <= s and 1 <= sy <= s and 1 <= st <= st_hi):
                self._raise_out_of_bounds(i, spec.conv_layers[i])
            if st != 1:
                h, w = -(-h // st), -(-w // st)
            if px != 1 or py != 1 or sx != 1 or sy != 1:
                h, w = (h - py) // sy + 1, (w - px) // sx + 1
                if h < 1 or w < 1:
                    spec.spatial_sizes()  # raises with the full explanation
        for i, skip in enumerate(spec.skips):
            if skip.span > self.max_skip_span:
                raise InvalidSpecError(
                    f"skips[{i}]: spans {skip.span} conv layers, more than the space's "
                    f"max_skip_span={self.max_skip_span}")
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
        coords = [Coordinate("conv", i, f) for i in range(len(spec.conv_layers)) for f in self._fields]
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
        one or the result is not a valid network (a skip whose shapes no longer fit
        included).
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
        when the section is full or the result is invalid. A skip around the copied layer
        (not ending at it) grows by the copy.
        """
        layers = list(spec.conv_layers if section == "conv" else spec.fc_layers)
        limit = self.max_conv_layers if section == "conv" else self.max_fc_layers
        if len(layers) >= limit:
            return None
        skips = list(spec.skips)
        if index is None:
            layers.append(self.sample_layer(section, rng))
        else:
            layers.insert(index + 1, layers[index])
            if section == "conv":
                skips = [Skip(s.start + (s.start > index), s.end + (s.end > index)) for s in skips]
                if any(s.span > self.max_skip_span for s in skips):
                    return None
        try:
            return spec.with_layers(**{f"{section}_layers": layers}, skips=skips)
        except InvalidSpecError:
            return None

    def remove_layer(self, spec: Descriptor, section: str, index: int) -> Descriptor | None:
        """``spec`` without layer ``index`` of ``section``; None if that breaks a bound.
        A skip of that one layer goes with it; a longer one around it shrinks."""
        layers = list(spec.conv_layers if section == "conv" else spec.fc_layers)
        limit = self.min_conv_layers if section == "conv" else self.min_fc_layers
        if len(layers) <= limit:
            return None
        del layers[index]
        skips = list(spec.skips)
        if section == "conv":
            skips = [Skip(s.start - (s.start > index), s.end - (s.end >= index))
                     for s in skips if not s.start == s.end == index]
        try:
            return spec.with_layers(**{f"{section}_layers": layers}, skips=skips)
        except InvalidSpecError:
            return None

    def skip_candidates(self, spec: Descriptor) -> list[Skip]:
        """Every skip that :meth:`add_skip` could add to ``spec`` (it overlaps none of
        its skips, fits ``max_skip_span`` and the shapes allow a shortcut)."""
        taken = {i for s in spec.skips for i in range(s.start, s.end + 1)}
        out = []
        for end in range(len(spec.conv_layers)):
            for skip in self._skips_ending_at(spec, end, -1):
                if not taken.intersection(range(skip.start, skip.end + 1)):
                    out.append(skip)
        return out

    def add_skip(self, spec: Descriptor, skip: Skip) -> Descriptor | None:
        """``spec`` with ``skip`` added; None when it overlaps another, is too long or
        the shapes allow no shortcut."""
        if skip in spec.skips or not 1 <= skip.span <= self.max_skip_span:
            return None
        try:
            return spec.with_layers(skips=sorted([*spec.skips, skip]))
        except InvalidSpecError:
            return None

    def remove_skip(self, spec: Descriptor, skip: Skip) -> Descriptor | None:
        """``spec`` without ``skip``; None when it has no such skip."""
        if skip not in spec.skips:
            return None
        return spec.with_layers(skips=[s for s in spec.skips if s != skip])

    def mutations(self, spec: Spec, rng: np.random.Generator) -> list[Mutation]:
        """Algorithm II's moves: scale every coordinate by 1.5 and 0.66; add a copy of a
        randomly chosen layer and remove a randomly chosen layer, in each section; in a
        space with skips, add a randomly chosen possible skip and remove a random one."""
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
        if self.max_skip_span:
            candidates = self.skip_candidates(spec)
            if candidates:
                skip = candidates[int(rng.integers(len(candidates)))]
                new = self.add_skip(spec, skip)
                if new is not None:
                    out.append(Mutation("add_skip", f"skip {skip.start}-{skip.end}", new))
            if spec.skips:
                skip = spec.skips[int(rng.integers(len(spec.skips)))]
                new = self.remove_skip(spec, skip)
                if new is not None:
                    out.append(Mutation("remove_skip", f"skip {skip.start}-{skip.end}", new))
        return out

    # --- categorical view ---------------------------------------------------------------

    def _slot_sizes(self) -> list[int]:
        """Decision sizes of one conv slot: its fields, then the span of a skip ending there."""
        sizes = [hi - lo + 1 for lo, hi in self._conv_bounds[:len(self._fields)]]
        return sizes + [self.max_skip_span + 1] if self.max_skip_span else sizes

    def decision_sizes(self) -> list[int]:
        return ([self.max_conv_layers - self.min_conv_layers + 1] + self._slot_sizes() * self.max_conv_layers
                + [self.max_fc_layers - self.min_fc_layers + 1]
                + [self.max_hidden - self.min_hidden + 1] * self.max_fc_layers)

    def ordered_decisions(self) -> list[bool]:
        """Every decision is a count or a size (layers, filters, kernel, pool, stride,
        hidden units, skip span, 0 = none): all ordered."""
        return [True] * len(self.decision_sizes())

    def to_decisions(self, spec: Spec) -> list[int]:
        self.validate(spec)
        assert isinstance(spec, Descriptor)
        fields, slot = len(self._fields), len(self._slot_sizes())
        spans = {s.end: s.span for s in spec.skips}
        out = [len(spec.conv_layers) - self.min_conv_layers]
        for i in range(self.max_conv_layers):
            if i < len(spec.conv_layers):
                out += [v - lo for v, (lo, _) in zip(spec.conv_layers[i][:fields], self._conv_bounds)]
                if self.max_skip_span:
                    out.append(spans.get(i, 0))
            else:
                out += [0] * slot
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
        fields, slot = len(self._fields), len(self._slot_sizes())
        n_conv = self.min_conv_layers + d[0]
        conv = []
        for i in range(n_conv):
            raw = d[1 + slot * i: 1 + slot * i + fields]
            conv.append(ConvLayer(*(v + lo for v, (lo, _) in zip(raw, self._conv_bounds))))
        base = 1 + slot * self.max_conv_layers
        n_fc = self.min_fc_layers + d[base]
        fc = tuple(FcLayer(self.min_hidden + d[base + 1 + i]) for i in range(n_fc))
        skips: list[Skip] = []
        if self.max_skip_span:
            # A span that does not fit (it would overlap the previous skip, or no shortcut
            # gives its shapes) becomes the longest shorter one that does, else none: every
            # decision vector is a network (strategies sample them freely).
            plain = Descriptor(self.input_shape, self.num_classes, tuple(conv), fc)
            for i in range(n_conv):
                span = d[slot * (i + 1)]
                if span:
                    fits = self._skips_ending_at(plain, i, skips[-1].end if skips else -1)
                    fits = [s for s in fits if s.span <= span]
                    if fits:
                        skips.append(fits[-1])
        return Descriptor(self.input_shape, self.num_classes, tuple(conv), fc, tuple(skips),
                          self.global_pool)
