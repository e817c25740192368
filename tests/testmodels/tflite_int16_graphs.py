"""Small mixed int8 / int16x8 .tflite graphs built with the TFLite flatbuffer schema, for the Cortex-M
C library's int16 kernels (lowering_int16, kernels/ep_int16.c) against LiteRT's reference kernels.

The layers are written as LiteRT writes int16x8 layers: int16 activations with zero point 0, int8
weights (per channel for convolutions), int64 biases, QUANTIZE ops from int8 to int16 and back at
the edges (the graphs' inputs and outputs are int8). `Int16Builder` extends `GraphBuilder` with
the int16 / int64 tensor types; `chain_graph` (the residual block), `variants_graph` (batches,
dilations, depth multiplier, pooling, broadcast ADD, MEAN, per-tensor FULLY_CONNECTED with a filter
zero point), `edge_graph` (saturating conversions, int64 biases beyond int32, a FULLY_CONNECTED
rescaled in double precision) and `pot_add_graph` (LiteRT's power-of-two int16 ADD).
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from testmodels.tflite_graphs import _ACT, GraphBuilder, _out_size, _uniform_weights, schema

WIDE = {"int16": "INT16", "int64": "INT64"}  # names in schema.TensorType GraphBuilder lacks
SPREAD16 = 8000  # int16 activations: about this many steps per standard deviation (+-4 std in range)


class Int16Builder(GraphBuilder):
    """GraphBuilder with int16 activations and int64 biases. Inside `wide()`, the ops GraphBuilder
    writes (pool, mean, reshape) get int16 outputs of their input's scale, zero point 0."""

    def __init__(self, seed: int = 0):
        super().__init__(seed)
        self._wide = False

    def _add(self, name, shape, dtype, scale=None, zero_point=None, axis=0, data=None) -> int:
        index = super()._add(name, shape, "int32" if dtype in WIDE else dtype, scale, zero_point, axis, data)
        if dtype in WIDE:
            self.tensors[index].type = getattr(schema.TensorType, WIDE[dtype])
            self.meta[index]["dtype"] = dtype
        return index

    def const(self, name: str, data: np.ndarray, scale=None, zero_point=None, axis: int = 0) -> int:
        if data.dtype.name in WIDE:
            return self._add(name, data.shape, data.dtype.name, scale, zero_point, axis, data)
        return super().const(name, data, scale, zero_point, axis)

    def activation(self, name: str, shape, scale: float, zero_point: int) -> int:
        return self.activation16(name, shape, scale) if self._wide else super().activation(name, shape, scale,
                                                                                             zero_point)

    def activation16(self, name: str, shape, scale: float, zero_point: int = 0) -> int:
        index = self._add(name, shape, "int16", float(np.float32(scale)), zero_point)
        self.meta[index]["spread"] = SPREAD16
        return index

    @contextmanager
    def wide(self):
        self._wide = True
        try:
            yield
        finally:
            self._wide = False

    # ---- conversions

    def to16(self, x: int, ratio: float = 197.0, zero_point: int = 0) -> int:
        """QUANTIZE int8 -> int16 onto a scale `ratio` times finer (197: int8 values to +-25000)."""
        y = self.activation16(f"q16_{len(self.tensors)}", self.shape(x), self.scale(x) / ratio, zero_point)
        self.op("QUANTIZE", [x], [y], schema.QuantizeOptionsT())
        return y

    def to8(self, x: int) -> int:
        """QUANTIZE int16 -> int8 keeping about 2.5 standard deviations in range."""
        y = self.activation(f"q8_{len(self.tensors)}", self.shape(x), self.scale(x) * SPREAD16 / 50,
                            int(self.rng.integers(-20, 21)))
        self.op("QUANTIZE", [x], [y], schema.QuantizeOptionsT())
        return y

    # ---- int16x8 layers

    def _bias64(self, name: str, values: np.ndarray, scales: np.ndarray) -> int:
        return self.const(name, values.astype(np.int64), scales.astype(np.float32), np.zeros(len(values), np.int64))

    def conv16(self, x: int, out_c: int, k=(3, 3), stride=(1, 1), dilation=(1, 1), padding="SAME", act="NONE",
               depthwise=False, per_channel=True, target_std: float = 2.0, w_scales=None, bias=None,
               out_scale: float | None = None, bias_dtype=np.int64) -> int:
        """CONV_2D / DEPTHWISE_CONV_2D int16x8 (random int8 weights; `bias`: int64 values)."""
        n, h, w, c = self.shape(x)
        weights = _uniform_weights(self.rng, (1, *k, out_c) if depthwise else (out_c, *k, c))
        taps = k[0] * k[1] * (1 if depthwise else c)
        if w_scales is None:
            w_scales = self._weight_scales(x, taps, out_c if per_channel else 1, target_std)
        w_scales = np.asarray(w_scales, np.float32)
        wt = self.const(f"w{len(self.tensors)}", weights, w_scales, np.zeros(w_scales.size, np.int64),
                        3 if depthwise else 0)
        b_scales = np.broadcast_to(np.float32(self.scale(x)) * w_scales, (out_c,)).copy()
        if bias is None:
            bias = np.round(self.rng.normal(0, 0.5, out_c) / b_scales)
        bt = self.const(f"b{len(self.tensors)}", np.asarray(bias).astype(bias_dtype), b_scales,
                        np.zeros(out_c, np.int64))
        shape = (n, _out_size(padding, h, k[0], stride[0], dilation[0]),
                 _out_size(padding, w, k[1], stride[1], dilation[1]), out_c)
        y = self.activation16(f"conv16_{len(self.tensors)}", shape, out_scale or target_std / SPREAD16)
        opts = schema.DepthwiseConv2DOptionsT() if depthwise else schema.Conv2DOptionsT()
        if depthwise:
            opts.depthMultiplier = out_c // c
        opts.padding = 0 if padding == "SAME" else 1
        opts.strideH, opts.strideW = stride
        opts.dilationHFactor, opts.dilationWFactor = dilation
        opts.fusedActivationFunction = _ACT[act]
        self.op("DEPTHWISE_CONV_2D" if depthwise else "CONV_2D", [x, wt, bt], [y], opts)
        return y

    def fc16(self, x: int, units: int, act="NONE", per_channel=True, filter_zero_point: int = 0, bias=True,
             target_std: float = 2.0, weights=None, weights_dtype=np.int8) -> int:
        """FULLY_CONNECTED int16x8 over the last dimension."""
        depth = self.shape(x)[-1]
        values = _uniform_weights(self.rng, (units, depth)) if weights is None else weights
        w_scales = self._weight_scales(x, depth, units if per_channel else 1, target_std)
        wt = self.const(f"w{len(self.tensors)}", values.astype(weights_dtype), w_scales,
                        np.full(w_scales.size, filter_zero_point, np.int64))
        inputs = [x, wt]
        if bias:
            b_scales = np.broadcast_to(np.float32(self.scale(x)) * w_scales, (units,)).copy()
            inputs.append(self._bias64(f"b{len(self.tensors)}", np.round(self.rng.normal(0, 0.5, units) / b_scales),
                                       b_scales))
        y = self.activation16(f"fc16_{len(self.tensors)}", (*self.shape(x)[:-1], units), target_std / SPREAD16)
        opts = schema.FullyConnectedOptionsT()
        opts.fusedActivationFunction = _ACT[act]
        opts.keepNumDims = True
        self.op("FULLY_CONNECTED", inputs, [y], opts)
        return y

    def add16(self, a: int, b: int, act="NONE", pot: bool = False, out_scale: float | None = None) -> int:
        """ADD int16 (`pot`: the pot_scale_int16 option, LiteRT's power-of-two path if the scales are)."""
        shape = tuple(np.broadcast_shapes(self.shape(a), self.shape(b)))
        y = self.activation16(f"add16_{len(self.tensors)}", shape, out_scale or 1.4 * max(self.scale(a), self.scale(b)))
        opts = schema.AddOptionsT()
        opts.fusedActivationFunction = _ACT[act]
        opts.potScaleInt16 = pot
        self.op("ADD", [a, b], [y], opts)
        return y


