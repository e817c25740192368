"""A tiny transformer encoder classifier, trained here on a synthetic task (no download).

    from benchmarks.zoo import tiny_transformer
    model = tiny_transformer.build()                    # trained (once per seed; cached on disk)
    calib, eval = tiny_transformer.write_data(folder)   # <folder>/tiny_transformer_{calib,eval}.npz

edgeport source: `benchmarks.zoo.tiny_transformer:build` (run from the repository root).

Task: token sequences of `LENGTH` ids over a vocabulary of `VOCAB`; eight marker tokens
(`MARKERS`) are planted among filler tokens, and the class is the marker that occurs most often
(its count is unique: 2 to 5 occurrences, every other marker fewer, as many as fit). A model
must count tokens across the whole sequence, which attention plus mean pooling can do.

Model: `nn.Embedding` + a learned position table, 2 `nn.TransformerEncoder` layers (d_model 64,
4 heads, GELU, feed-forward 128, post-norm), mean pooling over the sequence, a linear head (8
logits). One input, `input_ids`, int64 [N, 16]. edgeport's float ONNX graph of it has a fixed
batch of 1: torch.onnx's dynamo export specializes the batch of `nn.MultiheadAttention` when the
example batch is 1, and edgeport then exports the fixed example shape.

Training: Adam on `TRAIN_SAMPLES` fresh sequences, seeded (`SEED`), on the CPU with one
thread; it stops when the held-out accuracy reaches `TARGET_ACCURACY` after an epoch, after
`EPOCHS` epochs, or after `TIME_LIMIT_S` seconds (the last only on a machine much slower than
expected: the result then depends on the machine's speed, and `train` says so). The trained
state dict is cached in `CACHE_DIR` (in the system's temporary folder, outside the repository:
`out/` is edgeport's default output folder), keyed by the seed and a
hash of this file, so every build after the first (the benchmark's export subprocesses) loads it
instead of retraining. `python -m benchmarks.zoo.tiny_transformer` trains (or loads) and prints
the held-out accuracy.

Data: calibration and eval sequences come from the same generator as training, with their own
seeds (never the training ones); the eval file carries the labels as `y`, like
`samples/digits/eval.npz`.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path

import numpy as np

SEED = 0
VOCAB = 64
LENGTH = 16
MARKERS = (7, 9, 21, 42, 3, 15, 33, 58)  # class k: MARKERS[k] is the most frequent marker
D_MODEL, HEADS, LAYERS, FEEDFORWARD = 64, 4, 2, 128
TRAIN_SAMPLES = 8192
VALID_SAMPLES = 1024
BATCH = 64
EPOCHS = 30
LEARNING_RATE = 2e-3
TARGET_ACCURACY = 0.98  # stop once the held-out accuracy reaches this
REQUIRED_ACCURACY = 0.90  # below this after training, `build` raises: the benchmark needs a trained model
TIME_LIMIT_S = 60.0
INPUT = "input_ids"  # forward()'s argument; data arrays are named after it

ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = Path(tempfile.gettempdir()) / "edgeport-benchmarks"

# data seeds, distinct from training (SEED + 0) and validation (SEED + 1)
CALIB_SEED_OFFSET, EVAL_SEED_OFFSET = 2, 3


def sequences(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` sequences, int64 [N, LENGTH], and their classes, int64 [N]."""
    fillers = np.array([t for t in range(VOCAB) if t not in MARKERS], np.int64)
    ids = np.empty((count, LENGTH), np.int64)
    labels = rng.integers(0, len(MARKERS), count).astype(np.int64)
    for row, label in enumerate(labels):
        top = int(rng.integers(2, 6))
        counts = [0] * len(MARKERS)
        counts[label] = top
        for k in rng.permutation(len(MARKERS)):  # the others: fewer than `top`, while room is left
            if k != label:
                counts[k] = int(rng.integers(0, min(top, LENGTH - sum(counts) + 1)))
        planted = np.concatenate([np.full(c, MARKERS[k], np.int64) for k, c in enumerate(counts)])
        filler = rng.choice(fillers, LENGTH - len(planted))
        ids[row] = rng.permutation(np.concatenate([planted, filler]))
    return ids, labels


def _torch():
    import torch
    from torch import nn

    class TinyTransformer(nn.Module):
        """Embedding + positions, 2 transformer encoder layers, mean pooling, linear head."""

        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(VOCAB, D_MODEL)
            self.position = nn.Parameter(torch.zeros(1, LENGTH, D_MODEL))
            layer = nn.TransformerEncoderLayer(D_MODEL, HEADS, dim_feedforward=FEEDFORWARD, dropout=0.0,
                                               activation="gelu", batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, LAYERS, enable_nested_tensor=False)
            self.head = nn.Linear(D_MODEL, len(MARKERS))

        def forward(self, input_ids):
            hidden = self.encoder(self.embed(input_ids) + self.position)
            return self.head(hidden.mean(dim=1))

    return torch, TinyTransformer


