"""Small int8 .tflite graphs built directly with the TFLite flatbuffer schema (no converter).

Random weights and quantization parameters from a fixed seed, output scales chosen so int8
activations spread over their range instead of saturating. LiteRT runs them like any other
model, which makes them exact references for per-op tests of edgeport's C kernels:
`ops_graph()` (strided/dilated/SAME convolutions, depth multiplier, RELU6 and RELU_N1_TO_1,
max and average pooling, broadcast and residual ADD, MEAN, per-channel FULLY_CONNECTED,
SOFTMAX), `layout_graph()` (float input and output through QUANTIZE/DEQUANTIZE, TRANSPOSE,
PAD, PADV2, CONCATENATION, RESHAPE, FULLY_CONNECTED with keep_num_dims on 3-D input,
requantizing QUANTIZE), `conv_variants_graph()` (the corners of the DSP convolution paths),
`compressible_graph()` (weights pruned and palettized, for compressed weight storage), graphs with binary / ternary weights and sign activations (`lowbit_fc_graph`,
`lowbit_conv_graph`, `xnor_fc_graph`, `xnor_conv_graph`; `GraphBuilder.sign` writes the
GREATER_EQUAL + SELECT_V2 pattern of litert-torch), `comparison_graph` and one-op graphs
(`single_op_graph`).
"""

from __future__ import annotations

import numpy as np

try:  # the weight makers are plain NumPy; building a graph needs LiteRT's schema (tests: needs_litert)
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema
except ImportError:
    flatbuffers = schema = None

_TYPES = {"int8": "INT8", "int32": "INT32", "float32": "FLOAT32", "bool": "BOOL"}  # names in schema.TensorType
_ACT = {"NONE": 0, "RELU": 1, "RELU_N1_TO_1": 2, "RELU6": 3}


