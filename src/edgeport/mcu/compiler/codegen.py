"""Standalone C library (no interpreter) and C array from an int8 .tflite.

`generate_library` writes `<name>.h`, `<name>.c` and the kernel sources (`ep_*.c/h`, the
same for every library):

    int <name>_invoke(const int8_t *input, int8_t *output);    /* always: int8 in, int8 out */
    int <name>_invoke_f32(const float *input, float *output);  /* models with float I/O only */

`<name>_invoke` runs the model's int8 core. A model whose input is float (a leading QUANTIZE)
or whose output is float (a trailing DEQUANTIZE) also gets `<name>_invoke_f32`, which takes
the model's own I/O types (float where the model's I/O is float) and quantizes/dequantizes
around `<name>_invoke` exactly as the model's QUANTIZE/DEQUANTIZE ops. The header's
`<NAME>_INPUT_SCALE`/`_ZERO_POINT` describe the int8 input and output of `<name>_invoke`.

All weights, biases and requantization tables are `static const` (flash); activations live in
one static, 16-byte aligned arena laid out by `planner`; the op sequence is
straight-line calls into the kernels. Not reentrant: one invoke at a time per library.

With a `WeightStorage` (`storage`), weight tensors are stored compressed (palette,
CSR, Huffman; `lowering_compressed`), binary / ternary ones packed to 1 or 2 bits
and computed without multiplies (`lowbit`; `lowering_lowbit`), and the library also
has `int <name>_init(void)`, which decodes the tensors decoded once (decode="init") into a static buffer of
`<NAME>_DECODED_SIZE` bytes; `<name>_invoke` calls it first if the caller did not.

`<name>` is the model's name made a valid C identifier (`sanitize_identifier`: "1kws" gives
`m_1kws`); the banner of each file states the mapping when the name had to change.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgeport.errors import InputError
from edgeport.mcu.compiler import planner
from edgeport.mcu.compiler.lowering import (
    STRUCT_FIELDS,
    CArray,
    CStruct,
    Lowering,
    Ref,
    ScratchRef,
    Step,
    unsupported,
)
from edgeport.mcu.compiler.lowering_compressed import (
    StorageLowering,
    storage_header,
    storage_source,
)
from edgeport.mcu.compiler.lowerings import lower_op
from edgeport.mcu.compiler.storage import WeightStorage
from edgeport.mcu.compiler.tflite_ir import Graph, Op, read_tflite

KERNEL_DIR = Path(__file__).parent / "kernels"
DSP_EMULATION = "ep_dsp_emulation.h"
FLOAT_MODEL_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
_PER_LINE = {"int8_t": 16, "uint8_t": 16, "int32_t": 8, "uint32_t": 6, "uint64_t": 4, "float": 6, "double": 4}


@dataclass
class LibraryInfo:
    """What `generate_library` wrote, and the numbers a report needs."""

    name: str
    files: list[Path]
    input_shape: tuple[int, ...]
    input_dtype: str                 # the model's input type (int8 or float32)
    input_size: int                  # elements
    output_shape: tuple[int, ...]
    output_dtype: str
    output_size: int
    arena_bytes: int                 # RAM besides the caller's input/output buffers
    weight_bytes: int                # const arrays: weights (as stored), biases, multipliers, shifts
    ops: dict[str, int]              # op name -> count in the model
    macs: int                        # multiply-accumulates per inference
    input_quantization: tuple[float, int]   # scale, zero point of <name>_invoke's int8 input
    output_quantization: tuple[float, int]
    float_api: bool = False          # <name>_invoke_f32 exists
    source: str = ""
    notes: list[str] = field(default_factory=list)
    weight_storage: list[dict] = field(default_factory=list)  # per filter tensor: format, decode, bytes
    decoded_bytes: int = 0           # static RAM of weights decoded at init (<NAME>_DECODED_SIZE)

    @property
    def ram_bytes(self) -> int:
        """Arena, weights decoded at init, and the int8 input and output buffers of `<name>_invoke`:
        the RAM a caller needs, comparable with a TFLite Micro arena (which holds the I/O tensors)."""
        return self.arena_bytes + self.decoded_bytes + self.input_size + self.output_size

    def to_dict(self) -> dict:
        data = asdict(self)
        data["files"] = [str(p) for p in self.files]
        data["ram_bytes"] = self.ram_bytes
        return data


@dataclass
class _Interface:
    """The graph's input/output and the int8 core `<name>_invoke` runs between them."""

    graph_input: int
    graph_output: int
    core_input: int
    core_output: int
    quantize: Op | None = None      # float graph input -> int8 core input
    dequantize: Op | None = None    # int8 core output -> float graph output


