"""Per-layer numerics of Core ML artifacts (`--layers` on ios): edgeport's MIL evaluator runs the
artifact's ML Program and the fp32 program coremltools converts from the same traced module
(`Artifact.layers_reference`), every op output kept, one sample at a time.

Both programs come from one conversion with the same passes, so an op keeps its name in both;
an fp16 program suffixes each op it computes in fp16 with `_cast_fp16` and casts at its edges,
and the int8 recipe adds quantize -> dequantize pairs before conv / linear inputs (the value the
next layer sees). An op's output var may be named otherwise than the op in one program and not
the other (coremltools names the fp32 linear `linear_0` writing `input_13`), so ops are matched
by name and their outputs by position. An op of the float program without a counterpart is not
compared, and counted.
"""

from __future__ import annotations

import json

import numpy as np

from edgeport.checks.layers import Step, _rows

FP16_SUFFIX = "_cast_fp16"
SKIPPED = ("const", "cast", "quantize", "dequantize")  # no layer's output: conversions, not computations


def _var_names(value) -> list[str]:
    return [v.name for v in value] if isinstance(value, (list, tuple)) else [value.name]


def _seen_downstream(ops) -> dict[str, str]:
    """Var -> the var the next layers read instead: its quantize -> dequantize pair's output."""
    consumers: dict[str, list] = {}
    for op in ops:
        for value in op.inputs.values():
            for name in _var_names(value):
                consumers.setdefault(name, []).append(op)
    seen = {}
    for name, users in consumers.items():
        quant = [op for op in users if op.op_type == "quantize"]
        if len(quant) == 1:
            dequant = [op for op in consumers.get(quant[0].outputs[0].name, []) if op.op_type == "dequantize"]
            if dequant:
                seen[name] = dequant[0].outputs[0].name
    return seen


def _layers_of(path: str) -> dict[str, str]:
    """The float reference's {op name: module path}, from its metadata (empty when absent)."""
    from edgeport.exporters.coreml import LAYERS_KEY
    from edgeport.runtimes.coreml import load_program

    spec, _ = load_program(path)
    try:
        return json.loads(spec.description.metadata.userDefined.get(LAYERS_KEY, "{}"))
    except ValueError:
        return {}


def compare_mlpackage(float_path: str, artifact_path: str, samples) -> tuple[list[dict], int, int]:
    """(rows, float ops compared, float ops without a counterpart in the artifact): one row per
    output of each float op the artifact computes under the same name (and shape), in program order."""
    from edgeport.runtimes.coreml import MilSession

    float_session, artifact = MilSession(float_path), MilSession(artifact_path)
    by_name = {op.name.removesuffix(FP16_SUFFIX): op for op in artifact.ops if op.op_type not in SKIPPED}
    seen = _seen_downstream(artifact.ops)
    layers = _layers_of(float_path)
    steps, matched, unmatched = [], 0, 0
    for op in float_session.ops:
        if op.op_type == "const":
            continue
        twin = by_name.get(op.name) if op.op_type not in SKIPPED else None
        if op.op_type not in SKIPPED:
            matched, unmatched = matched + (twin is not None), unmatched + (twin is None)
        inputs = [n for value in op.inputs.values() for n in _var_names(value)]
        for i, var in enumerate(op.outputs):
            got = twin.outputs[i].name if twin is not None and i < len(twin.outputs) else ""
            steps.append(Step(var.name, seen.get(got, got), op.name, op.op_type, twin.op_type if twin else "",
                              layers.get(op.name, ""), inputs))
    wanted = {s.tensor for s in steps if s.seen}
    kept = {s.seen for s in steps if s.seen}
    reference: dict[str, list] = {}
    got: dict[str, list] = {}
    for feeds in samples:
        for session, names, into in ((float_session, wanted, reference), (artifact, kept, got)):
            env = session.run_all(feeds)
            for name in names:
                if name in env:
                    into.setdefault(name, []).append(np.asarray(env[name]))
    stacked = [{k: np.concatenate([v.reshape(1, -1) for v in vs]) for k, vs in d.items()} for d in (reference, got)]
    return _rows(steps, *stacked), matched, unmatched
