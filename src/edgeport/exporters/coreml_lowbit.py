"""Binary / ternary conv and linear weights as 1-bit / 2-bit Core ML palettes.

A binary weight is α_c·s with s in {-1, +1} for each output channel c (ternary: s in {-1, 0, +1}).
Core ML stores it with `constexpr_lut_to_dense`: 1 (2) bits of index per weight into a lookup
table (LUT). α_c is per channel, so:
  - iOS18: the op takes one LUT per output channel, {-α_c, +α_c} ({-α_c, 0, +α_c, 0}); the
    dense weight is α_c·s itself and the layer is unchanged.
  - iOS16 / iOS17: the op has one LUT per tensor, {-m, +m} ({-m, 0, +m, 0}) with m = 2^e the
    power of two at or above max_c α_c; the layer computes with m·s and its output is multiplied
    by α_c / m before the bias: conv(x, α·s) + b = (α/m)·conv(x, m·s) + b. Scaling by a power
    of two is exact in floating point, so m·fp(α_c / m) = fp(α_c): the stored α is rounded once,
    as the int8 scales are. m keeps the intermediate output at the layer's own magnitude (a LUT
    of ±1 would make it 1/α larger, which can overflow fp16).
Which weights: for the int8 recipe those the plan marks "binary" / "ternary" (α is the plan's
scale, the integers are the plan's); for recipes without weight numbers (none, fp16) and for a
weight Core ML fused (no counterpart in the plan) the same rule on the values
(`qmath.lowbit_scales`). Palette and pruning recipes keep their own compression.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeport.quantizers import compress, qmath
from edgeport.schemes import Float32, Fp16, Int8Static

LUT_VALUES = {"binary": (-1.0, 1.0), "ternary": (-1.0, 0.0, 1.0, 0.0)}  # 2^bits entries; the 4th is unused
BITS = {"binary": 1, "ternary": 2}
# scheme -> where a binary / ternary layer's α comes from: the plan (int8 stores α as the channel
# scale; a weight Core ML fused, absent from the plan, by its values) or the weight's values. Other
# schemes store the plan's rule scales (max|w| / 127), so their layers are not low-bit palettes.
ALPHA_SOURCE = {Int8Static: "plan", Float32: "values", Fp16: "values"}
PER_CHANNEL_LUT_IOS = 18  # first Core ML with grouped (per-channel) LUTs


@dataclass(frozen=True)
class LowBitWeight:
    """A binary / ternary weight: `kind`, α per output channel (axis 0), the integers s (-1/0/+1),
    and whether α came from the plan (else from the rule on the values)."""

    kind: str
    alpha: np.ndarray
    signs: np.ndarray
    from_plan: bool

    @property
    def bits(self) -> int:
        return BITS[self.kind]


def find_lowbit(exact: np.ndarray, name: str | None, job) -> LowBitWeight | None:
    """The low-bit form of a conv / linear weight (float32, output channels on axis 0), or None
    when the recipe does not store it so. `name` is its ONNX initializer (None: fused by Core ML)."""
    recipe, plan = job.recipe, job.plan
    if recipe.palettize or recipe.prune:
        return None
    source = ALPHA_SOURCE.get(type(recipe.scheme))
    if source == "plan" and name is not None:
        planned, kind = plan.weights.get(name), plan.origin.get(name)
        if planned is None or kind not in BITS or planned.axis != 0:
            return None
        alpha, from_plan = planned.scale_array(), True
    elif source is not None:  # by value; under int8: a weight Core ML fused, not in the plan
        found = qmath.lowbit_scales(exact, 0)
        if found is None:
            return None
        (alpha, kind), from_plan = found, False
    else:
        return None  # dynamic / weight-only int8: the plan's rule scales (max|w| / 127) are what it stores
    return LowBitWeight(kind, np.asarray(alpha, np.float32), np.sign(exact).astype(np.int8), from_plan)


def lut_indices(signs: np.ndarray, kind: str) -> np.ndarray:
    """Index of each integer (-1 / 0 / +1) in `LUT_VALUES[kind]` (its first occurrence)."""
    indices = np.zeros(signs.shape, dtype=np.uint8)
    for value in (-1, 0, 1):
        if value in LUT_VALUES[kind]:
            indices[signs == value] = LUT_VALUES[kind].index(value)
    return indices


def power_of_two_at_least(value: float) -> float:
    """The smallest 2^e >= value (value > 0)."""
    return float(2.0 ** np.ceil(np.log2(value)))


def lut_to_dense(mb, indices: np.ndarray, lut: np.ndarray, dtype, ios_version: int, **kwargs):
    """`constexpr_lut_to_dense` in the form the deployment target's opset takes.

    `indices` are integers shaped like the weight; `lut` is (groups, 2^bits): one row for a
    per-tensor palette, or one per output channel (iOS18 only)."""
    from coremltools.converters.mil.mil import types

    bits = int(np.log2(lut.shape[1]))
    if ios_version < PER_CHANNEL_LUT_IOS:
        if lut.shape[0] != 1:
            raise ValueError("per-channel LUTs need iOS18")
        return mb.constexpr_lut_to_dense(indices=compress.pack_bits(indices, bits), lut=lut[0].astype(dtype),
                                         shape=np.uint32(indices.shape), **kwargs)
    # iOS18: LUT of rank indices.rank + 2: [groups per axis..., 2^bits, vector size 1]
    table = lut.reshape(lut.shape[0], *[1] * (indices.ndim - 1), lut.shape[1], 1).astype(dtype)
    sub_byte = types.nptype_from_builtin(types.string_to_builtin(f"uint{bits}"))
    return mb.constexpr_lut_to_dense(indices=indices.astype(sub_byte), lut=table, **kwargs)


def rewrite_lowbit(block, op, low: LowBitWeight, dtype, ios_version: int, label: str) -> tuple[str, np.ndarray]:
    """Store `op`'s weight as a `low.bits`-bit palette. Returns the name of the op that computes
    the layer afterwards (conv, linear or matmul; W8A8 quantizes its input `x`) and α as stored
    (float32, after rounding to `dtype`)."""
    from coremltools.converters.mil import Builder as mb

    from edgeport.exporters.coreml_mil import replace_weight, scope_of

    indices = lut_indices(low.signs, low.kind)
    values = np.float32(LUT_VALUES[low.kind])
    if ios_version >= PER_CHANNEL_LUT_IOS:
        lut = low.alpha[:, None] * values[None, :]
        replace_weight(block, op, lambda b: lut_to_dense(b, indices, lut, dtype, ios_version, before_op=op,
                                                          name=label))
        return op.name, low.alpha.astype(dtype).astype(np.float32)
    m = power_of_two_at_least(float(low.alpha.max()))
    multiplier = (low.alpha / np.float32(m)).astype(dtype)
    out, bias = op.outputs[0], op.inputs.get("bias")
    channel_shape = (1, -1) + (1,) * (out.rank - 2) if op.op_type == "conv" else (-1,)
    params = {k: v for k, v in op.inputs.items() if k not in ("weight", "bias")}
    with block, scope_of(op):
        weight = lut_to_dense(mb, indices, (m * values)[None, :], dtype, ios_version, before_op=op, name=label)
        if op.op_type == "conv":
            y = mb.conv(**params, weight=weight, before_op=op, name=f"{op.name}_palette")
        else:  # linear without bias is a matmul (MIL's linear would store a zero bias)
            y = mb.matmul(x=op.x, y=weight, transpose_y=True, before_op=op, name=f"{op.name}_palette")
        scale = mb.const(val=multiplier.reshape(channel_shape), name=f"{label}_alpha", before_op=op)
        # the last op takes the layer's output name (it may be a model output)
        scaled = mb.mul(x=y, y=scale, before_op=op, name=out.name if bias is None else f"{op.name}_scaled")
        if bias is not None:
            scaled = mb.add(x=scaled, y=bias.val.reshape(channel_shape).astype(dtype), before_op=op, name=out.name)
    block.replace_uses_of_var_after_op(anchor_op=scaled.op, old_var=out, new_var=scaled)
    block.remove_ops([op])
    return y.op.name, np.float32(m) * multiplier.astype(np.float32)


def lut_bits(lut_op) -> int:
    """Index bits of a `constexpr_lut_to_dense` op (iOS16 or iOS18 form)."""
    lut = lut_op.inputs["lut"].val
    return int(np.log2(lut.size if "shape" in lut_op.inputs else lut.shape[-2]))


def alpha_var(lut_op, consumers: dict):
    """The const var holding α_c / m of a LUT op written by `rewrite_lowbit` for iOS16 / iOS17
    (the mul after the layer it feeds), or None. `consumers` maps a var name to the ops using it."""
    if "shape" not in lut_op.inputs:
        return None
    layers = consumers.get(lut_op.outputs[0].name, [])
    muls = [op for layer in layers[:1] for op in consumers.get(layer.outputs[0].name, [])
            if op.op_type == "mul" and op.y.name == f"{lut_op.name}_alpha" and op.y.val is not None]
    return muls[0].y if muls else None


def stored_alpha(lut_op, consumers: dict) -> np.ndarray | None:
    """α per output channel as the package stores it (float32), for a LUT op written by
    `rewrite_lowbit` (None when an iOS16 / iOS17 LUT op has no α multiplier after its layer)."""
    lut = np.asarray(lut_op.inputs["lut"].val, dtype=np.float32)
    if "shape" not in lut_op.inputs:  # iOS18: a row {-α_c, (0,) +α_c, ...} per channel
        return np.abs(lut.reshape(lut.shape[0], -1)).max(axis=1)
    alpha = alpha_var(lut_op, consumers)
    return None if alpha is None else np.abs(lut).max() * np.asarray(alpha.val, dtype=np.float32).ravel()


def lowbit_note(layers: dict[str, LowBitWeight], ios_version: int, rounding: float) -> str:
    """The artifact's line on the layers stored as 1-bit / 2-bit palettes (layer -> weight)."""
    how = ("one LUT {-α_c, +α_c} per output channel (iOS18)" if ios_version >= PER_CHANNEL_LUT_IOS else
           "one LUT {-m, +m} (m = 2^e ≥ max α) and a mul by α_c/m on the layer output before the bias")
    listed = ", ".join(f"{layer} {low.bits}-bit" for layer, low in layers.items())
    planned = sum(low.from_plan for low in layers.values())
    source = ("α and integers from the plan" if planned == len(layers) else
              "α from the weights (one magnitude per output channel)" if not planned else
              f"{planned} with the plan's α, {len(layers) - planned} with α from Core ML's fused weights")
    note = f"binary/ternary weights as palettes (constexpr_lut_to_dense): {listed}; {how}; {source}"
    return note + (f"; α stored in fp16: max relative rounding {rounding:.1e}" if rounding else "")
