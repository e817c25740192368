"""LiteRT's optimized kernels (XNNPACK) against its reference kernels, on the same inputs."""

from __future__ import annotations

import numpy as np

from edgeport.checks import MEASURED, CheckContext, CheckResult, CheckSpec


def check_reference_kernels(ctx: CheckContext) -> CheckResult:
    """Run every input through the optimized and the reference kernels and report differences
    (in int8 steps for int8 outputs: 0 means bit-exact)."""
    data = ctx.refs.data
    if data is None:
        return CheckResult.not_run("reference_kernels", "no input data (give --calib or --eval)")
    optimized, reference = ctx.session, ctx.runtime.load_reference(str(ctx.artifact.path))
    diffs, agree = [], []
    for i in range(len(data)):
        feed = {k: v[i:i + 1] for k, v in data.feeds.items()}
        a, b = optimized.run_raw(feed)[0], reference.run_raw(feed)[0]
        diffs.append(float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))))
        agree.append(a.reshape(-1).argmax() == b.reshape(-1).argmax())
    integer = optimized.outputs[0].dtype in ("int8", "uint8", "int16")
    values = {"samples": len(data), "kernels": "XNNPACK (optimized) vs BUILTIN_REF",
              "max_diff": max(diffs), "unit": "int8 steps" if integer else "float",
              "bit_exact_samples": int(sum(d == 0 for d in diffs)), "top1_agreement": float(np.mean(agree))}
    return CheckResult("reference_kernels", MEASURED, values)


REFERENCE_KERNELS = CheckSpec("reference_kernels", check_reference_kernels, formats=("tflite",))