def chain_graph(seed: int = 51) -> bytes:
    """int8 [1, 10, 9, 4] -> QUANTIZE int16 -> CONV_2D 3x3 SAME stride 2 per channel RELU ->
    DEPTHWISE_CONV_2D 3x3 SAME -> ADD (residual) -> RESHAPE -> FULLY_CONNECTED per channel ->
    QUANTIZE int8 -> int8 [1, 10]."""
    g = Int16Builder(seed)
    x = g.activation("input", (1, 10, 9, 4), 0.05, -3)
    a = g.conv16(g.to16(x), 8, k=(3, 3), stride=(2, 2), act="RELU")  # [1, 5, 5, 8]
    b = g.conv16(a, 8, k=(3, 3), depthwise=True)
    r = g.add16(a, b)
    with g.wide():
        f = g.reshape(r, [1, 200])
    y = g.to8(g.fc16(f, 10, per_channel=True))
    return g.build([x], [y])


def variants_graph(seed: int = 52) -> bytes:
    """int8 [2, 9, 8, 6] (two batches) -> QUANTIZE int16 -> CONV_2D 2x3 dilation (2, 1) VALID per
    tensor RELU6 -> DEPTHWISE_CONV_2D 3x3 depth multiplier 2 dilated SAME stride (1, 2) ->
    AVERAGE_POOL_2D 3x3 SAME -> MAX_POOL_2D 2x2 RELU_N1_TO_1 -> ADD with its MEAN over H, W
    (broadcast) -> MEAN -> FULLY_CONNECTED per tensor, filter zero point -3 -> QUANTIZE int8."""
    g = Int16Builder(seed)
    x = g.activation("input", (2, 9, 8, 6), 0.04, 5)
    a = g.conv16(g.to16(x, ratio=150.0), 5, k=(2, 3), dilation=(2, 1), padding="VALID", per_channel=False,
                 act="RELU6")                                                          # [2, 7, 6, 5]
    b = g.conv16(a, 10, k=(3, 3), stride=(1, 2), dilation=(2, 2), depthwise=True)    # [2, 7, 3, 10]
    with g.wide():
        p = g.pool(b, "AVERAGE_POOL_2D", k=(3, 3), stride=(1, 1), padding="SAME")
        q = g.pool(p, "MAX_POOL_2D", k=(2, 2), stride=(2, 2), act="RELU_N1_TO_1")      # [2, 3, 1, 10]
        m = g.mean(q, [1, 2], keep_dims=True)
    s = g.add16(q, m, act="RELU")
    with g.wide():
        v = g.mean(s, [1, 2], keep_dims=False)                                          # [2, 10]
    y = g.to8(g.fc16(v, 7, per_channel=False, filter_zero_point=-3))
    return g.build([x], [y])


