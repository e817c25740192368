"""ios target figures: Core ML package size per weight compression, α, Linux-evaluator cosine, accuracy.

    .venv/bin/python benchmarks/coreml_export.py

α = size of the fp32-precision package of the same model / package size, both built in this run.
Cosine and top-1 agreement compare the NumPy MIL evaluator's outputs with PyTorch on the same
inputs (digits: the 359-image test split; MobileNetV2: 64 random images). Latency is not
measured: Core ML runs only on Apple platforms. Anchor from coremltools' documentation:
MobileNetV2 (trained) palettized to 6 bits loses about 1.0 point of ImageNet top-1.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from common import MODELS  # noqa: E402  (sets up the repository root first)

import edgeport  # noqa: E402

VARIANTS = [  # label, recipe, ios options
    ("fp32", {}, {"precision": "fp32"}),
    ("fp16", {"quantize": "fp16"}, {}),
    ("int8 weights", {"quantize": "dynamic-int8"}, {}),
    ("W8A8", {"quantize": "int8"}, {"deployment_target": "iOS17"}),
    ("palette 6-bit", {"palettize": 6}, {}),
    ("palette 4-bit", {"palettize": 4}, {}),
    ("palette 2-bit", {"palettize": 2}, {}),
    ("palette 1-bit", {"palettize": 1}, {}),
    ("sparse 50%", {"prune": 0.5}, {}),
    ("sparse 75%", {"prune": 0.75}, {}),
]


def main() -> None:
    header = f"{'model':<24}{'variant':<15}{'package':>11}{'weights':>11}{'α':>7}{'cosine':>10}{'top-1 agr':>11}{'accuracy':>10}"
    print(header)
    print("-" * len(header))
    settings = edgeport.CheckSettings(runs=1, warmup=0)
    with tempfile.TemporaryDirectory() as tmp:
        for model_name, spec in MODELS.items():
            baseline = None
            for label, recipe, options in VARIANTS:
                # dynamic int8 in Core ML quantizes the Linear layers only, like in ONNX Runtime
                report = edgeport.export(spec["source"], targets="ios", recipe=edgeport.Recipe(**recipe),
                                         calib=spec["calib"], eval=spec["eval"],
                                         out=Path(tmp, f"{model_name}-{label}".replace(" ", "_")),
                                         settings=settings, target_options={"ios": options})
                t = report.target("ios")
                size = t.values("size")["size_bytes"]
                weights = sum(t.values("structure")["weight_bytes"].values())
                baseline = baseline or size
                par, acc = t.values("parity"), t.values("accuracy")
                accuracy = f"{100 * acc['accuracy']:.2f}%" if acc else "n/a"
                print(f"{model_name:<24}{label:<15}{size / 1e3:>9.1f}KB{weights / 1e3:>9.1f}KB{baseline / size:>7.2f}"
                      f"{par['cosine']:>10.5f}{100 * par['top1_agreement']:>10.2f}%{accuracy:>10}")


if __name__ == "__main__":
    main()
