"""Low-bit figures: the digits_lowbit sample's table (accuracy and size of every variant on every
target), then the Cortex-M4 C library per variant.

    .venv/bin/python benchmarks/lowbit.py [--targets onnx,android,ios,browser-tfjs,browser-ort,cortex-m4]

Targets of the issue: QAT int8 within 0.1 points of float; binary weights within 3 points;
the binarized layers' flash at most 1/6 of their int8 version. Cortex-M figures: the weight bytes
of the binary / ternary layers as the library stores them (packed bits) against the same layers
in int8, the instructions of one inference (unicorn, exact) and the accuracy measured in QEMU.
"""

from __future__ import annotations

import argparse

from common import ROOT  # noqa: F401,E402  (sets up the repository root first)

from samples.digits_lowbit.table import TARGETS, print_table, table  # noqa: E402


def lowbit_layers(library: dict) -> tuple[int, int, list[str]]:
    """(packed bytes, int8 bytes, formats) of the layers stored in fewer than 8 bits."""
    rows = [t for t in library.get("weight_storage", []) if t["format"].startswith(("binary", "ternary"))]
    return sum(t["stored_bytes"] for t in rows), sum(t["dense_bytes"] for t in rows), \
        sorted({t["format"] for t in rows})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default=",".join(TARGETS))
    args = parser.parse_args()
    targets = tuple(t.strip() for t in args.targets.split(",") if t.strip())
    results = table(targets)
    print_table(results, targets)
    float_acc = results["float"][targets[0]]["accuracy"]
    print(f"\nfloat accuracy {100 * float_acc:.2f}%: QAT int8 Δ "
          f"{100 * (results['QAT int8'][targets[0]]['accuracy'] - float_acc):+.2f} pts, binary weights Δ "
          f"{100 * (results['binary weights'][targets[0]]['accuracy'] - float_acc):+.2f} pts ({targets[0]})")
    if "cortex-m4" not in targets:
        return
    print("\nCortex-M4 C library (QEMU; instructions counted by unicorn):")
    header = (f"{'variant':<17}{'low-bit layers: packed B':>26}{'int8 B':>9}{'ratio':>8}{'library flash B':>17}"
              f"{'instructions':>14}{'accuracy':>10}  formats")
    print(header)
    print("-" * len(header))
    for name, rows in results.items():
        row = rows["cortex-m4"]
        if row.get("library") is None:
            continue
        packed, dense, formats = lowbit_layers(row["library"])
        ratio = f"{packed / dense:.3f}" if dense else "-"
        print(f"{name:<17}{packed:>26,}{dense:>9,}{ratio:>8}{row['size_bytes']:>17,}"
              f"{row['latency'].get('instructions', 0):>14,}{100 * row['accuracy']:>9.2f}%  {', '.join(formats) or '-'}")


if __name__ == "__main__":
    main()
