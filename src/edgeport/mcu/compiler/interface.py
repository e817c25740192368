"""The calling interface of a generated C library: its inputs and outputs, and the header.

A model has one or more inputs and outputs (in the .tflite subgraph's order, the order LiteRT
lists them in). Each is a `Port`: the graph tensor the caller sees and the int8 tensor the core
reads or writes; they differ when the model's input is float and a QUANTIZE makes the int8
tensor (or a DEQUANTIZE makes a float output), which `<name>_invoke_f32` then does for the caller.

    int <name>_invoke(const int8_t *input, int8_t *output);                 /* one input, one output */
    int <name>_invoke(const int8_t *input0, const int8_t *input1,           /* several: one pointer */
                      int8_t *output0, int8_t *output1, int8_t *output2);   /* per port, in order   */
    int <name>_invoke_packed(const int8_t *input, int8_t *output);          /* several: the ports   */
                                                                            /* back to back         */
The header documents each pointer (tensor name, shape, quantization) and defines its size,
scale and zero point; `<NAME>_INPUT_SIZE` / `<NAME>_OUTPUT_SIZE` are the totals, the sizes of the
packed buffers (test harnesses and the instruction counter call `<name>_invoke_packed`).
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeport.errors import InputError
from edgeport.mcu.compiler.c_text import c_define, c_float, comment_text
from edgeport.mcu.compiler.lowering import unsupported
from edgeport.mcu.compiler.tflite_ir import Graph, Op


@dataclass
class Port:
    """One input or output of the library."""

    graph: int               # the graph tensor (the model's own type)
    core: int                # the int8 tensor `<name>_invoke` reads or writes
    convert: Op | None = None  # QUANTIZE (input) or DEQUANTIZE (output) between them, if any


@dataclass
class Interface:
    """The library's inputs and outputs, in the model's order."""

    inputs: list[Port]
    outputs: list[Port]

    @property
    def conversions(self) -> list[Op]:
        """The QUANTIZE / DEQUANTIZE ops `<name>_invoke_f32` runs around the int8 core."""
        return [p.convert for p in (*self.inputs, *self.outputs) if p.convert is not None]

    @property
    def core_inputs(self) -> frozenset[int]:
        return frozenset(p.core for p in self.inputs)

    @property
    def core_outputs(self) -> frozenset[int]:
        return frozenset(p.core for p in self.outputs)

    @property
    def packed(self) -> bool:
        """Several inputs or outputs: `<name>_invoke_packed` exists."""
        return len(self.inputs) > 1 or len(self.outputs) > 1

    def names(self, end: str) -> list[str]:
        """The C parameter names of the `end` ("input" / "output") ports."""
        ports = self.inputs if end == "input" else self.outputs
        return [end] if not self.packed else [f"{end}{k}" for k in range(len(ports))]


def read_interface(graph: Graph) -> Interface:
    """The ports of `graph`, checked: every core end int8 per-tensor, no port twice.

    Raises:
        InputError: a float op at an end, a float input read by several QUANTIZE ops, an end that
            is not int8, an output that is an input or another output.
        UnsupportedOpError: a float op computes an output or reads a float input.
    """
    if not graph.inputs or not graph.outputs:
        raise InputError(f"{graph.source}: the model has {len(graph.inputs)} inputs and {len(graph.outputs)} "
                         "outputs; the C library needs at least one of each")
    io = Interface([_input_port(graph, i) for i in graph.inputs], [_output_port(graph, i) for i in graph.outputs])
    for end, ports in (("input", io.inputs), ("output", io.outputs)):
        for port in ports:
            tensor = graph.tensors[port.core]
            if tensor.dtype != "int8" or not tensor.quantized or tensor.per_channel:
                raise InputError(f"{graph.source}: the {end} '{tensor.label}' is {tensor.dtype}; the C library "
                                 "takes int8 (per-tensor quantized) or float32 inputs and outputs")
    cores = [p.core for p in io.outputs]
    for port in io.outputs:
        label = graph.tensors[port.core].label
        if port.core in io.core_inputs:
            raise InputError(f"{graph.source}: the output '{label}' is an input; there is nothing to compute")
        if cores.count(port.core) > 1:
            raise InputError(f"{graph.source}: the output '{label}' is listed twice")
    return io


def _input_port(graph: Graph, index: int) -> Port:
    tensor = graph.tensors[index]
    if tensor.dtype != "float32":
        return Port(index, index)
    users = graph.consumers(index)
    for user in users:  # a float op reading the input: no kernel for it
        if user.name != "QUANTIZE" or graph.tensors[user.outputs[0]].dtype != "int8":
            raise unsupported(user, graph, "float32")
    if len(users) != 1:
        raise InputError(f"{graph.source}: the float input '{tensor.label}' feeds {len(users)} QUANTIZE ops; "
                         "the C library supports one")
    return Port(index, users[0].outputs[0], users[0])


def _output_port(graph: Graph, index: int) -> Port:
    tensor = graph.tensors[index]
    if tensor.dtype != "float32":
        return Port(index, index)
    maker = graph.producer(index)
    if maker is None:
        raise InputError(f"{graph.source}: no op writes the output '{tensor.label}'")
    if maker.name != "DEQUANTIZE" or graph.tensors[maker.inputs[0]].dtype != "int8":
        raise unsupported(maker, graph, "float32")  # a float op computes the output
    return Port(index, maker.inputs[0], maker)


def c_type(port: Port, float_api: bool) -> str:
    """The C element type of `port`'s buffer in `<name>_invoke` (int8) or `_invoke_f32`."""
    return "float" if float_api and port.convert is not None else "int8_t"


