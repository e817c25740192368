"""android target figures: per model and recipe, TFLite size, α, LiteRT p50 at 1 and 2 threads, δ,
top-1 agreement with PyTorch and digits accuracy; plus the layout overhead of the PyTorch path.

    .venv/bin/python benchmarks/tflite_export.py [--runs 200]

α and δ compare with the float TFLite of the same model, timed interleaved in the same run.
Layout overhead: p50 of the PyTorch-exported float TFLite (NCHW model, converter-inserted
transposes) / p50 of the same digits architecture built natively in Keras (NHWC) and converted
with tf.lite.TFLiteConverter, both in LiteRT in the same run. It needs tensorflow (not an
edgeport dependency); without it the figure is reported as not measured.
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time
from pathlib import Path

from common import MODELS  # noqa: E402  (sets up the repository root first)

import numpy as np  # noqa: E402

import edgeport  # noqa: E402

RECIPES = ["none", "fp16", "dynamic-int8", "weight-only-int8", "int8"]


def keras_digits_tflite(torch_model, path: Path) -> None:
    """The digits CNN rebuilt in Keras (NHWC) with the PyTorch weights, converted by TensorFlow."""
    from edgeport.quiet import quiet

    with quiet():  # TensorFlow logs from C++ on import
        import tensorflow as tf

    sd = {k: v.detach().numpy() for k, v in torch_model.state_dict().items()}
    keras = tf.keras.Sequential([
        tf.keras.Input((8, 8, 1), batch_size=1),
        tf.keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        tf.keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        tf.keras.layers.MaxPool2D(2),
        tf.keras.layers.Permute((3, 1, 2)),  # flatten in PyTorch's (C, H, W) order
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(64, activation="relu"),
        tf.keras.layers.Dense(10),
    ])
    keras.layers[0].set_weights([sd["features.0.weight"].transpose(2, 3, 1, 0), sd["features.0.bias"]])
    keras.layers[1].set_weights([sd["features.2.weight"].transpose(2, 3, 1, 0), sd["features.2.bias"]])
    keras.layers[5].set_weights([sd["classifier.1.weight"].T, sd["classifier.1.bias"]])
    keras.layers[6].set_weights([sd["classifier.3.weight"].T, sd["classifier.3.bias"]])
    with quiet():  # the TF converter logs freely
        path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(keras).convert())


def layout_overhead(runs: int, tmp: Path) -> str:
    if importlib.util.find_spec("tensorflow") is None:
        return "layout overhead: not measured (tensorflow is not installed; pip install tensorflow-cpu)"
    from edgeport.runtimes.litert import LiteRTSession
    from samples.digits.model import build

    report = edgeport.export("samples.digits.model:build", targets="android", eval="samples/digits/eval.npz",
                             out=tmp / "layout", settings=edgeport.CheckSettings(runs=1, warmup=0))
    torch_path = tmp / "layout" / report.target("android").artifact
    keras_path = tmp / "keras.tflite"
    keras_digits_tflite(build(), keras_path)
    x = np.load("samples/digits/eval.npz")["x"][:1]
    sessions = {"pytorch": LiteRTSession(str(torch_path), 1), "keras": LiteRTSession(str(keras_path), 1)}
    feeds = {"pytorch": {"input": x}, "keras": {"input": x.transpose(0, 2, 3, 1)}}
    times = {k: [] for k in sessions}
    for _ in range(20):
        for k, s in sessions.items():
            s.run(feeds[k])
    for _ in range(runs):
        for k, s in sessions.items():
            start = time.perf_counter()
            s.run(feeds[k])
            times[k].append(time.perf_counter() - start)
    p50 = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
    same = np.allclose(sessions["pytorch"].run(feeds["pytorch"])[0], sessions["keras"].run(feeds["keras"])[0], atol=1e-4)
    return (f"layout overhead (digits, float, 1 thread): PyTorch-exported p50 {p50['pytorch']:.4f} ms / "
            f"Keras-native p50 {p50['keras']:.4f} ms = {p50['pytorch'] / p50['keras']:.3f} "
            f"(target <= 1.05; outputs equal: {same})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    settings = edgeport.CheckSettings(runs=args.runs, warmup=20)
    header = (f"{'model':<24}{'recipe':<18}{'size':>10}{'α':>7}{'p50 1t':>9}{'p50 2t':>9}{'δ 1t':>7}{'δ 2t':>7}"
              f"{'top-1 agr':>11}{'accuracy':>10}")
    print(f"LiteRT (XNNPACK), batch 1, {args.runs} timed runs per thread count")
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        for model_name, spec in MODELS.items():
            for recipe in RECIPES:
                report = edgeport.export(spec["source"], targets="android", recipe=edgeport.Recipe(quantize=recipe),
                                         calib=spec["calib"], eval=spec["eval"],
                                         out=Path(tmp, f"{model_name}-{recipe}".replace(" ", "_")), settings=settings)
                t = report.target("android")
                size, lat, par, acc = t.values("size"), t.values("latency"), t.values("parity"), t.values("accuracy")
                one, two = lat["by_threads"]["1"], lat["by_threads"]["2"]
                accuracy = f"{100 * acc['accuracy']:.2f}%" if acc else "n/a"
                print(f"{model_name:<24}{t.recipe.split(' (')[0]:<18}{size['size_bytes'] / 1e3:>8.1f}KB"
                      f"{size['alpha']:>7.2f}{one['p50_ms']:>9.3f}{two['p50_ms']:>9.3f}{one['delta']:>7.2f}"
                      f"{two['delta']:>7.2f}{100 * par['top1_agreement']:>10.2f}%{accuracy:>10}")
        print(layout_overhead(args.runs, Path(tmp)))


if __name__ == "__main__":
    main()