def edge_graph(seed: int = 53) -> bytes:
    """int8 [1, 6, 6, 3] -> QUANTIZE int16 onto a scale 300 times finer (int8 values past +-109
    saturate) -> CONV_2D 3x3 whose odd channels have int64 biases of 2^33..2^40 (and tiny weight
    scales keeping their outputs in range) -> FULLY_CONNECTED 576 -> 12 with full-scale weights
    (accumulators beyond int32: rescaled in double precision) -> QUANTIZE int8."""
    g = Int16Builder(seed)
    x = g.activation("input", (1, 6, 6, 3), 0.05, 0)
    q = g.to16(x, ratio=300.0)
    w_scales = np.where(np.arange(16) % 2, 1e-9, 2e-3).astype(np.float32)
    big = g.rng.integers(1 << 33, 1 << 40, 16) * g.rng.choice([-1, 1], 16)
    out_scale = 2.0 / SPREAD16
    bias = np.where(np.arange(16) % 2, big, np.round(g.rng.normal(0, 0.5, 16) / (g.scale(q) * w_scales)))
    c = g.conv16(q, 16, k=(3, 3), w_scales=w_scales, bias=bias, out_scale=out_scale)
    with g.wide():
        f = g.reshape(c, [1, 576])
    h = g.fc16(f, 12, weights=g.rng.choice(np.array([-127, 127]), (12, 576)), target_std=40.0)
    return g.build([x], [g.to8(h)])


def pot_add_graph(seed: int = 54, broadcast: bool = False) -> bytes:
    """int8 [1, 6, 5, 4] -> QUANTIZE int16 (scale 2^-10) -> CONV_2D 1x1 (output scale 2^-12) ->
    ADD with pot_scale_int16 (the conv's output divided by 4, rounding, saturating add; with
    `broadcast`, the second input is the first row only) -> QUANTIZE int8."""
    g = Int16Builder(seed)
    x = g.activation("input", (1, 6, 5, 4), 0.05, 2)
    a = g.activation16("a", (1, 6, 5, 4), 2.0 ** -10)
    g.op("QUANTIZE", [x], [a], schema.QuantizeOptionsT())
    b = g.conv16(a, 4, k=(1, 1), out_scale=2.0 ** -12, target_std=6.0)
    if broadcast:
        b = g.conv16(a, 4, k=(6, 1), padding="VALID", out_scale=2.0 ** -12, target_std=6.0)  # [1, 1, 5, 4]
    y = g.to8(g.add16(a, b, pot=True, out_scale=2.0 ** -10))
    return g.build([x], [y])


