"""A minimal CMSIS-NN "library" for an int8 .tflite: the measuring stick of `mcu_vs_cmsis_nn.py`.

`generate_cmsis_library` writes, into a temporary folder, a `<name>.h` / `<name>.c` pair with the
contract of edgeport's firmware harness (`<NAME>_INPUT_SIZE`, `<NAME>_OUTPUT_SIZE`,
`<NAME>_ARENA_SIZE`, `int <name>_invoke(const int8_t *input, int8_t *output)`) whose invoke is
a straight-line sequence of calls into Arm's CMSIS-NN kernels, plus copies of the CMSIS-NN
sources those calls need (`cmsis-nn/Source/...`, `cmsis-nn/Include/...`), so that
`firmware.build_firmware` compiles them with its own flags. Nothing of CMSIS-NN is written into
the repository: the sources are read from the folder given (../shared/third_party/cmsis-nn by
default) at run time, into the caller's temporary folder.

Every parameter is computed from the .tflite the way TFLite Micro's CMSIS-NN kernels compute it
in Prepare (tensorflow/lite/micro/kernels/cmsis_nn/*.cc): offsets are the negated input / filter
zero points and the output zero point; per-channel multipliers and shifts are TFLite's
QuantizeMultiplier of input_scale * filter_scale / output_scale in double precision; fused
activations are CalculateActivationRangeQuantized; SAME padding is ComputePaddingHeightWidth;
ADD and SOFTMAX use add.cc's and softmax's Prepare arithmetic. edgeport's pure helpers compute
exactly these (`edgeport.mcu.compiler.requant`, `lowering.compute_padding`) and are reused.
The scratch buffer of each call is what CMSIS-NN's own `arm_*_get_buffer_size` functions return:
their host variants (`*_dsp` for the DSP path, the plain ones for the C path, which a host build
without ARM_MATH_DSP/MVEI selects) are compiled and run on the host with the same parameters.
Activations and scratch buffers share one static arena laid out by edgeport's planner (first fit,
an op's output never overlapping its inputs, as CMSIS-NN requires).

Ops mapped: CONV_2D (not grouped), DEPTHWISE_CONV_2D, FULLY_CONNECTED (per tensor or per
channel), AVERAGE_POOL_2D, MAX_POOL_2D, SOFTMAX, ADD (same shapes), PAD (constant, int8),
TRANSPOSE (4-D), an int8 -> int8 QUANTIZE (see `_map_requantize`), RESHAPE/SQUEEZE (the same
bytes, copied only into the caller's output), and a leading QUANTIZE /
trailing DEQUANTIZE are left outside `<name>_invoke`, as edgeport does (the int8 core is
compared). Anything else raises `NotMapped`, naming every op that is not mapped.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeport.mcu.compiler import planner, requant
from edgeport.mcu.compiler.c_text import c_int, render_array
from edgeport.mcu.compiler.lowering import CArray, compute_padding
from edgeport.mcu.compiler.tflite_ir import Graph, Op, Tensor, read_tflite

ALIASES = ("RESHAPE", "SQUEEZE")
# the host variants of CMSIS-NN's buffer-size functions: these four files define them all
SIZER_SOURCES = ("ConvolutionFunctions/arm_convolve_get_buffer_sizes_s8.c",
                 "ConvolutionFunctions/arm_depthwise_conv_get_buffer_sizes_s8.c",
                 "FullyConnectedFunctions/arm_fully_connected_get_buffer_sizes_s8.c",
                 "PoolingFunctions/arm_avgpool_get_buffer_sizes_s8.c")


class NotMapped(Exception):
    """The model has ops the CMSIS-NN harness does not map (the message names them)."""


@dataclass
class CmsisLibrary:
    """What `generate_cmsis_library` wrote and the figures a report needs."""

    name: str
    lib_dir: Path
    path: str                 # "DSP" (ARM_MATH_DSP) or "C" (no DSP, no MVE)
    input_size: int
    output_size: int
    arena_bytes: int          # activations and scratch buffers, planned together
    scratch_bytes: int        # the largest single scratch buffer (inside the arena)
    macs: int
    kernels: list[str]        # CMSIS-NN entry points, in call order
    sources: list[str]        # CMSIS-NN .c files copied, relative to Source/
    core_input: int           # tensor indices of the int8 core's input and output
    core_output: int
    notes: list[str] = field(default_factory=list)  # ops run in a way worth saying


@dataclass
class _Call:
    """One op as CMSIS-NN: declarations of its parameter structs (pure values, also compiled into
    the host sizer), its const data, a buffer-size expression, and the call (a function of the
    pointer of each tensor and of its context)."""

    op: Op
    kernel: str
    shapes: list[str]
    data: list[str]
    call: Callable[[Callable[[int], str]], str]
    sizer: str | None = None
    macs: int = 0
    context: bool = True      # takes a cmsis_nn_context (`op<N>_ctx`, its scratch buffer)
    status: bool = True       # returns an arm_cmsis_nn_status to check
    scratch: int = 0


@dataclass
class _Ctx:
    """What the mappers share: the graph, the path sized for, notes for the report."""

    graph: Graph
    dsp: bool
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------ C text helpers

def _struct(value) -> str:
    """A C initializer from nested dicts (designated fields), lists and ints."""
    if isinstance(value, dict):
        return "{" + ", ".join(f".{k} = {_struct(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "{" + ", ".join(_struct(v) for v in value) + "}"
    return value if isinstance(value, str) else c_int(value)


def _decl(ctype: str, name: str, value) -> str:
    return f"static const {ctype} {name} = {_struct(value)};"


def _dims(name: str, n: int, h: int, w: int, c: int) -> str:
    return _decl("cmsis_nn_dims", name, {"n": n, "h": h, "w": w, "c": c})


def _array(name: str, ctype: str, values, comment: str) -> str:
    return render_array(CArray(name, ctype, np.ravel(np.asarray(values)), comment))


def _tile(w: int, h: int) -> dict:
    return {"w": w, "h": h}


# ------------------------------------------------------------------ per-op mapping

def _int8(op: Op, *tensors: Tensor | None) -> None:
    for t in tensors:
        if t is not None and (t.dtype != "int8" or not t.quantized):
            raise NotMapped(f"{op.name} ({t.dtype})")


def _activation(op: Op, out: Tensor) -> dict:
    act = op.options.get("fused_activation_function", "NONE")
    try:
        lo, hi = requant.activation_range(act, out.scale, out.zero_point)
    except ValueError:
        raise NotMapped(f"{op.name} (fused {act})") from None
    return {"min": lo, "max": hi}


def _window(op: Op, in_hw, filter_hw, out_hw, dilation=(1, 1)) -> tuple[int, int]:
    """(pad_h, pad_w) as TFLite's ComputePaddingHeightWidth (0 for VALID: the formula gives 0
    for VALID shapes, and TFLite computes it for both)."""
    strides = (op.options.get("stride_h", 1), op.options.get("stride_w", 1))
    return tuple(compute_padding(strides[a], dilation[a], in_hw[a], filter_hw[a], out_hw[a]) for a in range(2))


def _operands(op: Op, graph: Graph):
    ins = [graph.tensors[i] if i >= 0 else None for i in op.inputs]
    return ins, graph.tensors[op.outputs[0]]


def _per_channel_quant(p: str, inp: Tensor, filt: Tensor, out: Tensor, channels: int) -> list[str]:
    """TFLM's PopulateConvolutionQuantizationParams: one (multiplier, shift) per output channel."""
    scales = np.broadcast_to(filt.scales.astype(np.float64), (channels,))
    mult, shift = requant.quantize_multipliers(float(inp.scale) * scales / float(out.scale))
    # CMSIS-NN's struct takes non-const pointers but only reads them: the tables stay in flash
    return [_array(f"{p}_mult", "int32_t", mult, "per-channel multipliers (QuantizeMultiplier)"),
            _array(f"{p}_shift", "int32_t", shift, "per-channel shifts"),
            _decl("cmsis_nn_per_channel_quant_params", f"{p}_quant",
                  {"multiplier": f"(int32_t *){p}_mult", "shift": f"(int32_t *){p}_shift"})]