# ------------------------------------------------------------------ small pure helpers

def sanitize_identifier(name: str) -> str:
    """The C identifier every name of a library starts with, from any model name.

    Characters other than ASCII letters, digits and '_' become '_'; runs of '_' become one and
    trailing ones go (`<name>_invoke` must not hold '__', reserved in C++); a name starting with
    a digit gets the prefix 'm_' and one starting with '_' (reserved at file scope in C) the
    prefix 'm': "1kws" -> "m_1kws", "my model.v2" -> "my_model_v2", "_net" -> "m_net".
    """
    ident = re.sub(r"_+", "_", re.sub(r"[^0-9A-Za-z_]", "_", name.strip())).rstrip("_")
    if not ident:
        raise InputError(f"'{name}' cannot be made into a C identifier")
    if ident[0].isdigit():
        return f"m_{ident}"
    return f"m{ident}" if ident[0] == "_" else ident


def identifier_note(name: str, ident: str) -> list[str]:
    """Banner lines saying how a model name became the library's C identifier (none if unchanged)."""
    if name == ident:
        return []
    return [f" * C names start with '{ident}' (upper case '{ident.upper()}'): the model name "
            f"'{comment_text(name, 40)}' is not a valid C identifier."]


def c_float(value) -> str:
    """A float32 as a C float literal that reads back to the same float32."""
    value = float(np.float32(value))
    if not np.isfinite(value):
        raise ValueError(f"{value} has no C float literal")
    text = f"{value:.9g}"
    if not any(c in text for c in ".e"):
        text += ".0"
    return text + "f"


def c_double(value) -> str:
    """A double as a C literal that reads back to the same double."""
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{value} has no C double literal")
    text = repr(value)
    return text if any(c in text for c in ".e") else text + ".0"


def c_int(value: int) -> str:
    """An int32 as a C literal (INT32_MIN spelled so that it stays an int)."""
    value = int(value)
    return "(-2147483647 - 1)" if value == -(1 << 31) else str(value)


def c_define(value: int) -> str:
    """An integer for a #define: negative values parenthesized."""
    text = c_int(value)
    return f"({text})" if int(value) < 0 and not text.startswith("(") else text


def comment_text(text: str, limit: int = 72) -> str:
    """Text safe inside a C comment: ASCII, one line, no comment delimiters, shortened."""
    text = "".join(c if 32 <= ord(c) < 127 else "?" for c in text).replace("*/", "* /").replace("/*", "/ *")
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _values(values: np.ndarray, ctype: str) -> str:
    per_line = _PER_LINE[ctype]
    if ctype in ("float", "double"):
        items = [(c_float if ctype == "float" else c_double)(v) for v in values]
    elif ctype == "uint64_t":
        items = [f"{int(v)}ull" for v in values.tolist()]
    elif ctype == "uint32_t":  # bit masks (low-bit weights): hex shows the bits
        items = [f"0x{int(v):08x}u" for v in values.tolist()]
    else:
        items = [c_int(v) for v in values.astype(np.int64).tolist()]
    lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
    return ",\n".join(f"    {line}" for line in lines)