def refused_graph(kind: str) -> bytes:
    """One int16x8 configuration the C library refuses (int8 in, int8 out)."""
    g = Int16Builder(55)
    x = g.activation("input", (1, 4, 4, 3), 0.05, 0)
    h = g.to16(x, zero_point=7 if kind == "zero point" else 0)
    if kind in ("int32 bias", "zero point"):
        h = g.conv16(h, 4, bias_dtype=np.int32 if kind == "int32 bias" else np.int64)
    elif kind == "huge bias":
        h = g.conv16(h, 4, bias=np.full(4, 1 << 50))
    elif kind == "int16 weights":
        with g.wide():
            h = g.reshape(h, [1, 48])
        h = g.fc16(h, 5, weights_dtype=np.int16)
    elif kind == "constant operand":
        h = g.add16(h, g.const("c", g.rng.integers(-100, 100, (1, 1, 1, 3)).astype(np.int16), g.scale(h), 0))
    elif kind == "logistic":
        y = g.activation16("logistic", g.shape(h), 1.0 / 32768)
        g.op("LOGISTIC", [h], [y])
        h = y
    return g.build([x], [g.to8(h)])


# kind -> one int16x8 layer (or two) between the QUANTIZE ops: (builder, int16 input) -> int16 output
LAYERS = {
    "conv": lambda g, h: g.conv16(h, 7, k=(3, 3)),
    "conv_strided_relu": lambda g, h: g.conv16(h, 6, k=(3, 2), stride=(2, 2), act="RELU", per_channel=False),
    "conv_dilated_valid": lambda g, h: g.conv16(h, 5, k=(2, 2), dilation=(2, 3), padding="VALID", act="RELU6"),
    "depthwise": lambda g, h: g.conv16(h, 4, k=(3, 3), depthwise=True),
    "depthwise_multiplier": lambda g, h: g.conv16(h, 8, k=(2, 3), stride=(2, 1), depthwise=True, act="RELU"),
    "fc": lambda g, h: g.fc16(h, 9),
    "fc_per_tensor": lambda g, h: g.fc16(h, 6, per_channel=False, filter_zero_point=4, bias=False),
    "add": lambda g, h: g.add16(h, g.conv16(h, 4, k=(1, 1), target_std=0.7)),
    "add_broadcast": lambda g, h: g.add16(g.conv16(h, 4, k=(7, 1), padding="VALID"), h, act="RELU_N1_TO_1"),
    "average_pool": lambda g, h: g.pool(h, "AVERAGE_POOL_2D", k=(3, 3), stride=(1, 1), padding="SAME"),
    "max_pool": lambda g, h: g.pool(h, "MAX_POOL_2D", k=(2, 2), stride=(2, 2), padding="SAME", act="RELU"),
    "mean": lambda g, h: g.mean(h, [1, 2], keep_dims=True),
}


def layer_graph(kind: str, seed: int = 56) -> bytes:
    """int8 [1, 7, 6, 4] -> QUANTIZE int16 -> LAYERS[kind] -> QUANTIZE int8 (an FC reads [7, 24]:
    a RESHAPE first; the pools and MEAN get int16 outputs of their input's scale)."""
    g = Int16Builder(seed)
    x = g.activation("input", (1, 7, 6, 4), 0.05, -4)
    h = g.to16(x)
    with g.wide():
        if kind.startswith("fc"):
            h = g.reshape(h, [7, 24])
        y = LAYERS[kind](g, h)
    return g.build([x], [g.to8(y)])


def float_conversion_graph(scale: float, size: int = 64) -> bytes:
    """float [size] -> QUANTIZE int16 (`scale`; LiteRT dequantizes int16 of zero point 0 only) ->
    DEQUANTIZE -> float [size]."""
    g = Int16Builder(57)
    x = g.float_tensor("input", (size,))
    q = g.activation16("q", (size,), scale)
    y = g.float_tensor("output", (size,))
    g.op("QUANTIZE", [x], [q], schema.QuantizeOptionsT())
    g.op("DEQUANTIZE", [q], [y], schema.DequantizeOptionsT())
    return g.build([x], [y])
