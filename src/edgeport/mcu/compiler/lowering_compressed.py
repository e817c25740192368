"""Weight tensors stored compressed (`storage`) in a generated C library.

`StorageLowering` is the `Lowering` of a library generated with a `WeightStorage`. Where an op's
lowering asks for its filter (`Lowering.filter`), it packs the tensor, emits the streams as const
arrays with an `ep_packed_weights` struct, checks that they decode to the model's exact int8
values, and hands the kernel either

- the struct, for the `_packed` kernels that decode while they compute (decode="kernel"): the
  convolutions need one output channel's weights of arena scratch, FULLY_CONNECTED one row when
  every weight is stored (none for CSR);
- or a pointer into a static RAM buffer that `<name>_init()` fills once (decode="init"), for the
  dense kernels.

The C around the buffer (`<name>_init`, its declaration, the buffer's size) is rendered here too.
With `storage.lowbit`, ops with binary or ternary filters are lowered by `lowering_lowbit` instead.
"""

from __future__ import annotations

import numpy as np

from edgeport.mcu.compiler import planner
from edgeport.mcu.compiler.lowering import CStruct, Filter, Lowering, Step
from edgeport.mcu.compiler.lowering_lowbit import lower_lowbit
from edgeport.mcu.compiler.storage import (
    PackedWeights,
    Stream,
    WeightStorage,
    pack_weights,
    weight_matrix,
)
from edgeport.mcu.compiler.tflite_ir import Graph, Op

DECODED_BUFFER = "decoded_weights"
DECODED_FLAG = "weights_decoded"
DECODED_ALIGNMENT = 4  # the DSP kernels read weights a word at a time (unaligned loads are fine, aligned faster)


class StorageLowering(Lowering):
    """A Lowering that stores filters as `storage` asks (see the module docstring)."""

    def __init__(self, graph: Graph, outputs: frozenset[int], inputs: frozenset[int], storage: WeightStorage):
        super().__init__(graph, outputs, inputs)
        self.storage = storage
        self.decoded: list[tuple[str, int, int, int]] = []  # struct, offset, row stride, column stride
        self.decoded_bytes = 0                                # used bytes of the decoded weights buffer

    @property
    def decoded_size(self) -> int:
        """Bytes of the static buffer for weights decoded at init (16-byte aligned)."""
        return planner.align_up(self.decoded_bytes)

    def replacement(self, op: Op) -> Step | None:
        """With `storage.lowbit`, binary and ternary filters' ops (`lowering_lowbit`)."""
        return lower_lowbit(op, self.graph, self) if self.storage.lowbit else None

    def _filter(self, op: Op, index: int) -> Filter:
        tensor = self.graph.tensors[index]
        where = f"op {op.index} {op.name} ({self.graph.node_label(op)})"
        if tensor.zero_points is not None and np.any(tensor.zero_points != 0):
            self.notes.append(f"{where}: filter zero point != 0 (a stored zero would not be a zero weight): dense")
            return super()._filter(op, index)
        matrix = weight_matrix(op.name, tensor.data)
        packed, notes = pack_weights(matrix, self.storage)
        self.notes += [f"{where}: {note}" for note in notes]
        if packed is None:
            return super()._filter(op, index)
        if not np.array_equal(packed.decode(), matrix):  # a packing bug must never become wrong outputs
            raise AssertionError(f"{where}: {packed.format} storage does not decode to the model's weights")
        struct = CStruct("ep_packed_weights", f"t{index}_packed", self._emit(f"t{index}", packed, tensor.label))
        self.record_storage(op, index, packed.format, self.storage.decode, packed.nbytes,
                            index_bits=packed.gaps.width if packed.sparse else None,
                            palette_bits=packed.values.width if packed.lut is not None else None)
        if self.storage.decode == "init":
            offset = planner.align_up(self.decoded_bytes, DECODED_ALIGNMENT)
            # depthwise rows are output channels, its dense layout [k_h][k_w][out_c]: transposed back
            strides = (1, packed.rows) if op.name == "DEPTHWISE_CONV_2D" else (packed.cols, 1)
            self.decoded.append((struct.name, offset, *strides))
            self.decoded_bytes = offset + matrix.size
            return Filter(f"({DECODED_BUFFER} + {offset})", structs=(struct,))
        if packed.sparse and op.name != "FULLY_CONNECTED":
            self.notes.append(f"{where}: CSR rows are decoded into a dense row of scratch per output channel "
                              "(flash as stored; the convolution still multiplies the zeros)")
        scratch = 0 if op.name == "FULLY_CONNECTED" and packed.sparse else packed.cols
        return Filter(f"&{struct.name}", packed=True, scratch=scratch, structs=(struct,))

    def _stream(self, name: str, stream: Stream | None, what: str) -> tuple[str, str]:
        """Const arrays of a stream and its codebook: (data, codebook) names, "NULL" if none."""
        if stream is None or stream.count == 0:
            return "NULL", "NULL"
        coding = "Huffman codes" if stream.codebook else f"{stream.width}-bit, LSB first"
        data = self.array(name, "uint8_t", np.frombuffer(stream.data, np.uint8), f"{what}: {stream.count} x {coding}")
        if stream.codebook is None:
            return data, "NULL"
        return data, self.array(f"{name}_code", "uint8_t", np.frombuffer(stream.codebook, np.uint8),
                                f"{what}: Huffman codebook (max length, codes per length, symbols)")

    def _emit(self, name: str, packed: PackedWeights, label: str) -> dict:
        """The arrays of `packed` and the fields of its ep_packed_weights struct."""
        kind = "palette indices" if packed.lut is not None else "int8 values"
        values, value_code = self._stream(f"{name}_values", packed.values, f"{label} {kind}")
        gaps, gap_code = self._stream(f"{name}_gaps", packed.gaps, f"{label} relative indices (zeros before)")
        lut = counts = "NULL"
        if packed.lut is not None:
            per_row = f", {packed.lut_stride} per output channel" if packed.per_channel else ""
            lut = self.array(f"{name}_lut", "int8_t", packed.lut, f"{label} ({packed.format}): palette{per_row}")
        if packed.sparse:
            width = packed.count_bytes
            data = np.asarray(packed.counts, "<u2").view(np.uint8).reshape(-1, 2)[:, :width]
            counts = self.array(f"{name}_counts", "uint8_t", data,
                                f"{label} ({packed.format}): entries per output channel, {width} B each")
        return {"values": values, "value_code": value_code, "lut": lut, "gaps": gaps, "gap_code": gap_code,
                "counts": counts, "rows": packed.rows, "cols": packed.cols, "value_bits": packed.values.width,
                "gap_bits": packed.gaps.width if packed.sparse else 0, "lut_stride": packed.lut_stride,
                "count_bytes": packed.count_bytes}


