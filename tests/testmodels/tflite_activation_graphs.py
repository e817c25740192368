"""Small int8 .tflite graphs of the activation ops (PRELU, LEAKY_RELU, HARD_SWISH, LOGISTIC, TANH),
built with `tflite_graphs.GraphBuilder`, for the Cortex-M C library's checks against LiteRT's
reference kernels: one op with chosen quantization (`activation_graph`, `prelu_graph`) and a
chain of all five (`activations_chain_graph`).
"""

from __future__ import annotations

import numpy as np

from testmodels.tflite_graphs import GraphBuilder, schema

SHAPE = (1, 8, 8, 4)  # 256 values: one input can hold every int8 value


def _unary(g: GraphBuilder, op: str, x: int, scale: float, zero_point: int, alpha: float | None = None) -> int:
    y = g.activation(f"{op.lower()}{len(g.tensors)}", g.shape(x), scale, zero_point)
    options = None
    if op == "LEAKY_RELU":
        options = schema.LeakyReluOptionsT()
        options.alpha = alpha
    g.op(op, [x], [y], options)
    return y


def _prelu(g: GraphBuilder, x: int, alpha_values: np.ndarray, alpha_q: tuple[float, int], out_q: tuple[float, int],
           alpha_scales=None) -> int:
    alpha = g.const(f"alpha{len(g.tensors)}", alpha_values.astype(np.int8),
                    alpha_q[0] if alpha_scales is None else alpha_scales, alpha_q[1], axis=alpha_values.ndim - 1)
    y = g.activation(f"prelu{len(g.tensors)}", g.shape(x), *out_q)
    g.op("PRELU", [x, alpha], [y])
    return y


def activation_graph(op: str, input_q: tuple[float, int], output_q: tuple[float, int], alpha: float | None = None,
                     shape=SHAPE) -> bytes:
    """int8 `shape` -> `op` (LEAKY_RELU, HARD_SWISH, LOGISTIC, TANH) -> int8, with the input and output
    (scale, zero point) given; `alpha` for LEAKY_RELU."""
    g = GraphBuilder(0)
    x = g.activation("input", shape, *input_q)
    return g.build([x], [_unary(g, op, x, *output_q, alpha)])


def prelu_graph(alpha_shape, input_q: tuple[float, int], alpha_q: tuple[float, int], output_q: tuple[float, int],
                seed: int = 0, shape=SHAPE, alpha_scales=None) -> bytes:
    """int8 `shape` -> PRELU with a random int8 alpha of `alpha_shape` (broadcast over the input) ->
    int8. `alpha_scales`: one scale per channel (the last axis) instead of alpha_q's one."""
    g = GraphBuilder(seed)
    x = g.activation("input", shape, *input_q)
    values = g.rng.integers(-128, 128, alpha_shape)
    return g.build([x], [_prelu(g, x, values, alpha_q, output_q, alpha_scales)])


def activations_chain_graph(seed: int = 41) -> bytes:
    """int8 [1, 6, 5, 8] -> PRELU (alpha [1, 1, 8], negative ones too) -> LOGISTIC -> HARD_SWISH -> TANH
    -> LEAKY_RELU (alpha 0.15, output on a finer scale: multiplier > 1) -> int8. In this order each op
    sees a wide range of its input's values (about 100 distinct outputs)."""
    g = GraphBuilder(seed)
    x = g.activation("input", (1, 6, 5, 8), 0.05, 3)
    alpha = g.rng.integers(-60, 128, (1, 1, 8))
    p = _prelu(g, x, alpha, (0.004, -10), (0.04, -30))
    s = _unary(g, "LOGISTIC", p, 1.0 / 256, -128)
    h = _unary(g, "HARD_SWISH", s, 1.0 / 300, -128)
    t = _unary(g, "TANH", h, 1.0 / 256, -128)
    y = _unary(g, "LEAKY_RELU", t, 1.0 / 300, -128, alpha=0.15)
    return g.build([x], [y])
