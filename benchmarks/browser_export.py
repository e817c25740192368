"""Browser target figures: per model, recipe and backend, what a web app downloads and waits for.

    .venv/bin/python benchmarks/browser_export.py [--runs 100]

Every figure is measured in headless Chromium: raw and gzip bytes of the model files the page
fetched, p50 latency timed inside the page (batch 1, single-threaded wasm), δ = float p50 / p50
against the float model on the same backend timed in alternation in the same run, and cosine /
top-1 agreement with PyTorch on the same inputs. `uint8` is TF.js's own per-tensor weight
format (recipe none); `int8` is the recipe's int8 plan (weights-only in TF.js, QDQ in ORT Web).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import MODELS  # noqa: E402  (sets up the repository root first)

import edgeport  # noqa: E402

# row label -> (recipe scheme, browser options, targets)
RECIPES = {
    "fp32": ("none", {}, "browser-tfjs,browser-ort"),
    "fp16": ("fp16", {}, "browser-tfjs,browser-ort"),
    "uint8": ("none", {"tfjs_weights": "uint8"}, "browser-tfjs"),
    "int8": ("int8", {}, "browser-tfjs,browser-ort"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    settings = edgeport.CheckSettings(runs=args.runs, warmup=10, threads=1)
    header = (f"{'model':<24}{'recipe':<8}{'backend':<11}{'raw KB':>9}{'gzip KB':>9}{'gzip/fp32':>10}"
              f"{'p50 ms':>9}{'δ':>7}{'cosine':>10}{'top-1':>9}{'load ms':>9}")
    print(f"headless Chromium, batch 1, single-threaded wasm, {args.runs} timed runs in the page")
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        for model_name, spec in MODELS.items():
            fp32_gzip: dict[str, int] = {}
            for label, (scheme, options, targets) in RECIPES.items():
                report = edgeport.export(
                    spec["source"], targets=targets, recipe=edgeport.Recipe(quantize=scheme),
                    calib=spec["calib"] if scheme == "int8" or spec["eval"] is None else None,
                    eval=spec["eval"], out=Path(tmp, f"{model_name}-{label}".replace(" ", "_")),
                    settings=settings, target_options={"browser": options} if options else None)
                for target in report.targets:
                    for backend, row in target.values("browser").get("backends", {}).items():
                        if label == "fp32":
                            fp32_gzip[backend] = row["model_gzip_bytes"]
                        ratio = row["model_gzip_bytes"] / fp32_gzip[backend] if backend in fp32_gzip else None
                        print(f"{model_name:<24}{label:<8}{backend:<11}{row['model_bytes'] / 1e3:>9.1f}"
                              f"{row['model_gzip_bytes'] / 1e3:>9.1f}{_fmt(ratio, '.3f'):>10}"
                              f"{row['p50_ms']:>9.3f}{_fmt(row.get('delta'), '.2f'):>7}"
                              f"{_fmt(row.get('parity_cosine'), '.5f'):>10}"
                              f"{_fmt(_pct(row.get('parity_top1_agreement')), '.2f'):>8}%"
                              f"{row['load_ms']:>9.0f}", flush=True)


def _pct(value):
    return None if value is None else 100 * value


def _fmt(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


if __name__ == "__main__":
    main()