def _render_array(array: CArray) -> str:
    if array.ctype in STRUCT_FIELDS:  # one {field, ...} per row
        rows = ",\n".join("    {" + ", ".join(c_int(v) for v in row) + "}" for row in array.values.tolist())
        fields = ", ".join(STRUCT_FIELDS[array.ctype])
        return (f"/* {comment_text(array.comment)} */\n/* {{{fields}}} */\n"
                f"static const {array.ctype} {array.name}[{len(array.values)}] = {{\n{rows}\n}};\n")
    return (f"/* {comment_text(array.comment)} */\n"
            f"static const {array.ctype} {array.name}[{max(array.values.size, 1)}] = {{\n"
            f"{_values(array.values, array.ctype) if array.values.size else '    0'}\n}};\n")


def _field(value) -> str:
    if isinstance(value, str):  # a C expression: an array's name, NULL
        return value
    if isinstance(value, (list, tuple)):
        return "{" + (", ".join(_field(v) for v in value) if len(value) else "0") + "}"
    if isinstance(value, (float, np.floating)):
        return c_float(value)
    return c_int(value)


def _render_struct(struct: CStruct) -> str:
    parts = [f".{key} = {_field(value)}" for key, value in struct.fields.items()]
    lines: list[list[str]] = [[]]
    for part in parts:
        if lines[-1] and sum(len(p) + 2 for p in lines[-1]) + len(part) > 100:
            lines.append([])
        lines[-1].append(part)
    body = ",\n".join("    " + ", ".join(line) for line in lines)
    return f"static const {struct.ctype} {struct.name} = {{\n{body}\n}};\n"


# ------------------------------------------------------------------ graph checks

def _check_int8(graph: Graph) -> None:
    for op in graph.ops:
        if op.name in FLOAT_MODEL_OPS:
            dtypes = {graph.tensors[i].dtype for i in op.inputs[:2] if i >= 0}
            if "float32" in dtypes or "float16" in dtypes:
                raise InputError(f"{graph.source} is a float model: the C library needs an int8 model — "
                                 "export with --quantize int8 or give an int8 .tflite "
                                 f"(op #{op.index} {op.name} reads {'/'.join(sorted(dtypes))})")


def _interface(graph: Graph) -> _Interface:
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise InputError(f"{graph.source}: {len(graph.inputs)} inputs and {len(graph.outputs)} outputs; the C "
                         "library supports one input and one output")
    (gin,), (gout,) = graph.inputs, graph.outputs
    io = _Interface(gin, gout, gin, gout)
    tin, tout = graph.tensors[gin], graph.tensors[gout]
    if tin.dtype == "float32":
        users = graph.consumers(gin)
        for user in users:  # a float op reading the input: no kernel for it
            if user.name != "QUANTIZE" or graph.tensors[user.outputs[0]].dtype != "int8":
                raise unsupported(user, graph, "float32")
        if len(users) != 1:
            raise InputError(f"{graph.source}: the float input '{tin.label}' feeds {len(users)} QUANTIZE ops; "
                             "the C library supports one")
        io.quantize, io.core_input = users[0], users[0].outputs[0]
    if tout.dtype == "float32":
        maker = graph.producer(gout)
        if maker is None:
            raise InputError(f"{graph.source}: no op writes the output '{tout.label}'")
        if maker.name != "DEQUANTIZE" or graph.tensors[maker.inputs[0]].dtype != "int8":
            raise unsupported(maker, graph, "float32")  # a float op computes the output
        io.dequantize, io.core_output = maker, maker.inputs[0]
    for end, index in (("input", io.core_input), ("output", io.core_output)):
        tensor = graph.tensors[index]
        if tensor.dtype != "int8" or not tensor.quantized or tensor.per_channel:
            raise InputError(f"{graph.source}: the {end} '{tensor.label}' is {tensor.dtype}; the C library takes "
                             "int8 (per-tensor quantized) or float32 input and output")
    if io.core_input == io.core_output:
        raise InputError(f"{graph.source}: the output is the input; there is nothing to compute")
    return io


