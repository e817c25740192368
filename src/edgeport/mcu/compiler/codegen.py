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
A model with several inputs or outputs takes one pointer per port, in the model's order
(`input0, input1, ..., output0, ...`), and also gets `<name>_invoke_packed` (every port back to
back in one input and one output buffer); `interface` has the details.

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

from edgeport.errors import InputError
from edgeport.mcu.compiler import planner
from edgeport.mcu.compiler.c_text import (  # noqa: F401  (sanitize_identifier: public here too)
    comment_text,
    identifier_note,
    render_array,
    render_struct,
    sanitize_identifier,
)
from edgeport.mcu.compiler.lowering import (
    Lowering,
    Ref,
    ScratchRef,
    Step,
)
from edgeport.mcu.compiler.lowering_compressed import (
    StorageLowering,
    storage_header,
    storage_source,
)
from edgeport.mcu.compiler.interface import Interface, Port, header, packed_source, read_interface, signature
from edgeport.mcu.compiler.lowering_islands import fold_float_islands
from edgeport.mcu.compiler.lowerings import lower_op
from edgeport.mcu.compiler.storage import WeightStorage
from edgeport.mcu.compiler.tflite_ir import Graph, Op, read_tflite

KERNEL_DIR = Path(__file__).parent / "kernels"
DSP_EMULATION = "ep_dsp_emulation.h"
FLOAT_MODEL_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


@dataclass
class LibraryInfo:
    """What `generate_library` wrote, and the numbers a report needs."""

    name: str
    files: list[Path]
    inputs: list[dict]               # per input, in order: name, shape, dtype (the model's), size,
    outputs: list[dict]              # and scale, zero_point of its int8 values in <name>_invoke
    input_size: int                  # elements of every input (the packed buffer's bytes)
    output_size: int
    arena_bytes: int                 # RAM besides the caller's input/output buffers
    weight_bytes: int                # const arrays: weights (as stored), biases, multipliers, shifts
    ops: dict[str, int]              # op name -> count in the model
    macs: int                        # multiply-accumulates per inference
    float_api: bool = False          # <name>_invoke_f32 exists
    source: str = ""
    notes: list[str] = field(default_factory=list)
    weight_storage: list[dict] = field(default_factory=list)  # per filter tensor: format, decode, bytes
    decoded_bytes: int = 0           # static RAM of weights decoded at init (<NAME>_DECODED_SIZE)
    tables: list[str] = field(default_factory=list)  # float ops computed as int8 tables (lowering_islands)

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


# ------------------------------------------------------------------ graph checks

def _check_int8(graph: Graph) -> None:
    for op in graph.ops:
        if op.name in FLOAT_MODEL_OPS:
            dtypes = {graph.tensors[i].dtype for i in op.inputs[:2] if i >= 0}
            if "float32" in dtypes or "float16" in dtypes:
                raise InputError(f"{graph.source} is a float model: the C library needs an int8 model — "
                                 "export with --quantize int8 or give an int8 .tflite "
                                 f"(op #{op.index} {op.name} reads {'/'.join(sorted(dtypes))})")


def _check_dataflow(graph: Graph, ops: list[Op], io: Interface) -> None:
    """Every tensor an op reads is a constant, a core input, or written by an earlier op."""
    written = set(io.core_inputs)
    for op in ops:
        for index in op.inputs:
            if index >= 0 and index not in written and not graph.tensors[index].is_constant:
                raise InputError(f"{graph.source}: {op.name} at {graph.node_label(op)} reads "
                                 f"'{graph.tensors[index].label}', which no earlier op writes")
        written.update(op.outputs)
    for index in sorted(io.core_outputs - written):
        raise InputError(f"{graph.source}: no op writes the output '{graph.tensors[index].label}'")


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


