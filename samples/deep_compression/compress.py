"""Deep Compression of LeNet-300-100 for a Cortex-M4, with the paper's table of stages.

    python -m samples.deep_compression.compress [--out out/deep_compression] [--decode kernel|init]

The pruned and clustered weights come from `samples.deep_compression.train` (committed). This
script exports the compressed model with edgeport to the cortex-m4 C library twice, once with
dense int8 weights and once with Huffman-coded sparse palette weights (Deep Compression's
storage), runs both in QEMU, and prints per stage: weight bytes, compression α against float32,
and the accuracy on the 359 test images, each measured where the table says.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

SOURCE = "samples.deep_compression.model:build_compressed"
CALIB, EVAL = "samples/digits/calib.npz", "samples/digits/eval.npz"
TARGET = "cortex-m4"


def pytorch_accuracy(builder) -> float:
    import torch

    from samples.digits.data import evaluation

    x, y = evaluation()
    with torch.no_grad():
        return float((builder()(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


def export_c(out: Path, storage: str, decode: str = "kernel", runs: int = 5) -> dict:
    """Export the compressed model to the C library; returns the report's cortex-m4 entry plus the library."""
    from edgeport.checks import CheckSettings
    from edgeport.pipeline import export
    from edgeport.recipe import Recipe

    # one weight scale per tensor: then a layer's 16 shared values stay 16 int8 values, one table
    recipe = Recipe(quantize="int8", per_channel=False)
    report = export(SOURCE, [TARGET], recipe, out, calib=CALIB, eval=EVAL, settings=CheckSettings(runs=runs),
                    target_options={"mcu": {"storage": storage, "decode": decode}})
    target = json.loads(report.to_json())["targets"][0]
    folder = out / target["artifact"]
    manifest = json.loads((folder / "edgeport.json").read_text())
    return {"report": target, "library": manifest["library"], "tflite": folder / f"{manifest['name']}.tflite"}


def stage_table(decode: str = "kernel", work: Path | None = None) -> dict:
    """Every stage's bytes and accuracy (the data behind the printed table)."""
    from edgeport.mcu.compiler.storage import stage_totals, storage_stages
    from samples.deep_compression import model as lenet

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(work or tmp)
        dense = export_c(work / "dense", "dense")
        deep = export_c(work / "huffman", "huffman", decode)
        rows = storage_stages(dense["tflite"].read_bytes(), "lenet.tflite")
    totals = stage_totals(rows)
    weights = sum(r["count"] for r in rows)
    c_accuracy = {name: e["report"]["checks"]["accuracy"]["accuracy"] for name, e in (("dense", dense), ("deep", deep))}
    float_bytes = 4 * weights
    stages = [
        ("float32", "dense float weights", float_bytes, pytorch_accuracy(lenet.build), "PyTorch"),
        ("pruned", "CSR: nonzero values + relative indices", totals["pruned"], pytorch_accuracy(lenet.build_pruned),
         "PyTorch (pruned float)"),
        ("clustered", "CSR with 4-bit shared-value indices + table", totals["clustered"],
         pytorch_accuracy(lenet.build_compressed), "PyTorch (pruned + clustered float)"),
        ("int8 dense", "what the C library stores without compression", totals["dense"], c_accuracy["dense"],
         "C library in QEMU, dense int8"),
        ("huffman", "both index streams Huffman-coded", totals["huffman"], c_accuracy["deep"],
         f"C library in QEMU, decoded {'on the fly' if decode == 'kernel' else 'at init'}"),
    ]
    return {
        "weights": weights, "nonzeros": sum(r["nonzeros"] for r in rows), "bias_bytes": totals["bias_bytes"],
        "stages": [{"stage": s, "storage": what, "bytes": b, "alpha": float_bytes / b, "accuracy": a, "measured": m}
                   for s, what, b, a, m in stages],
        "layers": rows,
        "library": {name: {"weight_bytes": e["library"]["weight_bytes"], "arena_bytes": e["library"]["arena_bytes"],
                           "decoded_bytes": e["library"].get("decoded_bytes", 0),
                           "weight_storage": e["library"].get("weight_storage", []),
                           "bit_exact": e["report"]["checks"]["bit_exact"].get("bit_exact"),
                           "flash": e["report"]["checks"]["firmware"].get("library_flash_bytes"),
                           "latency": e["report"]["checks"]["latency"]}
                    for name, e in (("dense", dense), ("huffman", deep))},
    }


def print_table(data: dict) -> None:
    float_acc = data["stages"][0]["accuracy"]
    print(f"LeNet-300-100 on the 8x8 digits: {data['weights']:,} weights, {data['nonzeros']:,} nonzero "
          f"({100 * data['nonzeros'] / data['weights']:.1f}%)")
    print(f"{'stage':<11} {'weight bytes':>12} {'α':>7} {'accuracy':>9} {'Δ pts':>6}  measured on / storage")
    for s in data["stages"]:
        print(f"{s['stage']:<11} {s['bytes']:>12,} {s['alpha']:>6.1f}x {100 * s['accuracy']:>8.2f}% "
              f"{100 * (s['accuracy'] - float_acc):>+6.2f}  {s['measured']}; {s['storage']}")
    print(f"biases (int32, not in the stages, as in the paper): {data['bias_bytes']:,} B")
    print("per layer (bytes): " + "; ".join(
        f"{r['op_name']} op {r['op']} {r['shape']}: {r['dense']:,} -> {r['huffman']:,} ({r['nonzeros']:,} nonzero)"
        for r in data["layers"]))
    for name, lib in data["library"].items():
        print(f"C library ({name}): const data {lib['weight_bytes']:,} B, arena {lib['arena_bytes']:,} B, "
              f"decoded weights in RAM {lib['decoded_bytes']:,} B, "
              f"library flash {lib['flash']:,} B, bit-exact with LiteRT: {lib['bit_exact']}, "
              f"latency {lib['latency'].get('p50_ms', float('nan')):.2f} ms (estimate)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decode", choices=("kernel", "init"), default="kernel",
                        help="Huffman-coded weights decoded on the fly (kernel) or once into RAM (init)")
    parser.add_argument("--json", metavar="FILE", help="also write the table's data as JSON")
    args = parser.parse_args()
    data = stage_table(args.decode)
    print_table(data)
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=1, default=lambda v: v.tolist()
                                              if isinstance(v, np.ndarray) else str(v)))


if __name__ == "__main__":
    main()
