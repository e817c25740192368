"""The lowering registries: TFLite op name -> the function that lowers the op to a C kernel call.

Each op family module ends with a `LOWERINGS` table (op name -> lowering): `lowering`
(convolutions, FULLY_CONNECTED, pooling, MEAN), `lowering_layout` (RESHAPE, TRANSPOSE, PAD,
CONCATENATION), `lowering_elementwise` (ADD, SOFTMAX, QUANTIZE, comparisons, SELECT_V2),
`lowering_activation` (PRELU, LEAKY_RELU, HARD_SWISH, LOGISTIC, TANH), `lowering_arith` (MUL,
SUB, MAXIMUM, MINIMUM, RESIZE_*), `lowering_slicing` (STRIDED_SLICE, SPLIT, GATHER), `lowering_islands` (TABLE: float ops between a
DEQUANTIZE and a QUANTIZE, folded into int8 tables) and
`lowering_lowbit` (binary / ternary filters, offered first with `WeightStorage(lowbit=True)`).
The registries are built here from those tables, explicitly and on first use; an op name in two
tables raises. Adding an op is its function and one line in its family's table.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from edgeport.mcu.compiler.lowering import Lower, Lowering, Step, unsupported
from edgeport.mcu.compiler.lowering_int16 import int16_lowering
from edgeport.mcu.compiler.tflite_ir import Graph, Op
from edgeport.registry import Registry

if TYPE_CHECKING:
    from edgeport.mcu.compiler.lowering_lowbit import LowbitLower


@cache
def lowerings() -> Registry[Lower]:
    """TFLite op name -> its lowering onto the int8 kernels."""
    from edgeport.mcu.compiler import (
        lowering,
        lowering_activation,
        lowering_arith,
        lowering_elementwise,
        lowering_islands,
        lowering_layout,
        lowering_slicing,
    )

    return _registry("Cortex-M C kernel", lowering.LOWERINGS, lowering_layout.LOWERINGS,
                     lowering_elementwise.LOWERINGS, lowering_activation.LOWERINGS, lowering_arith.LOWERINGS,
                     lowering_slicing.LOWERINGS, lowering_islands.LOWERINGS)


@cache
def lowbit_lowerings() -> Registry[LowbitLower]:
    """TFLite op name -> its lowering onto the low-bit kernels, for a binary or ternary filter."""
    from edgeport.mcu.compiler import lowering_lowbit

    return _registry("low-bit Cortex-M C kernel", lowering_lowbit.LOWERINGS)


def _registry(kind: str, *tables: dict) -> Registry:
    registry: Registry = Registry(kind)
    for table in tables:
        for name, lower in table.items():
            registry.add(name, lower)
    return registry


def lower_op(op: Op, graph: Graph, ctx: Lowering) -> Step:
    """The Step for `op`, or UnsupportedOpError if edgeport has no C kernel for it."""
    if (lower := int16_lowering(op, graph)) is not None:
        return ctx.replacement(op) or lower(op, graph, ctx)
    registry = lowerings()
    if op.name not in registry:
        raise unsupported(op, graph)
    return ctx.replacement(op) or registry.get(op.name)(op, graph, ctx)
