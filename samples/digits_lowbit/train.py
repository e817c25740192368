"""Train the low-bit variants of the digits CNN from the float teacher (about a minute on 2 cores).

    python -m samples.digits_lowbit.train

QAT int8 and the binary / ternary weight variants start from the trained float CNN and recover
with distillation (Hinton et al.: soft targets of the float model at temperature 4); the XNOR
variant trains its own network from scratch with the same teacher. Rewrites the committed weights.
"""

from __future__ import annotations

import json
import time

import torch

from edgeport.training.distill import fit
from edgeport.training.lowbit import convert_lowbit, prepare_lowbit
from edgeport.training.qat import QATConfig, convert, prepare_qat
from samples.digits.data import digits_split
from samples.digits.model import build
from samples.digits_lowbit.model import CONFIGS, HERE, architecture, weights_path

# (epochs, learning rate) per variant
SCHEDULE = {"qat_int8": (3, 1e-4), "binary": (30, 1e-3), "ternary": (30, 1e-3), "xnor": (60, 2e-3)}


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def train_variant(variant: str, teacher, data, seed: int = 0):
    epochs, lr = SCHEDULE[variant]
    if variant == "qat_int8":
        student = prepare_qat(teacher, QATConfig(), (data[0][:64],))
        fit(student, data, teacher=teacher, epochs=epochs, lr=lr, alpha=0.7, seed=seed)
        return convert(student)
    torch.manual_seed(seed)
    start = teacher if variant != "xnor" else architecture("xnor")
    student = prepare_lowbit(start, CONFIGS[variant])
    fit(student, data, teacher=teacher, epochs=epochs, lr=lr, alpha=0.7, seed=seed)
    return convert_lowbit(student)


def main() -> None:
    torch.set_num_threads(2)
    x_train, y_train, x_test, y_test = (torch.from_numpy(a) for a in digits_split())
    teacher = build()
    print(f"{'float':>9}: test accuracy {100 * accuracy(teacher, x_test, y_test):.2f}%")
    for variant in SCHEDULE:
        start = time.perf_counter()
        model = train_variant(variant, teacher, (x_train, y_train))
        torch.save(model.state_dict(), weights_path(variant))
        if variant == "qat_int8":
            (HERE / "qat_int8_qparams.json").write_text(json.dumps(model.edgeport_qparams, indent=1))
        print(f"{variant:>9}: test accuracy {100 * accuracy(model, x_test, y_test):.2f}% "
              f"({time.perf_counter() - start:.0f} s) -> {weights_path(variant).name}")


if __name__ == "__main__":
    main()
