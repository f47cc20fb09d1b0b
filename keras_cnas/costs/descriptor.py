"""Costs of an MIT-LL descriptor, inlined for speed (the search samples thousands a second).

The MIT-LL paper's definitions, as implemented here:

* eq. 7, conv layer ``l``: ``(x_w/s)*(x_h/s)*(x_d*f_w*f_h + 1)*k`` where ``x`` is the
  layer's input (width, height, depth), ``f`` its filter, ``k`` its filters and ``s`` its
  subsampling ``(sub_x, sub_y)`` times its conv stride. The paper's text scales by ``1/s``
  "in both directions" though its printed formula shows one ``1/s``; we follow the text.
  The division is exact (a float), as printed. A projection shortcut is a conv with its
  own strides.
* eq. 8, fc layer (the classifier included): ``h*(x + 1)`` for ``x`` inputs, ``h`` outputs.
* eq. 9: FLOPs = the sum over conv and fc layers.
* eq. 6, memory: ``B_pe * (sum of weights + max_l max(|x_l|, |y_l|))`` with the sum of
  weights = ``params`` (BatchNorm statistics included) and ``l`` ranging over every conv,
  pool, add, global pool and dense op.

``madds`` is the exact multiply-accumulate count of the built network (a conv with
"same" padding computes at its stride's resolution; the pool after it subsamples), which
eq. 7 approximates. The peak activation counts a skip's input as held from the conv after
its start until the ``Add``, and the main path's output as held across the projection
(the order Keras runs them in, as for the ResNets).
"""

from __future__ import annotations

from keras_cnas.costs.report import CostReport
from keras_cnas.spaces.descriptor import Descriptor


def estimate_descriptor(spec: Descriptor, bytes_per_element: int = 4) -> CostReport:
    h, w, c = spec.input_shape
    params = trainable = madds = 0
    flops = 0.0
    max_tensor = h * w * c
    peak = 0
    starts = {s.start: s for s in spec.skips}
    ends = {s.end: s for s in spec.skips}
    held = 0  # elements of a skip's input, alive until its Add
    skip_in = (h, w, c)
    for i, (k, fx, fy, px, py, sx, sy, st) in enumerate(spec.conv_layers):
        if i in starts:
            skip_in = (h, w, c)
        weights = fx * fy * c * k
        params += weights + 4 * k
        trainable += weights + 2 * k
        x_size = h * w * c
        if st != 1:
            flops += (w / (sx * st)) * (h / (sy * st)) * (c * fx * fy + 1) * k
            h, w = -(-h // st), -(-w // st)
        else:
            flops += (w / sx) * (h / sy) * (c * fx * fy + 1) * k
        conv_out = h * w * k
        madds += conv_out * fx * fy * c
        if conv_out > max_tensor:
            max_tensor = conv_out
        if x_size + conv_out + held > peak:
            peak = x_size + conv_out + held
        if i in starts and i not in ends:
            held = skip_in[0] * skip_in[1] * skip_in[2]
        if i in ends:
            hi, wi, ci = skip_in
            strides = spec.shortcut(ends[i])
            if strides is not None:  # 1x1 projection + BN, run after the main path
                params += ci * k + 4 * k
                trainable += ci * k + 2 * k
                madds += conv_out * ci
                flops += (wi / strides[1]) * (hi / strides[0]) * (ci + 1) * k
                peak = max(peak, hi * wi * ci + 2 * conv_out)
            peak = max(peak, 3 * conv_out)  # the Add: both inputs and its output
            held = 0
        if px != 1 or py != 1 or sx != 1 or sy != 1:  # a max-pool follows
            h = (h - py) // sy + 1
            w = (w - px) // sx + 1
            pooled = h * w * k
            if conv_out + pooled + held > peak:
                peak = conv_out + pooled + held
        c = k
    x = h * w * c
    if spec.global_pool:
        peak = max(peak, x + c)
        x = c
    for n in [l.n_hidden for l in spec.fc_layers] + [spec.num_classes]:
        params += x * n + n
        trainable += x * n + n
        madds += x * n
        flops += n * (x + 1)
        if n > max_tensor:
            max_tensor = n
        if x + n > peak:
            peak = x + n
        x = n
    return CostReport(params=params, trainable_params=trainable, madds=madds, flops=flops,
                      memory_bytes=bytes_per_element * (params + max_tensor),
                      peak_activation_bytes=bytes_per_element * peak)