def storage_header(name: str, ctx: StorageLowering) -> tuple[list[str], list[str]]:
    """Lines for `<name>.h`: the decoded-weights define, and `<name>_init`'s declaration."""
    upper = name.upper()
    defines = [f"#define {upper}_DECODED_SIZE {ctx.decoded_size} /* static RAM besides the arena: weights {name}_init decodes */"]
    declaration = [f"/* Decode the weights stored compressed that the dense kernels read into {upper}_DECODED_SIZE",
                   f" * bytes of static RAM (0: every kernel decodes as it computes). {name}_invoke calls it",
                   " * first if you did not; call it at startup to keep that time out of the first invoke. Returns 0. */",
                   f"int {name}_init(void);", ""]
    return defines, declaration


def storage_source(name: str, ctx: StorageLowering) -> tuple[list[str], str, str]:
    """For `<name>.c`: the buffer declarations, `<name>_init` and the line invoke starts with."""
    if not ctx.decoded:
        return [], f"int {name}_init(void)\n{{\n    return 0;\n}}\n", ""
    buffers = [f"/* weights decoded once by {name}_init (stored compressed in flash) */",
               f"static int8_t {DECODED_BUFFER}[{name.upper()}_DECODED_SIZE] EP_ALIGN16;",
               f"static int {DECODED_FLAG};", ""]
    calls = "".join(f"        ep_weights_decode(&{struct}, {DECODED_BUFFER} + {offset}, {row}, {col});\n"
                    for struct, offset, row, col in ctx.decoded)
    init = (f"int {name}_init(void)\n{{\n    if (!{DECODED_FLAG}) {{\n{calls}        {DECODED_FLAG} = 1;\n    }}\n"
            "    return 0;\n}\n")
    return buffers, init, f"    (void){name}_init();\n"
