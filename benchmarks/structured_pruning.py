"""Structured pruning figures: a model with half of its channels removed, against the model as given.

    .venv/bin/python benchmarks/structured_pruning.py [--runs 300] [--fraction 0.5]

Per model: parameters, ONNX size and α, onnxruntime p50 and δ (the latency check times the
pruned artifact and the original float model interleaved in the same run), top-1 agreement with
the original (no fine-tuning here: fine-tune with `edgeport.training.pruning.prune_channels` to
recover it), and for the digits CNN the Cortex-M4 C library's arena and flash, int8, with and
without pruning.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from common import MODELS  # noqa: E402  (sets up the repository root first)

import edgeport  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--fraction", type=float, default=0.5)
    args = parser.parse_args()
    settings = edgeport.CheckSettings(runs=args.runs, warmup=30, threads=1)
    print(f"onnxruntime, batch 1, 1 thread, {args.runs} timed runs; {args.fraction:.0%} of channels removed "
          "(no fine-tuning)")
    header = (f"{'model':<24}{'params':>18}{'size KB':>18}{'α':>6}{'p50 ms':>16}{'δ':>6}{'top-1 agr':>11}")
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        for name, spec in MODELS.items():
            report = edgeport.export(spec["source"], targets="onnx", out=Path(tmp, name.split()[0]),
                                     recipe=edgeport.Recipe(prune_channels=args.fraction),
                                     calib=spec["calib"], eval=spec["eval"], settings=settings)
            plan = json.loads((Path(tmp, name.split()[0]) / "quant_params.json").read_text())["structure"]
            t = report.target("onnx")
            size, lat, par = t.values("size"), t.values("latency"), t.values("parity")
            before, after = plan["params"]
            print(f"{name:<24}{before:>9,} -> {after:<7,}{size['float_size_bytes'] / 1e3:>8.1f} -> "
                  f"{size['size_bytes'] / 1e3:<7.1f}{size['alpha']:>6.2f}{lat['p50_ms'] * lat['delta']:>7.3f} -> "
                  f"{lat['p50_ms']:<6.3f}{lat['delta']:>6.2f}{100 * par['top1_agreement']:>10.2f}%")
        spec = MODELS["digits CNN"]
        arena = {}
        for label, fraction in (("dense", None), ("pruned", args.fraction)):
            out = Path(tmp, f"mcu-{label}")
            edgeport.export(spec["source"], targets="cortex-m4", out=out, calib=spec["calib"], eval=spec["eval"],
                            recipe=edgeport.Recipe(quantize="int8", prune_channels=fraction),
                            settings=edgeport.CheckSettings(runs=5))
            library = json.loads((out / "cortex-m4" / "digits" / "edgeport.json").read_text())["library"]
            arena[label] = library
        d, p = arena["dense"], arena["pruned"]
        print(f"\ndigits CNN on cortex-m4 (int8 C library): arena {d['arena_bytes']:,} -> {p['arena_bytes']:,} B "
              f"({p['arena_bytes'] / d['arena_bytes']:.2f}x), const data {d['weight_bytes']:,} -> "
              f"{p['weight_bytes']:,} B ({p['weight_bytes'] / d['weight_bytes']:.2f}x), MACs {d['macs']:,} -> "
              f"{p['macs']:,} ({p['macs'] / d['macs']:.2f}x)")


if __name__ == "__main__":
    main()
