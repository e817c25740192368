"""The float model every recipe and exporter starts from.

Whatever the source (PyTorch factory, .pt2, .onnx), it becomes one float32 ONNX graph plus a
reference function that computes the float outputs (PyTorch itself when the source is PyTorch).
Quantization parameters are computed on this graph once and shared by every target.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from edgeport.params import ParamMap
from edgeport.tensors import TensorSpec

ReferenceFn = Callable[[dict[str, np.ndarray]], list[np.ndarray]]


@dataclass
class FloatModel:
    """A float32 ONNX graph with its I/O and a reference implementation.

    Attributes:
        name: Artifact base name (e.g. "digits").
        onnx_bytes: Serialized float32 ONNX model.
        inputs / outputs: Tensor specs; a `None` dim is the dynamic batch dim.
        reference: Computes float outputs for a feed dict (batched along dim 0).
        reference_kind: What `reference` runs ("pytorch" or "onnxruntime fp32").
        layers: ONNX node name -> source layer name (PyTorch module path where known).
        source: What the model was loaded from, for the report.
        torch_module: The PyTorch module (PyTorch sources only), for converters that start from it.
        example_inputs: Example tensors for `torch_module` (batch 1).
        tflite_bytes: The model file when the source is an existing .tflite (then `onnx_bytes` is
            empty and `reference` runs LiteRT's reference kernels on it).
        learned_qparams: Quantization numbers learned in training, when the PyTorch module carries
            them as `edgeport_qparams` (set by `edgeport.training.qat.convert`): {"bits": 8,
            "weights": {parameter path: {"scale": [...], "axis": 0 or None}}, "activations":
            {module path: [lo, hi]}}. The int8 plan uses them instead of its own rule. Only a
            `module:factory` source keeps them: a `.pt2` program holds no module attributes.
        params: Which PyTorch parameter each ONNX initializer is (`edgeport.params.ParamMap`),
            made when the source is loaded and kept in step when the weights are rewritten;
            converters that start from `torch_module` find the plan's weights through it.
    """

    name: str
    onnx_bytes: bytes
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    reference: ReferenceFn
    reference_kind: str
    layers: dict[str, str] = field(default_factory=dict)
    source: str = ""
    torch_module: object | None = None
    example_inputs: tuple = ()
    tflite_bytes: bytes | None = None
    learned_qparams: dict | None = None
    params: ParamMap = field(default_factory=ParamMap)

    def onnx_model(self):
        import onnx

        return onnx.load_from_string(self.onnx_bytes)
