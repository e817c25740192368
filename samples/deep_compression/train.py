"""Deep Compression's training stages on LeNet-300-100 and the digits (about 30 s on 2 cores):

1. train the float model;
2. prune gradually (Zhu & Gupta's schedule) to 20 % of fc1, 7 % of fc2 and 30 % of fc3 kept (the paper:
   8 %, 9 %, 26 %; the 64-input fc1 of the digits needs more), fine-tuned from the float teacher;
3. share weights: 16 k-means centroids per layer (4-bit indices), centroids fine-tuned.

    python -m samples.deep_compression.train

It rewrites the three committed weight files; the export (and its Huffman stage) is
`python -m samples.deep_compression.compress`.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from edgeport.training import pruning, weight_sharing
from edgeport.training.distill import distillation_loss
from samples.deep_compression.model import WEIGHTS, LeNet300100
from samples.digits.data import digits_split

BATCH = 64
FLOAT_EPOCHS, PRUNE_EPOCHS, TUNE_EPOCHS, CENTROID_EPOCHS = 60, 60, 60, 30
SPARSITY = {"classifier.1": 0.8, "classifier.3": 0.93, "classifier.5": 0.7}  # Han et al. keep 8%, 9%, 26%
PALETTE_BITS = 4


def _epochs(model, params, data, epochs: int, lr: float, seed: int, after_step=None, teacher=None) -> None:
    x, y = data
    optimizer = torch.optim.Adam(params, lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    generator = torch.Generator().manual_seed(seed)
    step = 0
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(x), generator=generator).split(BATCH):
            optimizer.zero_grad()
            if teacher is None:
                loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            else:  # recover from the float model's soft targets (Hinton et al.)
                with torch.no_grad():
                    soft = teacher(x[idx])
                loss = distillation_loss(model(x[idx]), soft, y[idx], temperature=4.0, alpha=0.7)
            loss.backward()
            optimizer.step()
            if after_step is not None:
                after_step(step)
            step += 1
        scheduler.step()
    model.eval()


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def train(seed: int = 0) -> dict[str, tuple[LeNet300100, float]]:
    torch.manual_seed(seed)
    torch.set_num_threads(2)
    x_train, y_train, x_test, y_test = (torch.from_numpy(a) for a in digits_split())
    data = (x_train, y_train)
    steps_per_epoch = -(-len(x_train) // BATCH)
    stages = {}

    model = LeNet300100()
    _epochs(model, model.parameters(), data, FLOAT_EPOCHS, 1e-3, seed)
    stages["float"] = (model, accuracy(model, x_test, y_test))

    pruned = LeNet300100()
    pruned.load_state_dict(model.state_dict())
    config = pruning.GradualPruningConfig(final_sparsity=SPARSITY["classifier.1"], layer_sparsity=SPARSITY,
                                          begin_step=0, end_step=PRUNE_EPOCHS * steps_per_epoch * 2 // 3,
                                          frequency=steps_per_epoch)
    pruner = pruning.GradualPruner(pruned, config)
    _epochs(pruned, pruned.parameters(), data, PRUNE_EPOCHS, 5e-4, seed + 1, after_step=pruner.step, teacher=model)
    _epochs(pruned, pruned.parameters(), data, TUNE_EPOCHS, 2e-4, seed + 2, after_step=pruner.step, teacher=model)
    pruner.finalize()
    stages["pruned"] = (pruned, accuracy(pruned, x_test, y_test))

    clustered = LeNet300100()
    clustered.load_state_dict(pruned.state_dict())
    shared = weight_sharing.share_weights(clustered, PALETTE_BITS)
    # only the centroids and biases train: indices and zeros are fixed (Deep Compression, section 3.3)
    params = weight_sharing.centroid_parameters(shared) + [m.bias for m in clustered.modules()
                                                           if isinstance(m, nn.Linear)]
    _epochs(clustered, params, data, CENTROID_EPOCHS, 2e-4, seed + 3, teacher=model)
    weight_sharing.finalize(clustered)
    stages["clustered"] = (clustered, accuracy(clustered, x_test, y_test))
    return stages


def main() -> None:
    start = time.perf_counter()
    stages = train()
    for stage, (model, acc) in stages.items():
        torch.save(model.state_dict(), WEIGHTS[stage])
        print(f"{stage:>9}: test accuracy {100 * acc:.2f}%  sparsity {100 * pruning.sparsity(model):.1f}%  "
              f"-> {WEIGHTS[stage].name}")
    print(f"trained in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
