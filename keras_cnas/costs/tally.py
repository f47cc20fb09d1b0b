"""The cost model as small pure functions over a running tally of ops.

Each method adds one op of a network walked in execution order and returns its output
shape. Conventions ("same" padding, so an output side is ``ceil(side / stride)``):

* params counts what ``tf_keras`` stores: conv kernels (``k_h*k_w*c_in/groups*c_out``),
  biases where used, BatchNorm's gamma, beta, moving mean and variance (4 per channel;
  trainable: 2);
* madds: conv ``h_out*w_out*c_out*k_h*k_w*c_in/groups``, depthwise
  ``h_out*w_out*c*k_h*k_w``, dense ``n_in*n_out``; nothing else;
* flops, the MIT-LL eq. 7 read for any conv: ``(x_w/s)*(x_h/s)*(x_d/g*f_w*f_h + 1)*k``
  with ``g`` the groups (a depthwise conv has ``g = k = x_d``), and eq. 8 for dense:
  ``h*(x + 1)``; pooling, BatchNorm, activations and adds count 0 as in eq. 9;
* memory: the largest single tensor any op reads or writes (eq. 6's buffer term);
* peak activation: the largest sum of an op's inputs, its output and the tensors held
  alive across it (a residual block's input, until its ``Add``).

Pure Python.
"""

from __future__ import annotations

from keras_cnas.costs.report import CostReport

Shape = tuple[int, int, int]


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class CostTally:
    """Accumulates params, MAdds, FLOPs and activation sizes op by op."""

    def __init__(self, input_shape: Shape):
        self.params = 0
        self.trainable_params = 0
        self.madds = 0
        self.flops = 0.0
        self.max_tensor = size(input_shape)
        self.peak = 0
        self.held = 0  # elements kept alive for a later op (residual inputs)

    def _activations(self, inputs: int, output: int) -> None:
        self.max_tensor = max(self.max_tensor, inputs, output)
        self.peak = max(self.peak, inputs + output + self.held)

    def conv(self, shape: Shape, filters: int, kernel: tuple[int, int], stride: int = 1,
             groups: int = 1, bias: bool = False) -> Shape:
        h, w, c = shape
        kh, kw = kernel
        out = (ceil_div(h, stride), ceil_div(w, stride), filters)
        weights = kh * kw * (c // groups) * filters + (filters if bias else 0)
        self.params += weights
        self.trainable_params += weights
        self.madds += out[0] * out[1] * filters * kh * kw * (c // groups)
        self.flops += (w / stride) * (h / stride) * ((c / groups) * kw * kh + 1) * filters
        self._activations(size(shape), size(out))
        return out

    def depthwise(self, shape: Shape, kernel: tuple[int, int], stride: int = 1,
                  bias: bool = False) -> Shape:
        h, w, c = shape
        kh, kw = kernel
        out = (ceil_div(h, stride), ceil_div(w, stride), c)
        weights = kh * kw * c + (c if bias else 0)
        self.params += weights
        self.trainable_params += weights
        self.madds += out[0] * out[1] * c * kh * kw
        self.flops += (w / stride) * (h / stride) * (kw * kh + 1) * c
        self._activations(size(shape), size(out))
        return out

    def batch_norm(self, shape: Shape) -> Shape:
        """In place at inference (folded into the conv before it): no activations."""
        self.params += 4 * shape[-1]
        self.trainable_params += 2 * shape[-1]
        return shape

    def add(self, shape: Shape) -> Shape:
        """A residual add: both inputs and the output are alive."""
        self._activations(2 * size(shape), size(shape))
        return shape

    def global_pool(self, shape: Shape) -> int:
        self._activations(size(shape), shape[-1])
        return shape[-1]

    def report(self, bytes_per_element: int) -> CostReport:
        """The tally as a report: memory is eq. 6, ``B_pe * (params + largest tensor)``."""
        return CostReport(params=self.params, trainable_params=self.trainable_params,
                          madds=self.madds, flops=self.flops,
                          memory_bytes=bytes_per_element * (self.params + self.max_tensor),
                          peak_activation_bytes=bytes_per_element * self.peak)

    def dense(self, n_in: int, n_out: int, bias: bool = True) -> int:
        self.params += n_in * n_out + (n_out if bias else 0)
        self.trainable_params += n_in * n_out + (n_out if bias else 0)
        self.madds += n_in * n_out
        self.flops += n_out * (n_in + 1)
        self._activations(n_in, n_out)
        return n_out


def size(shape: Shape) -> int:
    """Elements of an (h, w, c) tensor."""
    h, w, c = shape
    return h * w * c