def _fingerprint() -> str:
    """Changes when this file (model, task or training) changes: a stale cache is never loaded."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]


def cache_path(seed: int = SEED) -> Path:
    return CACHE_DIR / f"tiny_transformer-seed{seed}-{_fingerprint()}.pt"


def train(seed: int = SEED, verbose: bool = False) -> tuple[dict, dict]:
    """Train from scratch; (state dict, facts: held-out accuracy, epochs, seconds, why it stopped)."""
    torch, TinyTransformer = _torch()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # same numbers on every machine, and polite on a shared one
    try:
        torch.manual_seed(seed)
        model = TinyTransformer()
        x, y = (torch.from_numpy(a) for a in sequences(np.random.default_rng(seed), TRAIN_SAMPLES))
        vx, vy = (torch.from_numpy(a) for a in sequences(np.random.default_rng(seed + 1), VALID_SAMPLES))
        optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
        order = torch.Generator().manual_seed(seed)
        started, accuracy, stopped, epoch = time.perf_counter(), 0.0, f"{EPOCHS} epochs", 0
        for epoch in range(1, EPOCHS + 1):
            model.train()
            for batch in torch.randperm(TRAIN_SAMPLES, generator=order).split(BATCH):
                optimizer.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
                loss.backward()
                optimizer.step()
            model.eval()
            with torch.no_grad():
                accuracy = float((model(vx).argmax(1) == vy).float().mean())
            if verbose:
                print(f"epoch {epoch}: loss {float(loss.detach()):.4f}, held-out accuracy {accuracy:.4f}", flush=True)
            if accuracy >= TARGET_ACCURACY:
                stopped = f"held-out accuracy >= {TARGET_ACCURACY}"
                break
            if time.perf_counter() - started > TIME_LIMIT_S:
                stopped = f"time limit {TIME_LIMIT_S:.0f} s (machine-dependent result)"
                break
        facts = {"seed": seed, "held_out_accuracy": round(accuracy, 4), "epochs": epoch,
                 "seconds": round(time.perf_counter() - started, 1), "stopped": stopped}
        return {k: v.detach().clone() for k, v in model.state_dict().items()}, facts
    finally:
        torch.set_num_threads(threads)


_BUILT: dict[int, dict] = {}  # seed -> state dict, this process


def trained_state(seed: int = SEED, verbose: bool = False) -> tuple[dict, dict]:
    """The trained state dict and its facts: from this process, else the cache file, else trained
    now (and cached; written atomically, so concurrent builds never read half a file)."""
    import torch

    path = cache_path(seed)
    if seed not in _BUILT:
        if path.is_file():
            saved = torch.load(path, weights_only=True)
        else:
            state, facts = train(seed, verbose)
            if facts["held_out_accuracy"] < REQUIRED_ACCURACY:
                raise RuntimeError(f"tiny_transformer: held-out accuracy {facts['held_out_accuracy']:.3f} after "
                                   f"training ({facts['stopped']}), below {REQUIRED_ACCURACY}")
            saved = {"state": state, "facts": facts}
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".part")
            os.close(handle)
            torch.save(saved, temporary)
            os.replace(temporary, path)
            for stale in path.parent.glob(f"tiny_transformer-seed{seed}-*.pt"):  # earlier versions of this file
                if stale != path:
                    stale.unlink(missing_ok=True)
        _BUILT[seed] = saved
    saved = _BUILT[seed]
    return saved["state"], saved["facts"]


def build(seed: int = SEED):
    """The trained tiny transformer (eval mode): input `input_ids` int64 [N, 16], output 8 logits."""
    _, TinyTransformer = _torch()
    model = TinyTransformer()
    model.load_state_dict(trained_state(seed)[0])
    return model.eval()


def write_data(folder, calib_count: int = 64, eval_count: int = 256, seed: int = SEED) -> tuple[Path, Path]:
    """`<folder>/tiny_transformer_calib.npz` (`input_ids`) and `..._eval.npz` (`input_ids`, labels
    `y`), from seeds distinct from the training data's."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    calib_ids, _ = sequences(np.random.default_rng(seed + CALIB_SEED_OFFSET), calib_count)
    eval_ids, eval_labels = sequences(np.random.default_rng(seed + EVAL_SEED_OFFSET), eval_count)
    calib, evaluation = folder / "tiny_transformer_calib.npz", folder / "tiny_transformer_eval.npz"
    np.savez(calib, **{INPUT: calib_ids})
    np.savez(evaluation, **{INPUT: eval_ids, "y": eval_labels})
    return calib, evaluation


if __name__ == "__main__":
    state, facts = trained_state(verbose=True)
    print(f"tiny_transformer: {facts} (cache {cache_path()})")