def _out_size(padding: str, size: int, k: int, stride: int, dilation: int = 1) -> int:
    effective = (k - 1) * dilation + 1
    return -(-size // stride) if padding == "SAME" else (size - effective) // stride + 1


class GraphBuilder:
    """Collects tensors, buffers and ops; `build()` returns the .tflite bytes."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.tensors: list = []
        self.meta: list[dict] = []
        self.buffers = [schema.BufferT()]
        self.ops: list = []
        self.codes: dict[int, int] = {}

    # ---- tensors

    def _add(self, name, shape, dtype, scale=None, zero_point=None, axis=0, data=None) -> int:
        t = schema.TensorT()
        t.name, t.shape, t.type = name, np.array(shape, dtype=np.int32), getattr(schema.TensorType, _TYPES[dtype])
        if scale is not None:
            q = schema.QuantizationParametersT()
            q.scale = np.atleast_1d(np.asarray(scale, dtype=np.float32))
            q.zeroPoint = np.atleast_1d(np.asarray(zero_point if zero_point is not None else 0, dtype=np.int64))
            if q.zeroPoint.size != q.scale.size:
                q.zeroPoint = np.zeros(q.scale.size, dtype=np.int64)
            q.quantizedDimension = axis
            t.quantization = q
        buffer = schema.BufferT()
        if data is not None:
            buffer.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), dtype=np.uint8)
        self.buffers.append(buffer)
        t.buffer = len(self.buffers) - 1
        self.tensors.append(t)
        self.meta.append({"shape": tuple(shape), "scale": None if scale is None else np.atleast_1d(scale),
                          "zero_point": zero_point, "dtype": dtype})
        return len(self.tensors) - 1

    def activation(self, name: str, shape, scale: float, zero_point: int) -> int:
        return self._add(name, shape, "int8", scale, zero_point)

    def float_tensor(self, name: str, shape) -> int:
        return self._add(name, shape, "float32")

    def const(self, name: str, data: np.ndarray, scale=None, zero_point=None, axis: int = 0) -> int:
        dtype = {np.dtype(np.int8): "int8", np.dtype(np.int32): "int32", np.dtype(np.float32): "float32"}[data.dtype]
        return self._add(name, data.shape, dtype, scale, zero_point, axis, data)

    def shape(self, t: int) -> tuple:
        return self.meta[t]["shape"]

    def scale(self, t: int) -> float:
        return float(self.meta[t]["scale"][0])

    def zero_point(self, t: int) -> int:
        return int(self.meta[t]["zero_point"])

    # ---- ops

    def op(self, name: str, inputs, outputs, options=None) -> None:
        code = getattr(schema.BuiltinOperator, name)
        if code not in self.codes:
            self.codes[code] = len(self.codes)
        op = schema.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = self.codes[code], list(inputs), list(outputs)
        if options is not None:
            op.builtinOptionsType = getattr(schema.BuiltinOptions, type(options).__name__[:-1])
            op.builtinOptions = options
        self.ops.append(op)

    def build(self, inputs, outputs) -> bytes:
        graph = schema.SubGraphT()
        graph.tensors, graph.inputs, graph.outputs, graph.operators = self.tensors, list(inputs), list(outputs), self.ops
        model = schema.ModelT()
        model.version, model.subgraphs, model.buffers, model.description = 3, [graph], self.buffers, "edgeport test"
        model.operatorCodes = []
        for code in sorted(self.codes, key=self.codes.get):
            oc = schema.OperatorCodeT()
            oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), 1
            model.operatorCodes.append(oc)
        builder = flatbuffers.Builder(1024)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())

    # ---- layers with random int8 weights

    def _qparams(self, real_std: float) -> tuple[float, int]:
        """An output scale putting about 2.5 standard deviations in int8, and a small zero point."""
        return float(np.float32(real_std / 50.0)), int(self.rng.integers(-20, 21))

    def _weight_scales(self, x: int, taps: int, channels: int, target_std: float, rms: float = 73.0) -> np.ndarray:
        """Weight scales giving outputs of about `target_std` (int8 inputs spread ~ 60 steps, or
        the input's own "spread" (a sign's outputs: 127), int8 weights of root mean square `rms`:
        about 73 for the uniform random ones)."""
        base = target_std / (self.scale(x) * self.meta[x].get("spread", 60) * rms * np.sqrt(taps))
        return (self.rng.uniform(0.6, 1.4, channels) * base).astype(np.float32)

    def _activation_qparams(self, act: str, target_std: float) -> tuple[float, int]:
        """Output quantization that keeps a fused clamp meaningful (RELU6: [0, 6] over int8)."""
        if act == "RELU6":
            return float(np.float32(6.0 / 255)), -128
        if act == "RELU_N1_TO_1":
            return float(np.float32(2.0 / 255)), 0
        if act == "RELU":
            return float(np.float32(target_std * 3 / 255)), -128
        return self._qparams(target_std)

    def conv(self, x: int, out_c: int, k=(3, 3), stride=(1, 1), dilation=(1, 1), padding="SAME", act="NONE",
             depthwise=False, per_channel=True, bias=True, target_std: float = 2.0, groups: int = 1,
             weights=None) -> int:
        """`weights`: a function (rng, shape) -> int8 filter replacing the uniform random one."""
        n, h, w, c = self.shape(x)
        shape = (1, *k, out_c) if depthwise else (out_c, *k, c // groups)
        rms = 73.0 if weights is None else None
        weights = (weights or _uniform_weights)(self.rng, shape)
        if depthwise:
            multiplier = out_c // c
            taps, axis = k[0] * k[1], 3
        else:
            multiplier = 1
            taps, axis = k[0] * k[1] * c // groups, 0
        if act == "RELU_N1_TO_1":
            target_std = 0.7
        w_scales = self._weight_scales(x, taps, out_c if per_channel else 1, target_std, rms or _rms(weights))
        wt = self.const(f"w{len(self.tensors)}", weights, w_scales, np.zeros(w_scales.size, np.int64), axis)
        b_scales = (np.float32(self.scale(x)) * w_scales).astype(np.float32)
        bt = -1
        if bias:
            bias_q = np.round(self.rng.normal(0, 0.5, out_c) / b_scales).astype(np.int32)  # about +-0.5
            bt = self.const(f"b{len(self.tensors)}", bias_q, np.broadcast_to(b_scales, (out_c,)).copy(),
                            np.zeros(out_c, np.int64))
        oh = _out_size(padding, h, k[0], stride[0], dilation[0])
        ow = _out_size(padding, w, k[1], stride[1], dilation[1])
        scale, zp = self._activation_qparams(act, target_std)
        y = self.activation(f"conv{len(self.tensors)}", (n, oh, ow, out_c), scale, zp)
        if depthwise:
            opts = schema.DepthwiseConv2DOptionsT()
            opts.depthMultiplier = multiplier
        else:
            opts = schema.Conv2DOptionsT()
        opts.padding = 0 if padding == "SAME" else 1
        opts.strideH, opts.strideW = stride
        opts.dilationHFactor, opts.dilationWFactor = dilation
        opts.fusedActivationFunction = _ACT[act]
        self.op("DEPTHWISE_CONV_2D" if depthwise else "CONV_2D", [x, wt, bt] if bias else [x, wt], [y], opts)
        return y

    def fully_connected(self, x: int, units: int, act="NONE", per_channel=False, keep_num_dims=False,
                        bias=True, out_scale: float | None = None, weights=None) -> int:
        """`weights`: a function (rng, shape) -> int8 filter replacing the uniform random one."""
        shape = self.shape(x)
        depth = shape[-1]
        rms = 73.0 if weights is None else None
        weights = (weights or _uniform_weights)(self.rng, (units, depth))
        w_scales = self._weight_scales(x, depth, units if per_channel else 1, 2.0, rms or _rms(weights))
        wt = self.const(f"fc_w{len(self.tensors)}", weights, w_scales, np.zeros(w_scales.size, np.int64), 0)
        b_scales = np.broadcast_to((np.float32(self.scale(x)) * w_scales).astype(np.float32), (units,))
        bias_q = np.round(self.rng.normal(0, 0.5, units) / b_scales).astype(np.int32)
        bt = self.const(f"fc_b{len(self.tensors)}", bias_q, b_scales.copy() if per_channel else b_scales[:1].copy(),
                        np.zeros(units if per_channel else 1))
        out_shape = (*shape[:-1], units) if keep_num_dims else (int(np.prod(shape[:-1])), units)
        scale, zp = self._activation_qparams(act, 2.0)
        y = self.activation(f"fc{len(self.tensors)}", out_shape, out_scale or scale, zp)
        opts = schema.FullyConnectedOptionsT()
        opts.fusedActivationFunction, opts.keepNumDims = _ACT[act], keep_num_dims
        self.op("FULLY_CONNECTED", [x, wt, bt] if bias else [x, wt, -1], [y], opts)
        return y

    def pool(self, x: int, kind: str, k=(2, 2), stride=(2, 2), padding="VALID", act="NONE") -> int:
        n, h, w, c = self.shape(x)
        y = self.activation(f"pool{len(self.tensors)}", (n, _out_size(padding, h, k[0], stride[0]),
                                                         _out_size(padding, w, k[1], stride[1]), c),
                            self.scale(x), self.zero_point(x))
        opts = schema.Pool2DOptionsT()
        opts.padding = 0 if padding == "SAME" else 1
        opts.strideH, opts.strideW = stride
        opts.filterHeight, opts.filterWidth = k
        opts.fusedActivationFunction = _ACT[act]
        self.op(kind, [x], [y], opts)
        return y

    def add(self, a: int, b: int, act="NONE") -> int:
        shape = tuple(np.broadcast_shapes(self.shape(a), self.shape(b)))
        scale, zp = self._activation_qparams(act, 40 * (self.scale(a) + self.scale(b)))
        y = self.activation(f"add{len(self.tensors)}", shape, scale, zp)
        opts = schema.AddOptionsT()
        opts.fusedActivationFunction = _ACT[act]
        self.op("ADD", [a, b], [y], opts)
        return y

    def mean(self, x: int, axes, keep_dims: bool) -> int:
        shape = self.shape(x)
        axes_t = self.const(f"axes{len(self.tensors)}", np.array(axes, dtype=np.int32))
        out = tuple(1 if i in axes else d for i, d in enumerate(shape)) if keep_dims else tuple(
            d for i, d in enumerate(shape) if i not in axes)
        y = self.activation(f"mean{len(self.tensors)}", out, self.scale(x) * 1.3, self.zero_point(x) + 5)
        opts = schema.ReducerOptionsT()
        opts.keepDims = keep_dims
        self.op("MEAN", [x, axes_t], [y], opts)
        return y

    def softmax(self, x: int, beta: float = 1.0) -> int:
        y = self.activation(f"softmax{len(self.tensors)}", self.shape(x), 1.0 / 256, -128)
        opts = schema.SoftmaxOptionsT()
        opts.beta = beta
        self.op("SOFTMAX", [x], [y], opts)
        return y

    def reshape(self, x: int, shape) -> int:
        shape_t = self.const(f"shape{len(self.tensors)}", np.array(shape, dtype=np.int32))
        y = self.activation(f"reshape{len(self.tensors)}", tuple(shape), self.scale(x), self.zero_point(x))
        opts = schema.ReshapeOptionsT()
        opts.newShape = list(shape)
        self.op("RESHAPE", [x, shape_t], [y], opts)
        return y

    def transpose(self, x: int, perm) -> int:
        perm_t = self.const(f"perm{len(self.tensors)}", np.array(perm, dtype=np.int32))
        shape = tuple(self.shape(x)[p] for p in perm)
        y = self.activation(f"transpose{len(self.tensors)}", shape, self.scale(x), self.zero_point(x))
        self.op("TRANSPOSE", [x, perm_t], [y], schema.TransposeOptionsT())
        return y

    def pad(self, x: int, pads, value: int | None = None) -> int:
        pads_t = self.const(f"pads{len(self.tensors)}", np.array(pads, dtype=np.int32))
        shape = tuple(d + a + b for d, (a, b) in zip(self.shape(x), pads))
        y = self.activation(f"pad{len(self.tensors)}", shape, self.scale(x), self.zero_point(x))
        if value is None:
            self.op("PAD", [x, pads_t], [y], schema.PadOptionsT())
        else:
            v = self.const(f"pad_value{len(self.tensors)}", np.array([value], dtype=np.int8), self.scale(x),
                           self.zero_point(x))
            self.op("PADV2", [x, pads_t, v], [y], schema.PadV2OptionsT())
        return y

    def concatenate(self, xs, axis: int) -> int:
        shape = list(self.shape(xs[0]))
        shape[axis] = sum(self.shape(x)[axis] for x in xs)
        y = self.activation(f"concat{len(self.tensors)}", tuple(shape), self.scale(xs[0]), self.zero_point(xs[0]))
        opts = schema.ConcatenationOptionsT()
        opts.axis = axis
        self.op("CONCATENATION", list(xs), [y], opts)
        return y

    def sign(self, x: int) -> int:
        """x >= 0 ? 1 : -1 as litert-torch converts edgeport.training.lowbit.Sign to int8:
        GREATER_EQUAL (x vs an int8 scalar 0 of a tiny scale), then SELECT_V2 between the int8
        scalars 127 and -128 (scale 2/255, zero point 0: +1 and -1 clamped to int8)."""
        n = len(self.tensors)
        zero = self.const(f"zero{n}", np.array(0, dtype=np.int8), np.float32(3.921568847431445e-09), 0)
        condition = self._add(f"ge{n}", self.shape(x), "bool")
        self.op("GREATER_EQUAL", [x, zero], [condition])
        scale = np.float32(2.0 / 255)
        plus = self.const(f"plus{n}", np.array(127, dtype=np.int8), scale, 0)
        minus = self.const(f"minus{n}", np.array(-128, dtype=np.int8), scale, 0)
        y = self.activation(f"sign{n}", self.shape(x), float(scale), 0)
        self.meta[y]["spread"] = 127
        self.op("SELECT_V2", [condition, plus, minus], [y])
        return y

    def compare(self, op: str, a: int, b: int) -> int:
        """A comparison op (GREATER_EQUAL, LESS, EQUAL, ...) of two int8 tensors: a bool tensor."""
        y = self._add(f"{op.lower()}{len(self.tensors)}", tuple(np.broadcast_shapes(self.shape(a), self.shape(b))),
                      "bool")
        self.op(op, [a, b], [y])
        return y

    def select(self, condition: int, x: int, y: int) -> int:
        """SELECT_V2: condition ? x : y, broadcast; the output quantized as `x`."""
        shape = tuple(np.broadcast_shapes(self.shape(condition), self.shape(x), self.shape(y)))
        out = self.activation(f"select{len(self.tensors)}", shape, self.scale(x), self.zero_point(x))
        self.op("SELECT_V2", [condition, x, y], [out])
        return out

    def requantize(self, x: int, scale: float, zero_point: int) -> int:
        y = self.activation(f"requant{len(self.tensors)}", self.shape(x), scale, zero_point)
        self.op("QUANTIZE", [x], [y], schema.QuantizeOptionsT())
        return y


def _uniform_weights(rng: np.random.Generator, shape) -> np.ndarray:
    return rng.integers(-127, 128, shape).astype(np.int8)


def _rms(weights: np.ndarray) -> float:
    return max(float(np.sqrt(np.mean(weights.astype(np.float64) ** 2))), 1.0)


def binary_weights(rng: np.random.Generator, shape) -> np.ndarray:
    """A `weights` function: -1 or +1 (binary weights with their scale per output channel)."""
    return rng.choice(np.array([-1, 1], dtype=np.int8), shape)


def ternary_weights(zeros: float = 0.4):
    """A `weights` function: about `zeros` of the weights 0, the others -1 or +1 (TWN)."""
    def make(rng: np.random.Generator, shape) -> np.ndarray:
        return np.where(rng.random(shape) < zeros, 0, binary_weights(rng, shape)).astype(np.int8)
    return make


def pruned_palettized(sparsity: float, levels: int = 16, per_channel: bool = False):
    """A `weights` function for GraphBuilder layers: int8 weights with about `sparsity` zeros and
    at most `levels` distinct values (0 and levels - 1 others), as pruning then k-means leave
    them; with `per_channel`, other values for each slice along axis 0 (FC and CONV_2D output
    channels)."""
    def make(rng: np.random.Generator, shape) -> np.ndarray:
        slices = shape[0] if per_channel else 1
        tables = [rng.choice(np.r_[-127:0, 1:128], levels - 1, replace=False) for _ in range(slices)]
        if per_channel:
            weights = np.concatenate([rng.choice(t, (1, *shape[1:])) for t in tables]).astype(np.int8)
        else:
            weights = rng.choice(tables[0], shape).astype(np.int8)
        weights[rng.random(shape) < sparsity] = 0
        return weights
    return make


def compressible_graph(seed: int = 7) -> bytes:
    """int8 in, int8 out, weights as pruning and k-means leave them (85% zeros, 16 values per
    tensor; the first FULLY_CONNECTED 90% zeros; the last 20% zeros and 16 values per output
    channel, over 128 in all): CONV_2D 3x3 SAME RELU, DEPTHWISE_CONV_2D 3x3 stride 2 with depth
    multiplier 2, CONV_2D 1x1 in 2 groups, AVERAGE_POOL_2D, RESHAPE, FULLY_CONNECTED 256 -> 64
    RELU, FULLY_CONNECTED 64 -> 16 per channel."""
    g = GraphBuilder(seed)
    pruned = pruned_palettized(0.85)
    x = g.activation("input", (1, 9, 9, 4), 0.05, 3)
    a = g.conv(x, 12, k=(3, 3), act="RELU", weights=pruned)
    b = g.conv(a, 24, k=(3, 3), stride=(2, 2), depthwise=True, weights=pruned)
    c = g.conv(b, 16, k=(1, 1), groups=2, weights=pruned)
    p = g.pool(c, "AVERAGE_POOL_2D", k=(2, 2), stride=(1, 1))
    r = g.reshape(p, [1, 256])
    f = g.fully_connected(r, 64, act="RELU", weights=pruned_palettized(0.9))
    y = g.fully_connected(f, 16, per_channel=True, weights=pruned_palettized(0.2, per_channel=True))
    return g.build([x], [y])


def ops_graph(seed: int = 0) -> bytes:
    """int8 in, int8 out: convolutions (stride 2 SAME RELU6 per channel; dilated SAME
    RELU_N1_TO_1 per tensor; depthwise 2x3 stride (1, 2) on 6 channels; depthwise multiplier 2
    dilated VALID; 1x1 in 2 groups), max pool
    3x3/2 SAME RELU, average pool 3x3/1 SAME, residual and broadcast ADD with RELU6, MEAN
    over H, W, per-channel FULLY_CONNECTED, SOFTMAX with beta 0.7."""
    g = GraphBuilder(seed)
    x = g.activation("input", (1, 13, 11, 3), 0.05, 7)
    a = g.conv(x, 8, k=(3, 3), stride=(2, 2), padding="SAME", act="RELU6")
    b = g.conv(a, 6, k=(3, 2), dilation=(2, 2), padding="SAME", act="RELU_N1_TO_1", per_channel=False)
    b = g.conv(b, 6, k=(2, 3), stride=(1, 2), padding="SAME", depthwise=True)  # 6 channels: 4 + tail of 2
    c = g.conv(b, 12, k=(3, 3), dilation=(2, 1), padding="VALID", depthwise=True, act="RELU")
    d = g.conv(c, 10, k=(1, 1), groups=2)
    p = g.pool(d, "MAX_POOL_2D", k=(3, 3), stride=(2, 2), padding="SAME", act="RELU")
    q = g.pool(p, "AVERAGE_POOL_2D", k=(3, 3), stride=(1, 1), padding="SAME")
    r = g.add(p, q)
    bias = g.const("channel_bias", g.rng.integers(-128, 128, (1, 1, 1, 10)).astype(np.int8), 0.02, -3)
    s = g.add(r, bias, act="RELU6")
    m = g.mean(s, [1, 2], keep_dims=False)
    f = g.fully_connected(m, 7, per_channel=True)
    y = g.softmax(f, beta=0.7)
    return g.build([x], [y])


def layout_graph(seed: int = 1) -> bytes:
    """float in, float out: QUANTIZE, TRANSPOSE, PAD, PADV2, CONCATENATION, RESHAPE,
    FULLY_CONNECTED (keep_num_dims, 3-D input, RELU, no bias), MEAN keeping dims, requantizing QUANTIZE,
    DEQUANTIZE."""
    g = GraphBuilder(seed)
    x = g.float_tensor("input", (1, 3, 5, 6))
    q = g.activation("input_q", (1, 3, 5, 6), 0.04, -5)
    g.op("QUANTIZE", [x], [q], schema.QuantizeOptionsT())
    t = g.transpose(q, [0, 2, 3, 1])                      # [1, 5, 6, 3]
    a = g.pad(t, [[0, 0], [1, 2], [0, 1], [0, 0]])        # [1, 8, 7, 3]
    b = g.pad(t, [[0, 0], [2, 1], [1, 0], [0, 0]], value=21)
    c = g.concatenate([a, b], axis=3)                     # [1, 8, 7, 6]
    r = g.reshape(c, [1, 56, 6])
    f = g.fully_connected(r, 5, act="RELU", keep_num_dims=True, bias=False)  # [1, 56, 5]
    m = g.mean(f, [1], keep_dims=True)                    # [1, 1, 5]
    rq = g.requantize(m, g.scale(m) * 0.37, 11)
    y = g.float_tensor("output", g.shape(rq))
    g.op("DEQUANTIZE", [rq], [y], schema.DequantizeOptionsT())
    return g.build([x], [y])


def single_op_graph(op: str, seed: int = 0) -> bytes:
    """One op on an int8 [1, 4, 4, 3] input: an op edgeport lacks (e.g. "EXP", "RSQRT")."""
    g = GraphBuilder(seed)
    x = g.activation("input", (1, 4, 4, 3), 0.05, 0)
    y = g.activation(f"{op.lower()}_out", (1, 4, 4, 3), 1.0 / 128, 0 if op == "TANH" else -128)
    g.op(op, [x], [y])
    return g.build([x], [y])


def fully_connected_graph(input_scale: float, weight_scale: float, output_scale: float, bias: int,
                          weight: int = 1) -> bytes:
    """int8 [1, 1] -> FULLY_CONNECTED (one weight, one bias) -> int8 [1, 1]: the accumulator is
    weight * (input - zero point) + bias, so tests can aim at a chosen rescaling case."""
    g = GraphBuilder(0)
    x = g.activation("input", (1, 1), input_scale, 0)
    w = g.const("w", np.array([[weight]], dtype=np.int8), weight_scale, 0)
    b = g.const("b", np.array([bias], dtype=np.int32), np.float32(input_scale) * np.float32(weight_scale), 0)
    y = g.activation("output", (1, 1), output_scale, 0)
    g.op("FULLY_CONNECTED", [x, w, b], [y], schema.FullyConnectedOptionsT())
    return g.build([x], [y])


def conv_1x1_graph(input_scale: float, weight_scale: float, output_scale: float, bias: int) -> bytes:
    """int8 [1, 1, 1, 1] -> CONV_2D 1x1 (weight 1, one bias) -> int8: as fully_connected_graph."""
    g = GraphBuilder(0)
    x = g.activation("input", (1, 1, 1, 1), input_scale, 0)
    w = g.const("w", np.array([[[[1]]]], dtype=np.int8), [weight_scale], [0])
    b = g.const("b", np.array([bias], dtype=np.int32), [np.float32(input_scale) * np.float32(weight_scale)], [0])
    y = g.activation("output", (1, 1, 1, 1), output_scale, 0)
    opts = schema.Conv2DOptionsT()
    opts.padding, opts.strideH, opts.strideW, opts.dilationHFactor, opts.dilationWFactor = 1, 1, 1, 1, 1
    g.op("CONV_2D", [x, w, b], [y], opts)
    return g.build([x], [y])


def lowbit_fc_graph(kind: str = "binary", seed: int = 21) -> bytes:
    """int8 [2, 250] (two batches, 250 = 7 blocks of 32 + 26) -> FULLY_CONNECTED 250 -> 64 with
    `kind` ("binary" or "ternary") weights, per-channel scales, RELU -> FULLY_CONNECTED 64 -> 10,
    `kind` weights with one scale, no bias -> int8 [2, 10]."""
    weights = binary_weights if kind == "binary" else ternary_weights()
    g = GraphBuilder(seed)
    x = g.activation("input", (2, 250), 0.05, -7)
    h = g.fully_connected(x, 64, act="RELU", per_channel=True, weights=weights)
    y = g.fully_connected(h, 10, bias=False, weights=weights)
    return g.build([x], [y])


def lowbit_conv_graph(kind: str = "binary", seed: int = 22) -> bytes:
    """int8 [1, 9, 8, 5] -> CONV_2D 3x3 SAME RELU (K = 45, padding) -> CONV_2D 1x1 (K = 12) ->
    DEPTHWISE_CONV_2D 3x3 (low-bit values, no low-bit kernel: int8) -> CONV_2D 3x2 stride 2
    dilation (2, 1) VALID per-tensor; every filter `kind` ("binary" or "ternary")."""
    weights = binary_weights if kind == "binary" else ternary_weights()
    g = GraphBuilder(seed)
    x = g.activation("input", (1, 9, 8, 5), 0.05, 3)
    a = g.conv(x, 12, k=(3, 3), act="RELU", weights=weights)
    b = g.conv(a, 8, k=(1, 1), weights=weights)
    c = g.conv(b, 8, k=(3, 3), depthwise=True, weights=weights)
    y = g.conv(c, 6, k=(3, 2), stride=(2, 2), dilation=(2, 1), padding="VALID", per_channel=False, weights=weights)
    return g.build([x], [y])


def xnor_fc_graph(seed: int = 23) -> bytes:
    """XNOR-Net's MLP: int8 [1, 64] -> FULLY_CONNECTED 64 -> 96 (int8 weights) -> sign ->
    FULLY_CONNECTED 96 -> 80 binary -> sign -> FULLY_CONNECTED 80 -> 40 ternary (80 = 2 blocks +
    16) -> FULLY_CONNECTED 40 -> 10 (int8 weights)."""
    g = GraphBuilder(seed)
    x = g.activation("input", (1, 64), 0.05, 2)
    h = g.fully_connected(x, 96, per_channel=True)
    h = g.fully_connected(g.sign(h), 80, per_channel=True, weights=binary_weights)
    h = g.fully_connected(g.sign(h), 40, per_channel=True, weights=ternary_weights())
    y = g.fully_connected(h, 10)
    return g.build([x], [y])


def xnor_conv_graph(seed: int = 24) -> bytes:
    """int8 [1, 8, 7, 3] -> CONV_2D 3x3 (int8 weights) -> sign -> CONV_2D 3x3 SAME binary (16
    channels: XNOR with the padding taken back) -> sign -> CONV_2D 1x1 ternary -> sign ->
    RESHAPE -> FULLY_CONNECTED binary (XNOR through the reshape) -> int8 [1, 10]."""
    g = GraphBuilder(seed)
    x = g.activation("input", (1, 8, 7, 3), 0.05, -4)
    a = g.conv(x, 8, k=(3, 3))
    b = g.conv(g.sign(a), 16, k=(3, 3), weights=binary_weights)
    c = g.conv(g.sign(b), 12, k=(1, 1), weights=ternary_weights())
    r = g.reshape(g.sign(c), [1, 8 * 7 * 12])
    y = g.fully_connected(r, 10, per_channel=True, weights=binary_weights)
    return g.build([x], [y])


def comparison_graph(op: str, seed: int = 25) -> bytes:
    """int8 [1, 4, 5, 3] -> `op` against its copy requantized to twice the scale (general path),
    of a scalar constant against it (interval path) and against a per-channel constant [3]
    (broadcast) -> SELECT_V2 between tensors, a broadcast constant, a scalar -> CONCATENATION ->
    int8 [1, 4, 5, 9]. Inputs near the zero point make EQUAL hold often."""
    g = GraphBuilder(seed)
    x = g.activation("input", (1, 4, 5, 3), 0.05, -3)
    q = g.requantize(x, 0.1, -3)
    scalar = g.const("scalar", np.array(-2, dtype=np.int8), 0.05, -3)
    channels = g.const("channels", np.array([-5, -3, 0], dtype=np.int8), 0.05, -3)
    column = g.const("column", g.rng.integers(-128, 128, (1, 1, 5, 1)).astype(np.int8), 0.05, -3)
    a = g.select(g.compare(op, x, q), x, q)
    b = g.select(g.compare(op, scalar, x), x, column)
    c = g.select(g.compare(op, x, channels), scalar, x)
    return g.build([x], [g.concatenate([a, b, c], axis=3)])


def multi_io_graph(float_io: bool = False, seed: int = 26) -> bytes:
    """Two inputs, three outputs: image [1, 6, 6, 3] -> conv RELU -> `map` [1, 6, 6, 4] (an output
    that later ops read too) -> MEAN over H, W -> ADD with side [1, 4] -> FULLY_CONNECTED ->
    `head` [1, 5] -> SOFTMAX -> `probs` [1, 5]. `float_io`: both inputs float through QUANTIZE,
    every output float through DEQUANTIZE."""
    g = GraphBuilder(seed)
    ends = []
    for name, shape, scale, zero_point in (("image", (1, 6, 6, 3), 0.05, -3), ("side", (1, 4), 0.02, 7)):
        q = g.activation(f"{name}_q" if float_io else name, shape, scale, zero_point)
        if float_io:
            x = g.float_tensor(name, shape)
            g.op("QUANTIZE", [x], [q], schema.QuantizeOptionsT())
            ends.append(x)
        else:
            ends.append(q)
        if name == "image":
            image = q
        else:
            side = q
    feature_map = g.conv(image, 4, k=(3, 3), padding="SAME", act="RELU")
    pooled = g.reshape(g.mean(feature_map, [1, 2], keep_dims=False), [1, 4])
    head = g.fully_connected(g.add(pooled, g.requantize(side, g.scale(pooled), g.zero_point(pooled))), 5)
    outputs = [feature_map, head, g.softmax(head)]
    if float_io:
        for k, q in enumerate(list(outputs)):
            y = g.float_tensor(f"output_{k}", g.shape(q))
            g.op("DEQUANTIZE", [q], [y], schema.DequantizeOptionsT())
            outputs[k] = y
    return g.build(ends, outputs)


def conv_variants_graph(seed: int = 3) -> bytes:
    """int8 in, int8 out: the corners of the DSP convolution paths. 63 output pixels (an odd last
    pixel pair), 7 output channels (an odd last channel), K = 45 and K = 7 (K % 4 left over); a
    pointwise layer in place with fewer output than input channels; dilated depthwise over 6
    channels (a block of 4 and 2 left over) clamped to [-1, 1]; a 6x5 per-tensor convolution;
    depthwise 4x3 (12 taps, the tap loop) and 6x5 (30 taps, over the DSP path's table); a strided
    valid convolution."""
    g = GraphBuilder(seed)
    x = g.activation("input", (1, 9, 7, 5), 0.05, -3)
    a = g.conv(x, 7, k=(3, 3), padding="SAME", act="RELU")
    b = g.conv(a, 6, k=(1, 1), act="RELU6")
    c = g.conv(b, 6, k=(3, 3), dilation=(2, 2), padding="SAME", depthwise=True, act="RELU_N1_TO_1")
    d = g.conv(c, 8, k=(6, 5), padding="SAME", per_channel=False)
    e = g.conv(d, 8, k=(4, 3), padding="SAME", depthwise=True)
    f = g.conv(e, 8, k=(6, 5), padding="SAME", depthwise=True)
    y = g.conv(f, 5, k=(2, 3), stride=(2, 2), padding="VALID")
    return g.build([x], [y])