def _weights(op: Op, p: str, filt: Tensor, bias: Tensor | None) -> tuple[list[str], str]:
    if not filt.is_constant or (bias is not None and (not bias.is_constant or bias.dtype != "int32")):
        raise NotMapped(f"{op.name} (non-constant filter or non-int32 bias)")
    data = [_array(f"{p}_filter", "int8_t", filt.data, f"{filt.label} {list(filt.shape)}")]
    if bias is not None:
        data.append(_array(f"{p}_bias", "int32_t", bias.data, f"{bias.label}"))
    return data, (f"{p}_bias" if bias is not None else "NULL")


def _map_conv(op: Op, ctx: _Ctx) -> _Call:
    (inp, filt, *rest), out = _operands(op, ctx.graph)
    bias = rest[0] if rest else None
    _int8(op, inp, filt, out)
    if len(inp.shape) != 4 or len(filt.shape) != 4 or np.any(filt.zero_points != 0):
        raise NotMapped(f"{op.name} (not 4-D or filter zero point != 0)")
    depthwise = op.name == "DEPTHWISE_CONV_2D"
    n, in_h, in_w, in_c = inp.shape
    _, out_h, out_w, out_c = out.shape
    k_h, k_w = filt.shape[1], filt.shape[2]
    dil = (op.options.get("dilation_h_factor", 1), op.options.get("dilation_w_factor", 1))
    pad_h, pad_w = _window(op, (in_h, in_w), (k_h, k_w), (out_h, out_w), dil)
    p = f"op{op.index}"
    common = {"input_offset": -inp.zero_point, "output_offset": out.zero_point}
    geometry = {"stride": _tile(op.options.get("stride_w", 1), op.options.get("stride_h", 1)),
                "padding": _tile(pad_w, pad_h), "dilation": _tile(dil[1], dil[0]), "activation": _activation(op, out)}
    if depthwise:
        if out_c % in_c:
            raise NotMapped(f"{op.name} ({in_c} -> {out_c} channels)")
        params = ("cmsis_nn_dw_conv_params", {**common, "ch_mult": out_c // in_c, **geometry})
        filter_dims, kernel = (1, k_h, k_w, out_c), "arm_depthwise_conv_wrapper_s8"
        macs = out.size * k_h * k_w
    else:
        if filt.shape[3] != in_c:
            raise NotMapped(f"{op.name} (grouped)")
        params = ("cmsis_nn_conv_params", {**common, **geometry})
        filter_dims, kernel = (out_c, k_h, k_w, in_c), "arm_convolve_wrapper_s8"
        macs = out.size * k_h * k_w * in_c
    shapes = [_decl(params[0], f"{p}_params", params[1]), _dims(f"{p}_in", n, in_h, in_w, in_c),
              _dims(f"{p}_filter_dims", *filter_dims), _dims(f"{p}_bias_dims", 1, 1, 1, out_c),
              _dims(f"{p}_out", n, out_h, out_w, out_c)]
    data, bias_arg = _weights(op, p, filt, bias)
    data += _per_channel_quant(p, inp, filt, out, out_c)
    suffix = "_dsp" if ctx.dsp else ""
    sizer = f"{kernel}_get_buffer_size{suffix}(&{p}_params, &{p}_in, &{p}_filter_dims, &{p}_out)"
    return _Call(op, kernel, shapes, data, lambda ptr: (
        f"{kernel}(&{p}_ctx, &{p}_params, &{p}_quant, &{p}_in, {ptr(op.inputs[0])}, &{p}_filter_dims, "
        f"{p}_filter, &{p}_bias_dims, {bias_arg}, &{p}_out, {ptr(op.outputs[0])})"), sizer, macs)


def _map_fc(op: Op, ctx: _Ctx) -> _Call:
    (inp, filt, *rest), out = _operands(op, ctx.graph)
    bias = rest[0] if rest else None
    _int8(op, inp, filt, out)
    if len(filt.shape) != 2 or op.options.get("weights_format", 0) != 0:
        raise NotMapped(f"{op.name} (shuffled or non-2-D weights)")
    out_depth, in_depth = filt.shape
    batches = inp.size // in_depth
    p = f"op{op.index}"
    per_channel = len(filt.scales) > 1
    params = {"input_offset": -inp.zero_point, "filter_offset": 0 if per_channel else -filt.zero_point,
              "output_offset": out.zero_point, "activation": _activation(op, out)}
    # TFLM: filter_dims.n = accumulation depth, .c = output depth
    shapes = [_decl("cmsis_nn_fc_params", f"{p}_params", params), _dims(f"{p}_in", batches, 1, 1, in_depth),
              _dims(f"{p}_filter_dims", in_depth, 1, 1, out_depth), _dims(f"{p}_bias_dims", 1, 1, 1, out_depth),
              _dims(f"{p}_out", batches, 1, 1, out_depth)]
    data, bias_arg = _weights(op, p, filt, bias)
    if per_channel:
        data += _per_channel_quant(p, inp, filt, out, out_depth)
        kernel = "arm_fully_connected_per_channel_s8"
    else:
        # GetQuantizedConvolutionMultipler: (double)input_scale * (double)filter_scale / output_scale
        mult, shift = requant.quantize_multiplier(float(requant.fc_output_scale(inp.scale, filt.scales,
                                                                                  out.scale)[0]))
        data.append(_decl("cmsis_nn_per_tensor_quant_params", f"{p}_quant", {"multiplier": mult, "shift": shift}))
        kernel = "arm_fully_connected_s8"
    sizer = f"arm_fully_connected_s8_get_buffer_size{'_dsp' if ctx.dsp else ''}(&{p}_filter_dims)"
    return _Call(op, kernel, shapes, data, lambda ptr: (
        f"{kernel}(&{p}_ctx, &{p}_params, &{p}_quant, &{p}_in, {ptr(op.inputs[0])}, &{p}_filter_dims, "
        f"{p}_filter, &{p}_bias_dims, {bias_arg}, &{p}_out, {ptr(op.outputs[0])})"), sizer, out.size * in_depth)


def _map_pool(op: Op, ctx: _Ctx) -> _Call:
    (inp,), out = _operands(op, ctx.graph)
    _int8(op, inp, out)
    if len(inp.shape) != 4 or inp.zero_point != out.zero_point or np.float32(inp.scale) != np.float32(out.scale):
        raise NotMapped(f"{op.name} (not 4-D, or input and output quantization differ)")
    n, in_h, in_w, c = inp.shape
    _, out_h, out_w, _ = out.shape
    f_hw = (op.options.get("filter_height", 1), op.options.get("filter_width", 1))
    pad_h, pad_w = _window(op, (in_h, in_w), f_hw, (out_h, out_w))
    p = f"op{op.index}"
    params = {"stride": _tile(op.options.get("stride_w", 1), op.options.get("stride_h", 1)),
              "padding": _tile(pad_w, pad_h), "activation": _activation(op, out)}
    shapes = [_decl("cmsis_nn_pool_params", f"{p}_params", params), _dims(f"{p}_in", n, in_h, in_w, c),
              _dims(f"{p}_filter_dims", 1, f_hw[0], f_hw[1], 1), _dims(f"{p}_out", n, out_h, out_w, c)]
    average = op.name == "AVERAGE_POOL_2D"
    kernel = "arm_avgpool_s8" if average else "arm_max_pool_s8"
    sizer = f"arm_avgpool_s8_get_buffer_size{'_dsp' if ctx.dsp else ''}({out_w}, {c})" if average else None
    return _Call(op, kernel, shapes, [], lambda ptr: (
        f"{kernel}(&{p}_ctx, &{p}_params, &{p}_in, {ptr(op.inputs[0])}, &{p}_filter_dims, &{p}_out, "
        f"{ptr(op.outputs[0])})"), sizer)


def _map_softmax(op: Op, ctx: _Ctx) -> _Call:
    (inp,), out = _operands(op, ctx.graph)
    _int8(op, inp, out)
    if out.zero_point != -128 or np.float32(out.scale) != np.float32(1 / 256):
        raise NotMapped(f"{op.name} (output not scale 1/256, zero point -128)")
    mult, shift, diff_min = requant.softmax_params(op.options.get("beta", 1.0), inp.scale)
    depth = inp.shape[-1]
    return _Call(op, "arm_softmax_s8", [], [], lambda ptr: (
        f"arm_softmax_s8({ptr(op.inputs[0])}, {inp.size // depth}, {depth}, {c_int(mult)}, {shift}, "
        f"{c_int(diff_min)}, {ptr(op.outputs[0])})"), context=False, status=False)


def _map_add(op: Op, ctx: _Ctx) -> _Call:
    (a, b), out = _operands(op, ctx.graph)
    _int8(op, a, b, out)
    if a.shape != b.shape or a.shape != out.shape:
        raise NotMapped(f"{op.name} (broadcast)")  # TFLM's CMSIS-NN ADD falls back to reference here
    q = requant.add_params(a.scale, b.scale, out.scale)
    act = _activation(op, out)
    return _Call(op, "arm_elementwise_add_s8", [], [], lambda ptr: (
        f"arm_elementwise_add_s8({ptr(op.inputs[0])}, {ptr(op.inputs[1])}, {-a.zero_point}, "
        f"{c_int(q['input1_multiplier'])}, {q['input1_shift']}, {-b.zero_point}, {c_int(q['input2_multiplier'])}, "
        f"{q['input2_shift']}, {q['left_shift']}, {ptr(op.outputs[0])}, {out.zero_point}, "
        f"{c_int(q['output_multiplier'])}, {q['output_shift']}, {act['min']}, {act['max']}, {out.size})"),
        context=False)


def _map_pad(op: Op, ctx: _Ctx) -> _Call:
    (inp, pads, *rest), out = _operands(op, ctx.graph)
    _int8(op, inp, out)
    if len(inp.shape) != 4 or pads is None or not pads.is_constant or (rest and rest[0] is not None):
        raise NotMapped(f"{op.name} (not 4-D, or padding not constant, or a pad value given)")
    if inp.zero_point != out.zero_point or np.float32(inp.scale) != np.float32(out.scale):
        raise NotMapped(f"{op.name} (input and output quantization differ)")
    before, after = (tuple(int(v) for v in np.asarray(pads.data)[:, k]) for k in (0, 1))
    p = f"op{op.index}"
    shapes = [_dims(f"{p}_in", *inp.shape), _dims(f"{p}_pre", *before), _dims(f"{p}_post", *after)]
    return _Call(op, "arm_pad_s8", shapes, [], lambda ptr: (
        f"arm_pad_s8({ptr(op.inputs[0])}, {ptr(op.outputs[0])}, {out.zero_point}, &{p}_in, &{p}_pre, &{p}_post)"),
        context=False)


def _map_transpose(op: Op, ctx: _Ctx) -> _Call:
    (inp, perm), out = _operands(op, ctx.graph)
    _int8(op, inp, out)
    if len(inp.shape) != 4 or perm is None or not perm.is_constant:
        raise NotMapped(f"{op.name} (not 4-D or permutation not constant)")
    p = f"op{op.index}"
    shapes = [_dims(f"{p}_in", *inp.shape), _dims(f"{p}_out", *out.shape)]
    data = [_array(f"{p}_perm", "uint32_t", np.asarray(perm.data, np.uint32), "permutation"),
            _decl("cmsis_nn_transpose_params", f"{p}_params", {"num_dims": 4, "permutations": f"{p}_perm"})]
    return _Call(op, "arm_transpose_s8", shapes, data, lambda ptr: (
        f"arm_transpose_s8({ptr(op.inputs[0])}, {ptr(op.outputs[0])}, &{p}_in, &{p}_out, &{p}_params)"),
        context=False)


def _map_requantize(op: Op, ctx: _Ctx) -> _Call:
    """An int8 -> int8 QUANTIZE inside the graph (a requantize). CMSIS-NN has no requantize
    kernel (TFLM runs its reference one), so it runs as a 1x1 depthwise convolution with unit
    weights and QuantizeMultiplier(input_scale / output_scale) per channel: the same arithmetic
    as TFLite's Requantize, MultiplyByQuantizedMultiplier(x - input_zp) + output_zp, clamped."""
    (inp,), out = _operands(op, ctx.graph)
    _int8(op, inp, out)
    c = inp.shape[-1] if inp.shape else 1
    p, kernel = f"op{op.index}", "arm_depthwise_conv_wrapper_s8"
    mult, shift = requant.quantize_multiplier(float(inp.scale) / float(out.scale))
    params = {"input_offset": -inp.zero_point, "output_offset": out.zero_point, "ch_mult": 1,
              "stride": _tile(1, 1), "padding": _tile(0, 0), "dilation": _tile(1, 1),
              "activation": {"min": -128, "max": 127}}
    shapes = [_decl("cmsis_nn_dw_conv_params", f"{p}_params", params), _dims(f"{p}_in", 1, 1, inp.size // c, c),
              _dims(f"{p}_filter_dims", 1, 1, 1, c), _dims(f"{p}_bias_dims", 1, 1, 1, c),
              _dims(f"{p}_out", 1, 1, inp.size // c, c)]
    data = [_array(f"{p}_filter", "int8_t", np.ones(c, np.int8), "unit weights: a requantize"),
            _array(f"{p}_mult", "int32_t", np.full(c, mult), "QuantizeMultiplier(input_scale / output_scale)"),
            _array(f"{p}_shift", "int32_t", np.full(c, shift), "its shift"),
            _decl("cmsis_nn_per_channel_quant_params", f"{p}_quant",
                  {"multiplier": f"(int32_t *){p}_mult", "shift": f"(int32_t *){p}_shift"})]
    ctx.notes.append(f"op {op.index} QUANTIZE int8->int8 (requantize): no CMSIS-NN kernel; run as "
                     "arm_depthwise_conv_wrapper_s8 1x1 with unit weights (TFLite's Requantize arithmetic)")
    sizer = (f"{kernel}_get_buffer_size{'_dsp' if ctx.dsp else ''}(&{p}_params, &{p}_in, &{p}_filter_dims, "
             f"&{p}_out)")
    return _Call(op, kernel, shapes, data, lambda ptr: (
        f"{kernel}(&{p}_ctx, &{p}_params, &{p}_quant, &{p}_in, {ptr(op.inputs[0])}, &{p}_filter_dims, "
        f"{p}_filter, &{p}_bias_dims, NULL, &{p}_out, {ptr(op.outputs[0])})"), sizer)


MAPPERS: dict[str, Callable[[Op, _Ctx], _Call]] = {
    "CONV_2D": _map_conv, "DEPTHWISE_CONV_2D": _map_conv, "FULLY_CONNECTED": _map_fc,
    "AVERAGE_POOL_2D": _map_pool, "MAX_POOL_2D": _map_pool, "SOFTMAX": _map_softmax, "ADD": _map_add,
    "PAD": _map_pad, "TRANSPOSE": _map_transpose, "QUANTIZE": _map_requantize,
}


# ------------------------------------------------------------------ the graph's int8 core

def core_tensors(graph: Graph) -> tuple[int, int, list[Op]]:
    """The int8 core: its input and output tensors (past a leading QUANTIZE, before a trailing
    DEQUANTIZE) and the ops between them.

    Raises:
        NotMapped: not one input and one output.
    """
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise NotMapped(f"{len(graph.inputs)} inputs / {len(graph.outputs)} outputs (one of each is mapped)")
    core_in, core_out = graph.inputs[0], graph.outputs[0]
    skipped = []
    users = graph.consumers(core_in)
    if len(users) == 1 and users[0].name == "QUANTIZE" and graph.tensors[core_in].dtype == "float32":
        skipped.append(users[0])
        core_in = users[0].outputs[0]
    producer = graph.producer(core_out)
    if producer is not None and producer.name == "DEQUANTIZE" and graph.tensors[core_out].dtype == "float32":
        skipped.append(producer)
        core_out = producer.inputs[0]
    return core_in, core_out, [op for op in graph.ops if all(op is not s for s in skipped)]


# ------------------------------------------------------------------ CMSIS-NN sources and sizes

_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)
_FUNC_DEF = re.compile(r"^(?:[A-Za-z_][\w \t*]*?[ \t*])?([A-Za-z_]\w*)\s*\([^;{}]*\)\s*\{", re.M)
_VAR_DEF = re.compile(r"^(?:const\s+)?(?:[A-Za-z_]\w*\s+)+\**([A-Za-z_]\w*)\s*(?:\[[^\]]*\])+\s*=", re.M)


def needed_sources(cmsis_dir: Path, entry_points: set[str]) -> list[Path]:
    """The CMSIS-NN .c files the entry points need: the closure of 'file A uses a name that file
    B defines' over Source/ (float files left out), read from the text. Over-inclusive (names in
    #if branches for other cores count too), which only costs compile time: unused objects are not
    linked."""
    index: dict[Path, tuple[set[str], set[str]]] = {}
    for path in sorted((cmsis_dir / "Source").rglob("*.c")):
        if re.search(r"_(f16|f32|flt)\.c$", path.name):
            continue
        text = _COMMENT.sub(" ", path.read_text(errors="replace"))
        defined = set(_FUNC_DEF.findall(text)) | set(_VAR_DEF.findall(text))
        index[path] = (defined, set(re.findall(r"\b[A-Za-z_]\w*\b", text)))
    owners: dict[str, list[Path]] = {}
    for path, (defined, _) in index.items():
        for name in defined:
            owners.setdefault(name, []).append(path)
    chosen: set[Path] = set()
    todo = list(entry_points)
    while todo:
        name = todo.pop()
        paths = owners.get(name, [])
        if len(paths) != 1 or paths[0] in chosen:  # several owners: file-local (static) helpers
            continue
        chosen.add(paths[0])
        todo.extend(index[paths[0]][1])
    missing = [e for e in entry_points if len(owners.get(e, [])) != 1]
    if missing:
        raise FileNotFoundError(f"{cmsis_dir}: no single source defines {', '.join(sorted(missing))}")
    return sorted(chosen)


def buffer_sizes(cmsis_dir: Path, calls: list[_Call]) -> list[int]:
    """Each call's scratch bytes from CMSIS-NN's own get_buffer_size functions, compiled for and
    run on the host (their `_dsp` variants for the DSP path; the plain ones select the C path on a
    host, which defines neither ARM_MATH_DSP nor ARM_MATH_MVEI)."""
    sized = [c for c in calls if c.sizer]
    if not sized:
        return [0] * len(calls)
    lines = ["#include <stdio.h>", '#include "arm_nnfunctions.h"', ""]
    lines += [d for c in sized for d in c.shapes]
    lines += ["", "int main(void)", "{"] + [f'    printf("%ld\\n", (long)({c.sizer}));' for c in sized]
    lines += ["    return 0;", "}", ""]
    with tempfile.TemporaryDirectory(prefix="cmsis-nn-sizer-") as tmp:
        main, exe = Path(tmp, "sizer.c"), Path(tmp, "sizer")
        main.write_text("\n".join(lines))
        include = cmsis_dir / "Include"
        subprocess.run(["gcc", "-O1", "-std=c99", f"-I{include}", f"-I{include / 'Internal'}", str(main),
                        *(str(cmsis_dir / "Source" / s) for s in SIZER_SOURCES), "-o", str(exe)],
                       check=True, capture_output=True, text=True)
        values = iter(int(v) for v in subprocess.run([str(exe)], check=True, capture_output=True,
                                                     text=True).stdout.split())
    return [next(values) if c.sizer else 0 for c in calls]


# ------------------------------------------------------------------ the library

def generate_cmsis_library(tflite_bytes: bytes, name: str, out_dir: Path, cmsis_dir: Path, dsp: bool) -> CmsisLibrary:
    """Write the CMSIS-NN harness library for an int8 .tflite into `out_dir`.

    Args:
        tflite_bytes: the model (int8; float I/O allowed around an int8 core).
        name: library name (a C identifier).
        out_dir: folder to write into (a temporary folder: it receives CMSIS-NN's sources).
        cmsis_dir: the CMSIS-NN folder (Source/, Include/).
        dsp: the core has the DSP extension: size buffers for CMSIS-NN's DSP path, and make the
            build fail unless ARM_MATH_DSP is what CMSIS-NN's headers select (the C path
            otherwise; MVE never).

    Raises:
        NotMapped: ops without a mapping (all named), or not one input and one output.
    """
    graph = read_tflite(bytes(tflite_bytes), f"{name}.tflite")
    core_in, core_out, ops = core_tensors(graph)
    ctx = _Ctx(graph, dsp)
    calls, aliases = _map_ops(ctx, ops, core_out)
    for call, size in zip(calls, buffer_sizes(cmsis_dir, calls), strict=True):
        call.scratch = size
    plan = _plan(graph, calls, aliases, {core_in, core_out})
    header, source = _render(name, graph, calls, aliases, plan, core_in, core_out, dsp)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.h").write_text(header)
    (out_dir / f"{name}.c").write_text(source)
    kernels = [c.kernel for c in calls if c.kernel != "memcpy"]
    sources = needed_sources(cmsis_dir, set(kernels))
    # 'cmsis-nn' has a '-': its objects can never match elfsize's `<name>(_*)?.o` model objects,
    # so the breakdown counts CMSIS-NN as library code and the glue's arrays as weights
    for src in sources:
        target = out_dir / "cmsis-nn" / "Source" / src.relative_to(cmsis_dir / "Source")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
    shutil.copytree(cmsis_dir / "Include", out_dir / "cmsis-nn" / "Include", dirs_exist_ok=True)
    return CmsisLibrary(name, out_dir, "DSP" if dsp else "C", graph.tensors[core_in].size,
                        graph.tensors[core_out].size, plan.size, max((c.scratch for c in calls), default=0),
                        sum(c.macs for c in calls), kernels,
                        [str(s.relative_to(cmsis_dir / "Source")) for s in sources], core_in, core_out, ctx.notes)


def _map_ops(ctx: _Ctx, ops: list[Op], core_out: int) -> tuple[list[_Call], dict[int, int]]:
    """Every op as a call, and the tensors that are another's bytes (RESHAPE outputs).

    Raises:
        NotMapped: naming every op (and variant) without a mapping.
    """
    unmapped = sorted({op.name for op in ops if op.name not in MAPPERS and op.name not in ALIASES})
    if unmapped:
        raise NotMapped(", ".join(f"op {n} not mapped" for n in unmapped))
    aliases: dict[int, int] = {}
    calls: list[_Call] = []
    problems = set()
    for op in ops:
        if op.name in ALIASES:
            if op.outputs[0] != core_out:
                aliases[op.outputs[0]] = op.inputs[0]  # same bytes: no call at all
                continue
            size = ctx.graph.tensors[op.outputs[0]].size  # into the caller's buffer: a copy
            calls.append(_Call(op, "memcpy", [], [], lambda ptr, op=op, size=size: (
                f"memcpy({ptr(op.outputs[0])}, {ptr(op.inputs[0])}, {size})"), context=False, status=False))
            continue
        try:
            calls.append(MAPPERS[op.name](op, ctx))
        except NotMapped as exc:
            problems.add(f"op {exc} not mapped")
    if problems:
        raise NotMapped(", ".join(sorted(problems)))
    return calls, aliases


def _plan(graph: Graph, calls: list[_Call], aliases: dict[int, int], callers: set[int]) -> planner.ArenaPlan:
    """One arena for the activations (not the caller's buffers, not aliases) and each call's
    scratch buffer (alive during its call only), by edgeport's planner."""
    used = {t for c in calls for t in (*c.op.inputs, *c.op.outputs) if t >= 0}
    sizes = {t: graph.tensors[t].nbytes for t in used
             if not graph.tensors[t].is_constant and t not in callers and t not in aliases}
    lifetimes = planner.lifetimes([(c.op.inputs, c.op.outputs) for c in calls], sizes, aliases)
    lifetimes += [planner.Lifetime(_scratch_key(c), c.scratch, i, i) for i, c in enumerate(calls) if c.scratch]
    plan = planner.place(lifetimes)
    if planner.conflicts(lifetimes, plan):  # never measure a library that corrupts itself
        raise AssertionError(f"arena plan overlaps live buffers: {planner.conflicts(lifetimes, plan)}")
    return plan


def _scratch_key(call: _Call) -> int:
    return -1 - call.op.index  # tensor keys are >= 0


def _render(name: str, graph: Graph, calls: list[_Call], aliases: dict[int, int], plan: planner.ArenaPlan,
            core_in: int, core_out: int, dsp: bool) -> tuple[str, str]:
    """The header and the source of the glue."""
    consts: list[str] = []
    emitted: set[int] = set()

    def ptr(tensor: int) -> str:
        root = planner.resolve_alias(tensor, aliases)
        if root in (core_in, core_out):
            return "input" if root == core_in else "output"
        if graph.tensors[root].is_constant:  # a constant operand (say, of an ADD)
            if root not in emitted:
                emitted.add(root)
                consts.append(_array(f"t{root}", "int8_t", graph.tensors[root].data, graph.tensors[root].label))
            return f"t{root}"
        return f"(arena + {plan.offsets[root]})"

    body = []
    for c in calls:
        if c.context:
            buf = f"arena + {plan.offsets[_scratch_key(c)]}" if c.scratch else "NULL"
            c.data.append(f"static const cmsis_nn_context op{c.op.index}_ctx = {{{buf}, {c.scratch}}};")
        statement = c.call(ptr)
        body.append(f"    /* op {c.op.index} {c.op.name} */\n" + (
            f"    if ({statement} != ARM_CMSIS_NN_SUCCESS) {{\n        return {c.op.index + 1};\n    }}\n"
            if c.status else f"    {statement};\n"))
    upper = name.upper()
    # the glue sees the same macros as CMSIS-NN's sources (same headers, same flags): a build on
    # the wrong path fails here instead of being measured
    guard = ('#if !defined(ARM_MATH_DSP) || defined(ARM_MATH_MVEI)\n#error "CMSIS-NN: the DSP path was expected '
             '(ARM_MATH_DSP, from __ARM_FEATURE_DSP)"\n#endif' if dsp else
             '#if defined(ARM_MATH_DSP) || defined(ARM_MATH_MVEI)\n#error "CMSIS-NN: the plain C path was '
             'expected"\n#endif')
    header = "\n".join([
        f"/* {name}.h: CMSIS-NN harness library (edgeport benchmark, generated; not edgeport's). */",
        f"#ifndef {upper}_H", f"#define {upper}_H", "#include <stdint.h>",
        f"#define {upper}_INPUT_SIZE {graph.tensors[core_in].size}",
        f"#define {upper}_OUTPUT_SIZE {graph.tensors[core_out].size}", f"#define {upper}_ARENA_SIZE {plan.size}",
        f"int {name}_invoke(const int8_t *input, int8_t *output);", f"#endif /* {upper}_H */", ""])
    invoke = f"int {name}_invoke(const int8_t *input, int8_t *output)\n{{\n{''.join(body)}    return 0;\n}}\n"
    source = "\n".join([
        f"/* {name}.c: the int8 model as straight-line calls into Arm's CMSIS-NN ({'DSP' if dsp else 'C'} path), "
        "parameters", " * computed as TFLite Micro's CMSIS-NN kernels compute them. Generated by edgeport's",
        " * benchmarks/cmsis_nn_harness.py in a temporary folder; CMSIS-NN itself is Arm's (Apache-2.0). */",
        "#include <stddef.h>", "#include <stdint.h>", "#include <string.h>", "", f'#include "{name}.h"',
        '#include "arm_nnfunctions.h"', "", guard, "",
        f"static int8_t arena[{max(plan.size, 1)}] __attribute__((aligned(16)));", "",
        *[d for c in calls for d in c.shapes], "", *[d for c in calls for d in c.data], *consts, "", invoke])
    return header, source