def _check_dataflow(graph: Graph, ops: list[Op], io: _Interface) -> None:
    """Every tensor an op reads is a constant, the core input, or written by an earlier op."""
    written = {io.core_input}
    for op in ops:
        for index in op.inputs:
            if index >= 0 and index not in written and not graph.tensors[index].is_constant:
                raise InputError(f"{graph.source}: {op.name} at {graph.node_label(op)} reads "
                                 f"'{graph.tensors[index].label}', which no earlier op writes")
        written.update(op.outputs)
    if io.core_output not in written:
        raise InputError(f"{graph.source}: no op writes the output '{graph.tensors[io.core_output].label}'")


# ------------------------------------------------------------------ the C sources

class _Renderer:
    """Turns Steps into C once tensors have places: const, caller pointer or arena offset."""

    def __init__(self, graph: Graph, ctx: Lowering, plan: planner.ArenaPlan, places: dict[int, str]):
        self.graph, self.ctx, self.plan, self.places = graph, ctx, plan, places

    def pointer(self, index: int) -> str:
        root = planner.resolve_alias(index, self.ctx.aliases)
        if root in self.places:
            return self.places[root]
        tensor = self.graph.tensors[root]
        if tensor.is_constant:
            return self.ctx.const(root)
        offset = self.plan.offsets[root]
        return f"(float *)(void *)(arena + {offset})" if tensor.dtype == "float32" else f"(arena + {offset})"

    def _part(self, part, op: Op) -> str:
        if isinstance(part, Ref):
            return self.pointer(part.tensor)
        if isinstance(part, ScratchRef):
            return f"(arena + {self.plan.offsets[scratch_key(op)]})"
        return part

    def statement(self, step: Step) -> str:
        op = step.op

        def describe(index: int) -> str:
            tensor = self.graph.tensors[index]
            return f"{comment_text(tensor.label, 40)} {list(tensor.shape)}"

        flow = f"{describe(op.inputs[0])} -> {describe(op.outputs[0])}" if op.inputs and op.outputs else ""
        code = "".join(self._part(part, op) for part in step.code)
        return f"    /* op {op.index} {op.name}: {flow} */\n    {code}\n"


def _banner(filename: str, what: str, source: str, digest: str, version: str, names: list[str] = ()) -> str:
    """The opening lines of a generated file's comment (the caller adds lines and closes it);
    `names`: `identifier_note` lines."""
    return (f"/*\n * {filename}: {comment_text(what, 90)}\n"
            f" * Generated by edgeport {version} from {comment_text(source, 60)} (sha256 {digest[:16]}).\n"
            + "".join(f"{line}\n" for line in names) + " * Do not edit: regenerate it.\n *")


