"""Core ML's own prediction (macOS only), compared with the float reference."""

from __future__ import annotations

import numpy as np

from edgeport.checks import MEASURED, CheckContext, CheckResult, CheckSpec
from edgeport.checks.numerics import parity_metrics


def check_coreml_predict(ctx: CheckContext) -> CheckResult:
    """Run `MLModel.predict` on the reference inputs; on other OSes say why it cannot run."""
    from edgeport.runtimes.coreml import coreml_predict_unavailable

    why = coreml_predict_unavailable()
    if why:
        return CheckResult.not_run("coreml_predict", why)
    if ctx.refs.data is None or ctx.refs.outputs is None:
        return CheckResult.not_run("coreml_predict", "no input data or float reference")
    import coremltools as ct

    model = ct.models.MLModel(str(ctx.artifact.path))
    data = ctx.refs.data
    out_name = ctx.session.outputs[0].name
    outputs = [np.asarray(model.predict({k: v[i:i + 1] for k, v in data.feeds.items()})[out_name])
               for i in range(len(data))]
    values = parity_metrics(ctx.refs.outputs[0], np.concatenate(outputs))
    values["evaluator_max_abs_diff"] = float(np.max(np.abs(np.concatenate(outputs) - ctx.outputs[0])))
    return CheckResult("coreml_predict", MEASURED, values)


COREML_PREDICT = CheckSpec("coreml_predict", check_coreml_predict, formats=("mlpackage",))
