"""Export every low-bit variant of the digits CNN to every target and print accuracy and size.

    python -m samples.digits_lowbit.table [--targets onnx,android,ios,browser-tfjs,browser-ort,cortex-m4]

Variants: float (fp32), PTQ int8 (calibrated after training), QAT int8, binary weights, ternary
weights, XNOR (binary weights and inputs); see model.py. Every variant but float exports with the
int8 recipe: the binary and ternary layers become int8 tensors of ±1 (or -1/0/+1) with their
scale α, which the C library packs into 1 (2) bits per weight. Accuracy is measured in each
target's runtime on the 359 test images (Core ML by edgeport's MIL evaluator on Linux).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

TARGETS = ("onnx", "android", "ios", "browser-tfjs", "browser-ort", "cortex-m4")
CALIB, EVAL = "samples/digits/calib.npz", "samples/digits/eval.npz"
VARIANTS = {  # name -> (source, quantize)
    "float": ("samples.digits.model:build", "none"),
    "PTQ int8": ("samples.digits.model:build", "int8"),
    "QAT int8": ("samples.digits_lowbit.model:qat_int8", "int8"),
    "binary weights": ("samples.digits_lowbit.model:binary", "int8"),
    "ternary weights": ("samples.digits_lowbit.model:ternary", "int8"),
    "XNOR": ("samples.digits_lowbit.model:xnor", "int8"),
}


def export_variant(name: str, targets: tuple[str, ...], out: Path, runs: int = 20) -> dict:
    """One variant to `targets`: {target: {"accuracy", "size_bytes", "why", "notes", "library"}}."""
    from edgeport.checks import CheckSettings
    from edgeport.pipeline import export
    from edgeport.recipe import Recipe

    source, quantize = VARIANTS[name]
    chosen = tuple(t for t in targets if quantize == "int8" or not t.startswith("cortex-m"))
    report = export(source, list(chosen), Recipe(quantize=quantize), out, calib=CALIB, eval=EVAL,
                    settings=CheckSettings(runs=runs), target_options={"ios": {"deployment_target": "iOS17"}})
    data = json.loads(report.to_json())
    rows = {}
    for target in data["targets"]:
        checks = target.get("checks", {})
        accuracy = checks.get("accuracy", {})
        row = {"accuracy": accuracy.get("accuracy"), "size_bytes": checks.get("size", {}).get("size_bytes"),
               "why": accuracy.get("reason"), "notes": target.get("notes", [])}
        if target["format"] == "c":
            manifest = json.loads((out / target["artifact"] / "edgeport.json").read_text())
            row["library"] = manifest["library"]
            row["latency"] = checks.get("latency", {})
            row["bit_exact"] = checks.get("bit_exact", {}).get("bit_exact")
        rows[target["target"]] = row
    for target in targets:
        rows.setdefault(target, {"accuracy": None, "size_bytes": None,
                                 "why": "the C library runs int8 kernels" if target.startswith("cortex-m") else ""})
    return rows


def table(targets: tuple[str, ...] = TARGETS, work: Path | None = None) -> dict[str, dict]:
    """Every variant exported: {variant: {target: row}}."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(work or tmp)
        return {name: export_variant(name, targets, work / name.replace(" ", "_")) for name in VARIANTS}


def print_table(results: dict[str, dict], targets: tuple[str, ...]) -> None:
    print("accuracy on the 359 test images / artifact size (KB); Cortex-M: library flash")
    header = f"{'variant':<17}" + "".join(f"{t:>22}" for t in targets)
    print(header)
    print("-" * len(header))
    for name, rows in results.items():
        cells = []
        for target in targets:
            row = rows[target]
            acc = f"{100 * row['accuracy']:.2f}%" if row.get("accuracy") is not None else "n/m"
            size = f"{row['size_bytes'] / 1024:.1f}" if row.get("size_bytes") else "-"
            cells.append(f"{acc} / {size}".rjust(22))
        print(f"{name:<17}" + "".join(cells))
    print("ios: measured by edgeport's MIL evaluator (Core ML predict needs macOS); n/m: the C library takes int8 models only")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default=",".join(TARGETS))
    args = parser.parse_args()
    targets = tuple(t.strip() for t in args.targets.split(",") if t.strip())
    print_table(table(targets), targets)


if __name__ == "__main__":
    main()