def _header(name: str, graph: Graph, io: _Interface, arena: int, banner: str, storage=((), ())) -> str:
    upper, tin, tout = name.upper(), graph.tensors[io.core_input], graph.tensors[io.core_output]
    gin, gout = graph.tensors[io.graph_input], graph.tensors[io.graph_output]
    float_api = io.quantize is not None or io.dequantize is not None
    in_t = "float" if io.quantize else "int8_t"
    out_t = "float" if io.dequantize else "int8_t"
    lines = [banner,
             f" * Input:  {gin.dtype} {list(gin.shape)}; output: {gout.dtype} {list(gout.shape)}.",
             f" * int8 values are real = (q - ZERO_POINT) * SCALE with the {upper}_INPUT_/OUTPUT_ defines.",
             f" * RAM: {upper}_ARENA_SIZE bytes (a static arena in {name}.c) plus the caller's buffers.",
             " * Not reentrant: one invoke at a time. Input and output buffers must not overlap.",
             " */",
             f"#ifndef {upper}_H", f"#define {upper}_H", "", "#include <stdint.h>", "",
             "#ifdef __cplusplus", 'extern "C" {', "#endif", "",
             f"#define {upper}_INPUT_SIZE {tin.size}", f"#define {upper}_OUTPUT_SIZE {tout.size}",
             f"#define {upper}_ARENA_SIZE {arena}", *storage[0],
             f"#define {upper}_INPUT_SCALE {c_float(tin.scale)}", f"#define {upper}_INPUT_ZERO_POINT {c_define(tin.zero_point)}",
             f"#define {upper}_OUTPUT_SCALE {c_float(tout.scale)}",
             f"#define {upper}_OUTPUT_ZERO_POINT {c_define(tout.zero_point)}", "",
             f"/* Run the model on {upper}_INPUT_SIZE int8 values, write {upper}_OUTPUT_SIZE int8 values. Returns 0. */",
             f"int {name}_invoke(const int8_t *input, int8_t *output);", "", *storage[1]]
    if float_api:
        lines += [f"/* The same with the model's own I/O types ({gin.dtype} in, {gout.dtype} out), quantized and",
                  " * dequantized as the model's QUANTIZE/DEQUANTIZE ops do. Returns 0. */",
                  f"int {name}_invoke_f32(const {in_t} *input, {out_t} *output);", ""]
    lines += ["#ifdef __cplusplus", "}", "#endif", "", f"#endif /* {upper}_H */", ""]
    return "\n".join(lines)


def _source(name: str, graph: Graph, io: _Interface, ctx: Lowering, steps: list[Step], boundary: list[Step],
            plan: planner.ArenaPlan, banner: str, storage=((), "", "")) -> str:
    upper = name.upper()
    core = _Renderer(graph, ctx, plan, {io.core_input: "input", io.core_output: "output"})
    counts = Counter(step.op.name for step in steps + boundary)
    out = [banner, f" * Ops: {', '.join(f'{n} x{c}' for n, c in counts.items())}.", " */",
           "#include <stddef.h>", "#include <stdint.h>", "", f'#include "{name}.h"', '#include "ep_kernels.h"', ""]
    if plan.size:
        out += [f"static int8_t arena[{upper}_ARENA_SIZE] EP_ALIGN16;", ""]
    buffers, init, first = storage
    out += [*buffers, *(_render_array(a) for a in ctx.arrays.values())]
    out += [_render_struct(s) for step in steps + boundary for s in step.structs]
    out += [init] if init else []
    body = "".join(core.statement(step) for step in steps)
    unused = [f"    (void){p};\n" for p in ("input", "output") if not re.search(rf"\b{p}\b", body)]
    out += [f"int {name}_invoke(const int8_t *input, int8_t *output)\n{{\n{first}{''.join(unused)}{body}    return 0;\n}}\n"]
    if boundary:
        in_t = "float" if io.quantize else "int8_t"
        out_t = "float" if io.dequantize else "int8_t"
        places = {io.graph_input: "input", io.graph_output: "output"}
        for end, index in (("input", io.core_input), ("output", io.core_output)):
            places[index] = f"(arena + {plan.offsets[index]})" if index in plan.offsets else end
        outer = _Renderer(graph, ctx, plan, places)
        pre = "".join(outer.statement(s) for s in boundary if s.op is io.quantize)
        post = "".join(outer.statement(s) for s in boundary if s.op is io.dequantize)
        call = f"    (void){name}_invoke({places[io.core_input]}, {places[io.core_output]});\n"
        out += [f"int {name}_invoke_f32(const {in_t} *input, {out_t} *output)\n{{\n{pre}{call}{post}    return 0;\n}}\n"]
    return "\n".join(out)


def scratch_key(op: Op) -> int:
    """The planner's key for an op's scratch buffer (tensor keys are >= 0)."""
    return -1 - op.index


