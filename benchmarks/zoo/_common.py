"""What every zoo family shares: the entry type, seeded construction, input makers."""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from benchmarks.zoo import data

SEED = 0
# Every format edgeport writes. The C library ("c") holds a model only with the int8 recipe and
# when its int8 weights fit the largest board; `Entry.formats` decides that from the weights.
FORMATS = ("onnx", "ort", "tflite", "mlpackage", "tfjs", "c")


@dataclass(frozen=True)
class Input:
    """One model input as the model names it, with its batch-1 shape and dtype."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"


@dataclass(frozen=True)
class Entry:
    """One zoo model.

    Attributes:
        name: Unique name (also the artifact name edgeport gives a factory source).
        family: mobile-cnn, vision-transformer, dense, text, audio, autoencoder, ops or trained.
        source: An edgeport source: `benchmarks.zoo.<module>:<factory>` or an `.onnx` path.
        package: The pip package the definition (or the trained file) comes from.
        inputs: The model's inputs, in order, named as the model names them.
        make_data: `(rng, count) -> {input name: batch-first array}`: realistic inputs.
        outputs: How many outputs the model returns.
        exclude: Formats the model is not expected to fit, with the reason.
    """

    name: str
    family: str
    source: str
    package: str
    inputs: tuple[Input, ...]
    make_data: Callable[[np.random.Generator, int], dict[str, np.ndarray]] = field(repr=False)
    outputs: int = 1
    exclude: tuple[tuple[str, str], ...] = ()

    @property
    def is_onnx(self) -> bool:
        return self.source.endswith(".onnx")

    def missing(self) -> str:
        """Why the entry cannot be used here ("" when it can): its file or package is absent."""
        if self.is_onnx:
            return "" if Path(self.source).is_file() else f"{self.source}: not found"
        module = self.source.partition(":")[0]
        return "" if importlib.util.find_spec(self.package.split("==")[0]) else f"{module}: needs {self.package}"

    def data(self, count: int = 8, seed: int = SEED) -> dict[str, np.ndarray]:
        """`count` realistic samples, keyed by input name (seeded: the same every call)."""
        arrays = self.make_data(np.random.default_rng(seed), count)
        missing = {i.name for i in self.inputs} - set(arrays)
        if missing:
            raise ValueError(f"{self.name}: data misses inputs {sorted(missing)}")
        return arrays

    def write_data(self, folder, count: int = 8, seed: int = SEED, positional: bool = False):
        """Write the samples to `<folder>/<name>.npz`, arrays named after the inputs. `positional`
        also stores each under the name edgeport gives the inputs of a PyTorch model with several
        (`input_0`, `input_1`, ...), so the file matches the model whichever naming it has."""
        arrays = self.data(count, seed)
        if positional and not self.is_onnx and len(self.inputs) > 1:
            arrays.update({f"input_{k}": arrays[i.name] for k, i in enumerate(self.inputs)})
        path = Path(folder) / f"{self.name}.npz"
        np.savez(path, **arrays)
        return path


def seeded(build: Callable):
    """A factory that seeds torch before building, so the random weights are the same every call."""
    @functools.wraps(build)
    def factory():
        import torch

        torch.manual_seed(SEED)
        with torch.no_grad():
            return build().eval()
    return factory


def settle_norms(model, batch: dict[str, np.ndarray] | np.ndarray, passes: int = 2):
    """Give BatchNorm layers the statistics of realistic inputs (a few forward passes in training
    mode, cumulative average), as training would: with their initial statistics (mean 0, var 1)
    a deep random network's activations drift far from the ranges a trained one has."""
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return model.eval()
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    arrays = batch if isinstance(batch, dict) else {"x": batch}
    tensors = [torch.from_numpy(a) for a in arrays.values()]
    model.train()
    with torch.no_grad():
        for _ in range(passes):
            model(*tensors)
    return model.eval()


# ---------------------------------------------------------------- input makers

def image_input(size: int | tuple[int, int], name: str = "x", normalize: str = "imagenet"):
    """An [1, 3, H, W] image input and its data maker."""
    height, width = (size, size) if isinstance(size, int) else size

    def make(rng, count):
        return {name: data.images(rng, count, height, width, normalize)}
    return (Input(name, (1, 3, height, width)),), make


def text_input(length: int, vocab: int):
    """`input_ids` + `attention_mask`, int64 [1, length]."""
    def make(rng, count):
        return data.token_batch(rng, count, length, vocab)
    return (Input("input_ids", (1, length), "int64"), Input("attention_mask", (1, length), "int64")), make
