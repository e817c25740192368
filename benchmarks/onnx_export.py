"""ONNX target figures: per model and recipe, size, α, p50/p99 latency, δ, agreement, accuracy.

    .venv/bin/python benchmarks/onnx_export.py [--runs 200] [--threads 1]

δ (speedup) and α (compression) are ratios against the float model measured in the same run,
latencies interleaved run by run, so machine noise affects both sides alike.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import MODELS  # noqa: E402  (sets up the repository root first)

import edgeport  # noqa: E402

RECIPES = ["none", "fp16", "dynamic-int8", "weight-only-int8", "int8"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    settings = edgeport.CheckSettings(runs=args.runs, warmup=20, threads=args.threads)
    header = f"{'model':<24}{'recipe':<18}{'size':>10}{'α':>7}{'p50 ms':>9}{'p99 ms':>9}{'δ':>7}{'top-1 agr':>11}{'accuracy':>10}"
    print(f"onnxruntime, batch 1, {args.threads} thread(s), {args.runs} timed runs")
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        for model_name, spec in MODELS.items():
            for recipe in RECIPES:
                report = edgeport.export(spec["source"], targets="onnx", recipe=edgeport.Recipe(quantize=recipe),
                                         calib=spec["calib"] if recipe == "int8" or spec["eval"] is None else None,
                                         eval=spec["eval"], out=Path(tmp, f"{model_name}-{recipe}".replace(" ", "_")),
                                         settings=settings)
                t = report.target("onnx")
                size, lat, par, acc = t.values("size"), t.values("latency"), t.values("parity"), t.values("accuracy")
                accuracy = f"{100 * acc['accuracy']:.2f}%" if acc else "n/a"
                print(f"{model_name:<24}{report.target('onnx').recipe.split(' (')[0]:<18}"
                      f"{size['size_bytes'] / 1e3:>8.1f}KB{size['alpha']:>7.2f}{lat['p50_ms']:>9.3f}"
                      f"{lat['p99_ms']:>9.3f}{lat['delta']:>7.2f}{100 * par['top1_agreement']:>10.2f}%{accuracy:>10}")


if __name__ == "__main__":
    main()
