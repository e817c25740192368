"""Numeric checks: recipe parameters honored, parity with the float reference, accuracy."""

from __future__ import annotations

import numpy as np

from edgeport.checks import MEASURED, CheckContext, CheckResult, CheckSpec


def parity_metrics(reference: np.ndarray, output: np.ndarray) -> dict:
    """Max abs error, cosine similarity (over all values) and top-1 agreement (for [N, C] outputs)."""
    ref = reference.astype(np.float64).reshape(len(reference), -1)
    out = output.astype(np.float64).reshape(len(output), -1)
    denom = np.linalg.norm(ref) * np.linalg.norm(out)
    values = {
        "samples": int(len(ref)),
        "max_abs_err": float(np.max(np.abs(ref - out))),
        "cosine": float(np.sum(ref * out) / denom) if denom > 0 else (1.0 if np.array_equal(ref, out) else 0.0),
    }
    if ref.shape[1] > 1:
        values["top1_agreement"] = float(np.mean(ref.argmax(axis=1) == out.argmax(axis=1)))
    return values


def accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(outputs.reshape(len(outputs), -1).argmax(axis=1) == labels))


def check_params(ctx: CheckContext) -> CheckResult:
    """Read the quantization parameters back from the artifact and compare them with the plan."""
    plan = ctx.plan
    if plan is None or not (plan.weights or plan.activations):
        return CheckResult.not_run("params", "recipe has no quantization parameters")
    values = ctx.exporter.read_params(ctx.artifact.path, plan) if ctx.exporter is not None else None
    if values is None:
        return CheckResult.not_run("params", f"reading parameters back from '{ctx.artifact.format}' "
                                             "files is not supported")
    values["honored"] = not values["differ"] and values["tensors_checked"] > 0
    return CheckResult("params", MEASURED, values)


PARAMS = CheckSpec("params", check_params, needs_runtime=False)


def check_parity(ctx: CheckContext) -> CheckResult:
    refs = ctx.refs
    if refs.data is None:
        return CheckResult.not_run("parity", "no input data (give --calib or --eval)")
    outputs = ctx.outputs  # first: an artifact the runtime cannot run says why, naming the op
    if refs.outputs is None:
        return CheckResult.not_run("parity", "no float reference for this model (give --reference)")
    values = parity_metrics(refs.outputs[0], outputs[0])
    values["reference"] = refs.model.reference_kind
    values["data"] = refs.data.source
    return CheckResult("parity", MEASURED, values)


PARITY = CheckSpec("parity", check_parity)


def check_accuracy(ctx: CheckContext) -> CheckResult:
    refs = ctx.refs
    if refs.data is None or refs.data.labels is None:
        return CheckResult.not_run("accuracy", "no labeled eval data (give --eval with labels)")
    labels = refs.data.labels
    values = {"samples": int(len(labels)), "accuracy": accuracy(ctx.outputs[0], labels)}
    if refs.outputs is not None:
        values["float_accuracy"] = accuracy(refs.outputs[0], labels)
        values["accuracy_drop_points"] = round(100 * (values["float_accuracy"] - values["accuracy"]), 4)
    return CheckResult("accuracy", MEASURED, values)


ACCURACY = CheckSpec("accuracy", check_accuracy)


def cross_target_parity(contexts: list[CheckContext], plan) -> list[dict]:
    """Outputs of each artifact against the first one's, on the same inputs: same recipe, same numbers?

    Where the recipe quantizes the model output, the difference is also given in steps of the
    output's quantization scale.
    """
    from edgeport.errors import RuntimeGap

    outputs = []
    for ctx in contexts:
        try:
            outputs.append((ctx.target.name, ctx.outputs))
        except RuntimeGap:
            continue  # that target's checks already say why it could not run
    outputs = [(name, out) for name, out in outputs if out is not None]
    if len(outputs) < 2:
        return []
    (base_name, base), rows = outputs[0], []
    out_name = contexts[0].session.outputs[0].name
    step = plan.activations[out_name].scale if plan is not None and out_name in plan.activations else None
    for name, out in outputs[1:]:
        metrics = parity_metrics(base[0], out[0])
        row = {"base": base_name, "target": name, "samples": metrics["samples"],
               "max_abs_diff": metrics["max_abs_err"], "cosine": metrics["cosine"]}
        if "top1_agreement" in metrics:
            row["top1_agreement"] = metrics["top1_agreement"]
        if step:
            row["max_diff_steps"] = round(metrics["max_abs_err"] / step, 3)
        rows.append(row)
    return rows