def _plan(graph: Graph, io: _Interface, ctx: Lowering, steps: list[Step]) -> planner.ArenaPlan:
    ops = [step.op for step in steps]
    in_arena = {io.core_input} if io.quantize else set()
    in_arena |= {io.core_output} if io.dequantize else set()
    callers = {io.core_input, io.core_output} - in_arena
    used = {i for op in ops for i in op.inputs + op.outputs if i >= 0}
    sizes = {i: graph.tensors[i].nbytes for i in used | in_arena
             if not graph.tensors[i].is_constant and i not in callers and i not in ctx.aliases}
    lifetimes = planner.lifetimes([(op.inputs, op.outputs) for op in ops], sizes, ctx.aliases,
                                  frozenset(in_arena & {io.core_input}), frozenset(in_arena & {io.core_output}))
    lifetimes += [planner.Lifetime(scratch_key(step.op), step.scratch, i, i) for i, step in enumerate(steps)
                  if step.scratch]
    plan = planner.place(lifetimes)
    if planner.conflicts(lifetimes, plan):  # a planner bug must never become silent corruption
        raise AssertionError(f"arena plan overlaps live tensors: {planner.conflicts(lifetimes, plan)}")
    return plan


def _copy_kernels(out_dir: Path) -> list[Path]:
    files = []
    for source in sorted(KERNEL_DIR.glob("ep_*.[ch]")):
        if source.name == DSP_EMULATION:  # for edgeport's host tests only
            continue
        target = out_dir / source.name
        shutil.copyfile(source, target)
        files.append(target)
    return files


def generate_library(tflite_bytes: bytes, name: str, out_dir: Path, *, source: str | None = None,
                     storage: WeightStorage | None = None) -> LibraryInfo:
    """Write a standalone C library for an int8 .tflite model.

    Args:
        tflite_bytes: the .tflite file's content (int8 model; float input/output allowed
            around an int8 core).
        name: library name (the model's); made a C identifier (`sanitize_identifier`) for file,
            function and macro names, and the header says so when it changed.
        out_dir: folder to write `<name>.h`, `<name>.c` and the kernel sources into.
        source: the model's file name, for the banner and error messages.
        storage: how to store the weight tensors (palette, CSR, Huffman; decoded by the kernels or
            once at init; binary / ternary filters packed to 1 or 2 bits); None, or one that
            compresses nothing: dense int8 arrays.

    Returns:
        LibraryInfo with the files, I/O, arena and flash figures, and per weight tensor its
        storage (`weight_storage`); `weight_bytes` counts the const arrays as stored.

    Raises:
        InputError: unreadable file, float model, unsupported interface.
        UnsupportedOpError: an op without a C kernel (raised before any file is written).
    """
    from edgeport import __version__

    model_name, name = name, sanitize_identifier(name)
    names = identifier_note(model_name, name)
    if any((KERNEL_DIR / f"{name}{ext}").exists() for ext in (".c", ".h")):
        raise InputError(f"library name '{name}' is taken by a kernel source file; choose another")
    source = source or f"{name}.tflite"
    graph = read_tflite(tflite_bytes, source)
    _check_int8(graph)
    io = _interface(graph)
    ops = [op for op in graph.ops if op is not io.quantize and op is not io.dequantize]
    ends = frozenset({io.core_output}), frozenset({io.core_input})
    packing = storage is not None and storage.compresses
    ctx = StorageLowering(graph, *ends, storage) if packing else Lowering(graph, *ends)
    steps = [lower_op(op, graph, ctx) for op in ops]
    boundary = [lower_op(op, graph, ctx) for op in (io.quantize, io.dequantize) if op is not None]
    _check_dataflow(graph, ops, io)
    plan = _plan(graph, io, ctx, steps)

    digest = hashlib.sha256(bytes(tflite_bytes)).hexdigest()
    what = f"{source} as a standalone C library (no interpreter)"
    extra = {"storage": storage_header(name, ctx)} if packing else {}
    header = _header(name, graph, io, plan.size, _banner(f"{name}.h", what, source, digest, __version__, names),
                     **extra)
    extra = {"storage": storage_source(name, ctx)} if packing else {}
    body = _source(name, graph, io, ctx, steps, boundary, plan,
                   _banner(f"{name}.c", what, source, digest, __version__, names), **extra)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.h").write_text(header)
    (out_dir / f"{name}.c").write_text(body)
    files = [out_dir / f"{name}.h", out_dir / f"{name}.c", *_copy_kernels(out_dir)]
    tin, tout = graph.tensors[io.core_input], graph.tensors[io.core_output]
    gin, gout = graph.tensors[io.graph_input], graph.tensors[io.graph_output]
    return LibraryInfo(
        name=name, files=files, input_shape=gin.shape, input_dtype=gin.dtype, input_size=gin.size,
        output_shape=gout.shape, output_dtype=gout.dtype, output_size=gout.size, arena_bytes=plan.size,
        weight_bytes=sum(a.nbytes for a in ctx.arrays.values()), ops=dict(Counter(op.name for op in graph.ops)),
        macs=sum(step.macs for step in steps), input_quantization=(float(tin.scale), tin.zero_point),
        output_quantization=(float(tout.scale), tout.zero_point), float_api=bool(boundary), source=source,
        notes=list(ctx.notes), weight_storage=list(ctx.weight_storage),
        decoded_bytes=ctx.decoded_size if packing else 0)


