"""Train the digits CNN and write digits_cnn.pt, calib.npz and eval.npz (about 10 s on 2 cores).

    python -m samples.digits.train
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from samples.digits.data import calibration, digits_split, evaluation
from samples.digits.model import HERE, WEIGHTS, DigitsCNN

EPOCHS = 40
BATCH = 64


def train(epochs: int = EPOCHS, seed: int = 0) -> tuple[DigitsCNN, float]:
    torch.manual_seed(seed)
    torch.set_num_threads(2)
    x_train, y_train, x_test, y_test = (torch.from_numpy(a) for a in digits_split())
    model = DigitsCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(x_train), generator=generator).split(BATCH):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
            loss.backward()
            optimizer.step()
        scheduler.step()
    model.eval()
    with torch.no_grad():
        accuracy = float((model(x_test).argmax(1) == y_test).float().mean())
    return model, accuracy


def main() -> None:
    start = time.perf_counter()
    model, accuracy = train()
    torch.save(model.state_dict(), WEIGHTS)
    np.savez_compressed(HERE / "calib.npz", x=calibration())
    x_test, y_test = evaluation()
    np.savez_compressed(HERE / "eval.npz", x=x_test, y=y_test)
    print(f"trained in {time.perf_counter() - start:.1f} s; test accuracy {100 * accuracy:.2f}% "
          f"({len(y_test)} images); wrote {WEIGHTS.name}, calib.npz, eval.npz")


if __name__ == "__main__":
    main()