def signature(name: str, io: Interface, float_api: bool = False) -> str:
    """`int <name>_invoke(...)` (or `_invoke_f32`), without the trailing semicolon."""
    params = [f"const {c_type(p, float_api)} *{n}" for p, n in zip(io.inputs, io.names("input"))]
    params += [f"{c_type(p, float_api)} *{n}" for p, n in zip(io.outputs, io.names("output"))]
    return f"int {name}_invoke{'_f32' if float_api else ''}({', '.join(params)})"


def packed_source(name: str, graph: Graph, io: Interface) -> str:
    """`<name>_invoke_packed`: the ports back to back in one input and one output buffer."""
    args, offset = [], 0
    for end, ports in (("input", io.inputs), ("output", io.outputs)):
        offset = 0
        for port in ports:
            args.append(f"{end} + {offset}")
            offset += graph.tensors[port.core].size
    return (f"int {name}_invoke_packed(const int8_t *input, int8_t *output)\n{{\n"
            f"    return {name}_invoke({', '.join(args)});\n}}\n")


def header(name: str, graph: Graph, io: Interface, arena: int, banner: str, storage=((), ())) -> str:
    """`<name>.h`: the sizes, quantization and entry points of the library."""
    upper = name.upper()
    float_api = bool(io.conversions)
    described = []
    for end, ports in (("input", io.inputs), ("output", io.outputs)):
        for port, param in zip(ports, io.names(end)):
            shown, core = graph.tensors[port.graph], graph.tensors[port.core]
            described.append(f" *   {param}: '{comment_text(shown.label, 48)}' {shown.dtype} {list(shown.shape)}"
                             + (f" (int8 in {name}_invoke)" if port.convert is not None else ""))
    in_total = sum(graph.tensors[p.core].size for p in io.inputs)
    out_total = sum(graph.tensors[p.core].size for p in io.outputs)
    lines = [banner,
             f" * {len(io.inputs)} input(s) and {len(io.outputs)} output(s), one pointer each, in this order:",
             *described,
             f" * int8 values are real = (q - ZERO_POINT) * SCALE, with each port's _SCALE and _ZERO_POINT below.",
             f" * RAM: {upper}_ARENA_SIZE bytes (a static arena in {name}.c) plus the caller's buffers.",
             " * Not reentrant: one invoke at a time. Input and output buffers must not overlap.",
             " */",
             f"#ifndef {upper}_H", f"#define {upper}_H", "", "#include <stdint.h>", "",
             "#ifdef __cplusplus", 'extern "C" {', "#endif", "",
             f"#define {upper}_INPUTS {len(io.inputs)}", f"#define {upper}_OUTPUTS {len(io.outputs)}",
             f"#define {upper}_INPUT_SIZE {in_total}", f"#define {upper}_OUTPUT_SIZE {out_total}",
             f"#define {upper}_ARENA_SIZE {arena}", *storage[0]]
    for end, ports in (("INPUT", io.inputs), ("OUTPUT", io.outputs)):
        for k, port in enumerate(ports):
            core, tag = graph.tensors[port.core], f"{upper}_{end}{k if io.packed else ''}"
            lines += [*([f"#define {tag}_SIZE {core.size}"] if io.packed else []),
                      f"#define {tag}_SCALE {c_float(core.scale)}", f"#define {tag}_ZERO_POINT {c_define(core.zero_point)}"]
    what = "the int8 values of each input, write those of each output" if io.packed else \
        f"{upper}_INPUT_SIZE int8 values, write {upper}_OUTPUT_SIZE int8 values"
    lines += ["", f"/* Run the model on {what}. Returns 0. */", f"{signature(name, io)};", ""]
    if io.packed:
        lines += [f"/* The same with the inputs back to back in one buffer of {upper}_INPUT_SIZE bytes (in order)",
                  f" * and the outputs likewise in one of {upper}_OUTPUT_SIZE bytes. Returns 0. */",
                  f"int {name}_invoke_packed(const int8_t *input, int8_t *output);", ""]
    lines += [*storage[1]]
    if float_api:
        lines += ["/* The same with the model's own I/O types (float where the model's I/O is float), quantized",
                  " * and dequantized as the model's QUANTIZE/DEQUANTIZE ops do. Returns 0. */",
                  f"{signature(name, io, float_api=True)};", ""]
    lines += ["#ifdef __cplusplus", "}", "#endif", "", f"#endif /* {upper}_H */", ""]
    return "\n".join(lines)
