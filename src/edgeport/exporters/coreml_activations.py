"""W8A8 for Core ML (iOS17+): int8 activations at the input of every conv / linear op.

The recipe's activation parameters are keyed by ONNX tensor names, which Core ML's graph does
not share. Each Core ML activation is therefore calibrated on the same calibration data with the
recipe's method; where its raw min / max equals the one a planned ONNX tensor showed (the same
tensor computed by both graphs), the plan's scale and zero point are used verbatim (also when
they are not the calibrated ones, e.g. learned by QAT), otherwise the recipe's rule gives them
from the Core ML range. The artifact notes count both.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from edgeport.errors import InputError, RuntimeGap
from edgeport.exporters import ExportJob
from edgeport.quantizers import qmath

QUANTIZED_INPUT_OPS = ("conv", "linear")
RANGE_TOLERANCE = 2e-3  # relative; fp16 Core ML graphs round activations, ONNX computes in fp32


def activation_inputs(program) -> list[str]:
    """Names of vars feeding `x` of conv / linear ops, in graph order, each once."""
    names = []
    for op in program.functions["main"].operations:
        if op.op_type in QUANTIZED_INPUT_OPS and op.x.name not in names:
            names.append(op.x.name)
    return names


def calibrate(mlmodel, names: list[str], job: ExportJob
              ) -> tuple[dict[str, tuple[float, float]], dict[str, tuple[float, float]]]:
    """(lo, hi) of each named var over the calibration data by the recipe's method, and the raw
    (min, max) observed."""
    from edgeport.runtimes.coreml import MilSession

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "float.mlpackage"
        mlmodel.save(str(path))
        session = MilSession(str(path))
    data = job.calib.take(job.recipe.calib_samples)
    captured = {n: [] for n in names}
    for i in range(len(data)):
        try:
            env = session.run_all({k: v[i:i + 1] for k, v in data.feeds.items()})
        except RuntimeGap as exc:  # the program holds an op the evaluator lacks: one line, not a crash
            raise InputError(f"ios: the int8 recipe (W8A8) calibrates Core ML's program in edgeport's MIL "
                             f"evaluator, and {exc}; --quantize dynamic-int8 or weight-only-int8 need no "
                             "calibration") from None
        for n in names:
            captured[n].append(env[n].astype(np.float32).ravel())
    ranges, observed = {}, {}
    for n, parts in captured.items():
        values = np.concatenate(parts)
        lo, hi = float(values.min()), float(values.max())
        observed[n] = (lo, hi)
        if job.recipe.calibration == "minmax":
            ranges[n] = (lo, hi)
            continue
        edges = np.linspace(min(lo, 0.0), max(hi, 0.0), qmath.HIST_BINS + 1)
        hist, _ = np.histogram(values, bins=edges)
        hist = hist.astype(np.float64)
        ranges[n] = qmath.range_percentile(hist, edges, job.recipe.percentile) \
            if job.recipe.calibration == "percentile" else qmath.range_mse(hist, edges)
    return ranges, observed


def quantize_activations(program, calibrated: tuple[dict, dict], job: ExportJob, ops: set[str]) -> list[str]:
    """Insert quantize -> dequantize before the first of `ops` consuming each calibrated var;
    `calibrated` is what `calibrate` returned."""
    from coremltools.converters.mil import Builder as mb

    from edgeport.exporters.coreml_mil import scope_of

    ranges, observed = calibrated
    block = program.functions["main"]
    first_consumer = {}
    for op in block.operations:  # `ops` may hold a matmul: a binary linear layer (coreml_lowbit)
        if op.name in ops and op.x.name in ranges:
            first_consumer.setdefault(op.x.name, op)
    counts = {"plan": 0, "rule": 0}
    for name, op in first_consumer.items():
        var = op.x
        params = job.plan.activation_matching(*observed[name], by="observed", tolerance=RANGE_TOLERANCE)
        if params is None:
            scale, zero_point = qmath.activation_qparams(*ranges[name])
            counts["rule"] += 1
        else:
            scale, zero_point = np.float32(params.scale), np.int8(params.zero_point)
            counts["plan"] += 1
        dtype = np.float16 if var.dtype.__name__ == "fp16" else np.float32
        with block, scope_of(op):
            q = mb.quantize(input=var, scale=dtype(scale), zero_point=np.int8(zero_point), output_dtype="int8",
                            before_op=op, name=f"{name}_quantize")
            dq = mb.dequantize(input=q, scale=dtype(scale), zero_point=np.int8(zero_point), before_op=op,
                               name=f"{name}_dequantize")
        block.replace_uses_of_var_after_op(anchor_op=dq.op, old_var=var, new_var=dq, no_check_var_types=True)
    note = f"int8 activations at {sum(counts.values())} conv/linear inputs: {counts['plan']} with the recipe's numbers"
    if counts["rule"]:
        note += f", {counts['rule']} calibrated on Core ML's graph by the recipe's rule (no ONNX tensor with that range)"
    return [note]