def _source(name: str, graph: Graph, io: Interface, ctx: Lowering, steps: list[Step], boundary: list[Step],
            plan: planner.ArenaPlan, banner: str, storage=((), "", "")) -> str:
    upper = name.upper()
    params = {p.core: n for ports, end in ((io.inputs, "input"), (io.outputs, "output"))
              for p, n in zip(ports, io.names(end))}
    core = _Renderer(graph, ctx, plan, params)
    counts = Counter(step.op.name for step in steps + boundary)
    out = [banner, f" * Ops: {', '.join(f'{n} x{c}' for n, c in counts.items())}.", " */",
           "#include <stddef.h>", "#include <stdint.h>", "", f'#include "{name}.h"', '#include "ep_kernels.h"', ""]
    if plan.size:
        out += [f"static int8_t arena[{upper}_ARENA_SIZE] EP_ALIGN16;", ""]
    buffers, init, first = storage
    out += [*buffers, *(render_array(a) for a in ctx.arrays.values())]
    out += [render_struct(s) for step in steps + boundary for s in step.structs]
    out += [init] if init else []
    body = "".join(core.statement(step) for step in steps)
    unused = [f"    (void){p};\n" for p in params.values() if not re.search(rf"\b{p}\b", body)]
    out += [f"{signature(name, io)}\n{{\n{first}{''.join(unused)}{body}    return 0;\n}}\n"]
    if io.packed:
        out += [packed_source(name, graph, io)]
    if boundary:
        # the f32 entry point: each converted port's int8 values in the arena, the others the caller's
        places = {p.graph: n for ports, end in ((io.inputs, "input"), (io.outputs, "output"))
                  for p, n in zip(ports, io.names(end))}
        places.update({p.core: f"(arena + {plan.offsets[p.core]})" if p.convert is not None else places[p.graph]
                       for p in (*io.inputs, *io.outputs)})
        outer = _Renderer(graph, ctx, plan, places)
        pre = "".join(outer.statement(s) for s in boundary if any(s.op is p.convert for p in io.inputs))
        post = "".join(outer.statement(s) for s in boundary if any(s.op is p.convert for p in io.outputs))
        args = ", ".join(places[p.core] for p in (*io.inputs, *io.outputs))
        call = f"    (void){name}_invoke({args});\n"
        out += [f"{signature(name, io, float_api=True)}\n{{\n{pre}{call}{post}    return 0;\n}}\n"]
    return "\n".join(out)


def scratch_key(op: Op) -> int:
    """The planner's key for an op's scratch buffer (tensor keys are >= 0)."""
    return -1 - op.index


def _plan(graph: Graph, io: Interface, ctx: Lowering, steps: list[Step]) -> planner.ArenaPlan:
    ops = [step.op for step in steps]
    # a converted port's int8 values live in the arena (`<name>_invoke_f32` converts them there)
    in_arena = {p.core for p in (*io.inputs, *io.outputs) if p.convert is not None}
    callers = (io.core_inputs | io.core_outputs) - in_arena
    used = {i for op in ops for i in op.inputs + op.outputs if i >= 0}
    sizes = {i: graph.tensors[i].nbytes for i in used | in_arena
             if not graph.tensors[i].is_constant and i not in callers and i not in ctx.aliases}
    lifetimes = planner.lifetimes([(op.inputs, op.outputs) for op in ops], sizes, ctx.aliases,
                                  frozenset(in_arena & io.core_inputs), frozenset(in_arena & io.core_outputs))
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
    model = read_tflite(tflite_bytes, source)
    _check_int8(model)
    graph, island_notes = fold_float_islands(model, frozenset(model.outputs))
    io = read_interface(graph)
    ops = [op for op in graph.ops if not any(op is c for c in io.conversions)]
    packing = storage is not None and storage.compresses
    ends = io.core_outputs, io.core_inputs
    ctx = StorageLowering(graph, *ends, storage) if packing else Lowering(graph, *ends)
    steps = [lower_op(op, graph, ctx) for op in ops]
    boundary = [lower_op(op, graph, ctx) for op in io.conversions]
    _check_dataflow(graph, ops, io)
    plan = _plan(graph, io, ctx, steps)

    digest = hashlib.sha256(bytes(tflite_bytes)).hexdigest()
    what = f"{source} as a standalone C library (no interpreter)"
    extra = {"storage": storage_header(name, ctx)} if packing else {}
    text = header(name, graph, io, plan.size, _banner(f"{name}.h", what, source, digest, __version__, names),
                     **extra)
    extra = {"storage": storage_source(name, ctx)} if packing else {}
    body = _source(name, graph, io, ctx, steps, boundary, plan,
                   _banner(f"{name}.c", what, source, digest, __version__, names), **extra)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.h").write_text(text)
    (out_dir / f"{name}.c").write_text(body)
    files = [out_dir / f"{name}.h", out_dir / f"{name}.c", *_copy_kernels(out_dir)]
    return LibraryInfo(
        name=name, files=files, inputs=[_port_info(graph, p) for p in io.inputs],
        outputs=[_port_info(graph, p) for p in io.outputs],
        input_size=sum(graph.tensors[p.core].size for p in io.inputs),
        output_size=sum(graph.tensors[p.core].size for p in io.outputs), arena_bytes=plan.size,
        weight_bytes=sum(a.nbytes for a in ctx.arrays.values()), ops=dict(Counter(op.name for op in model.ops)),
        macs=sum(step.macs for step in steps), float_api=bool(boundary), source=source,
        notes=list(ctx.notes), tables=island_notes, weight_storage=list(ctx.weight_storage),
        decoded_bytes=ctx.decoded_size if packing else 0)


def _port_info(graph: Graph, port: Port) -> dict:
    shown, core = graph.tensors[port.graph], graph.tensors[port.core]
    return {"name": shown.label, "shape": list(shown.shape), "dtype": shown.dtype, "size": core.size,
            "scale": float(core.scale), "zero_point": int(core.zero_point)}


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