def generate_c_array(tflite_bytes: bytes, name: str, out_dir: Path, *, source: str | None = None) -> list[Path]:
    """Write `<name>_data.c/.h`: the .tflite as a 16-byte aligned const array for TFLite Micro.

    Args:
        tflite_bytes: the .tflite file's content.
        name: array name stem; sanitized into a C identifier (`<name>_data`, `<name>_data_len`).
        out_dir: folder to write into.
        source: the model's file name, for the banner.

    Returns:
        The paths of the .c and .h files.
    """
    from edgeport import __version__

    data = bytes(tflite_bytes)
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise InputError(f"{source or name}: not a .tflite file (no TFL3 flatbuffer identifier)")
    stem = sanitize_identifier(name)
    ident = f"{stem}_data"
    upper = ident.upper()
    source = source or f"{name}.tflite"
    banner = _banner(f"{ident}.h", f"{source} ({len(data)} bytes) as a C array for TensorFlow Lite Micro",
                     source, hashlib.sha256(data).hexdigest(), __version__, identifier_note(name, stem))
    header = "\n".join([banner + "/", f"#ifndef {upper}_H", f"#define {upper}_H", "",
                        "#ifdef __cplusplus", 'extern "C" {', "#endif", "",
                        f"extern const unsigned char {ident}[];", f"extern const unsigned int {ident}_len;", "",
                        "#ifdef __cplusplus", "}", "#endif", "", f"#endif /* {upper}_H */", ""])
    rows = [", ".join(f"0x{b:02x}" for b in data[i:i + 12]) for i in range(0, len(data), 12)]
    body = "\n".join([banner.replace(f"{ident}.h:", f"{ident}.c:") + "/", f'#include "{ident}.h"', "",
                      "/* TFLite Micro reads the flatbuffer in place: keep it 16-byte aligned. */",
                      "#if defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L",
                      f"#define {upper}_ALIGN _Alignas(16)",
                      "#elif defined(__GNUC__) || defined(__clang__)",
                      f"#define {upper}_ALIGN __attribute__((aligned(16)))",
                      "#else", f"#define {upper}_ALIGN /* align by your compiler's means */", "#endif", "",
                      f"{upper}_ALIGN const unsigned char {ident}[] = {{",
                      ",\n".join(f"    {row}" for row in rows), "};", "",
                      f"const unsigned int {ident}_len = {len(data)}u;", ""])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{ident}.h").write_text(header)
    (out_dir / f"{ident}.c").write_text(body)
    return [out_dir / f"{ident}.c", out_dir / f"{ident}.h"]
