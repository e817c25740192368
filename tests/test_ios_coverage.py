"""Core ML coverage (#15): the PyTorch ops coremltools needs help with, and the MIL ops edgeport's
evaluator runs, each checked against PyTorch.

Evaluator ops (fast): each op function against the PyTorch op computing the same thing, in float32;
tolerances are explicit per test (float32 rounding: 1e-5 relative for single ops; 2e-6 absolute
for the erf approximation, whose error is at most 1.5e-7 before the float32 rounding).

Conversions (e2e): small modules hitting each rewrite in `coreml_torch_ops`, exported to ios with
fp32 compute precision and checked by the evaluator against PyTorch (cosine >= 0.9999, the fp32
floor of conftest's TOLERANCES).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from conftest import TOLERANCES

from edgeport.errors import InputError, UnsupportedOpError

torch = pytest.importorskip("torch")
F = torch.nn.functional
needs_coremltools = pytest.mark.skipif(importlib.util.find_spec("coremltools") is None,
                                       reason="coremltools is not installed")
RTOL, ATOL = 1e-5, 1e-5  # one float32 op against PyTorch's


def mil(op: str):
    from edgeport.runtimes.coreml import MIL_OPS

    return MIL_OPS.get(op)


def rand(*shape, seed=0, scale=1.0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def close(got, want, rtol=RTOL, atol=ATOL):
    want = want.detach().numpy() if isinstance(want, torch.Tensor) else np.asarray(want)
    assert np.shape(got) == want.shape
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), want, rtol=rtol, atol=atol)


# ------------------------------------------------------------------ activations and math

@needs_coremltools
@pytest.mark.parametrize("mode, approximate", [("EXACT", "none"), ("TANH_APPROXIMATION", "tanh")])
def test_gelu(mode, approximate):
    x = rand(2, 3, 50, scale=4)
    close(mil("gelu")(x, mode=mode), F.gelu(torch.from_numpy(x), approximate=approximate), atol=2e-6)


@needs_coremltools
def test_erf_and_sigmoid_family():
    x = rand(1000, scale=5)
    t = torch.from_numpy(x)
    from edgeport.runtimes.mil_ops_nn import erf

    close(erf(x), torch.erf(t), atol=2e-6)
    close(mil("silu")(x), F.silu(t))
    close(mil("elu")(x, alpha=0.7), F.elu(t, alpha=0.7))
    close(mil("leaky_relu")(x, alpha=0.1), F.leaky_relu(t, 0.1))
    close(mil("softplus")(x), F.softplus(t))
    # coremltools writes hardswish as x * sigmoid_hard(x, 1/6, 0.5) and hardsigmoid as sigmoid_hard
    close(mil("sigmoid_hard")(x, alpha=1 / 6, beta=0.5), F.hardsigmoid(t))
    close(mil("thresholded_relu")(x, alpha=0.5), F.threshold(t, 0.5, 0.0))
    close(mil("sqrt")(np.abs(x)), torch.sqrt(t.abs()))
    close(mil("pow")(x, 2.0), t ** 2)
    close(mil("square")(x), t * t)


@needs_coremltools
def test_prelu_per_channel():
    x, alpha = rand(2, 4, 7), np.float32([0.1, 0.2, -0.3, 2.0])
    close(mil("prelu")(x, alpha), F.prelu(torch.from_numpy(x), torch.from_numpy(alpha)))


# ------------------------------------------------------------------ normalizations

@needs_coremltools
def test_layer_norm_over_last_axes():
    x, gamma, beta = rand(2, 5, 6, 8), rand(6, 8, seed=1), rand(6, 8, seed=2)
    got = mil("layer_norm")(x, axes=np.int32([-2, -1]), gamma=gamma, beta=beta, epsilon=1e-5)
    close(got, F.layer_norm(torch.from_numpy(x), (6, 8), torch.from_numpy(gamma), torch.from_numpy(beta), 1e-5))


@needs_coremltools
def test_scaled_dot_product_attention_with_and_without_masks():
    """iOS18's fused attention (Core ML's program for nn.MultiheadAttention): float and bool masks."""
    q, k, v = rand(2, 3, 5, 8), rand(2, 3, 7, 8, seed=1), rand(2, 3, 7, 4, seed=2)
    tq, tk, tv = map(torch.from_numpy, (q, k, v))
    close(mil("scaled_dot_product_attention")(q, k, v), F.scaled_dot_product_attention(tq, tk, tv))
    additive = rand(5, 7, seed=3)
    close(mil("scaled_dot_product_attention")(q, k, v, attn_mask=additive),
          F.scaled_dot_product_attention(tq, tk, tv, attn_mask=torch.from_numpy(additive)))
    keep = np.random.default_rng(4).random((5, 7)) > 0.3
    keep[:, 0] = True  # every query sees at least one key
    close(mil("scaled_dot_product_attention")(q, k, v, attn_mask=keep),
          F.scaled_dot_product_attention(tq, tk, tv, attn_mask=torch.from_numpy(keep)))


@needs_coremltools
def test_batch_and_instance_norm():
    x = rand(2, 4, 5, 6, scale=3)
    mean, var, gamma, beta = rand(4, seed=1), np.abs(rand(4, seed=2)) + 0.5, rand(4, seed=3), rand(4, seed=4)
    t = [torch.from_numpy(a) for a in (x, mean, var, gamma, beta)]
    close(mil("batch_norm")(x, mean, var, gamma, beta, 1e-5), F.batch_norm(t[0], t[1], t[2], t[3], t[4], eps=1e-5))
    close(mil("instance_norm")(x, gamma, beta, 1e-5), F.instance_norm(t[0], weight=t[3], bias=t[4], eps=1e-5),
          atol=1e-4)


# ------------------------------------------------------------------ resizing and transposed convolution

@needs_coremltools
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("scale", [2.0, 3.0])
def test_upsample_bilinear(align_corners, scale):
    x = rand(1, 3, 5, 7)
    want = F.interpolate(torch.from_numpy(x), scale_factor=scale, mode="bilinear", align_corners=align_corners)
    close(mil("upsample_bilinear")(x, scale, scale, align_corners=align_corners), want)


@needs_coremltools
def test_upsample_nearest_neighbor():
    x = rand(1, 3, 4, 5)
    close(mil("upsample_nearest_neighbor")(x, 2.0, 3.0),
          F.interpolate(torch.from_numpy(x), scale_factor=(2.0, 3.0), mode="nearest"))


@needs_coremltools
@pytest.mark.parametrize("stride, padding, output_padding, groups, dilation",
                         [(2, 1, 0, 1, 1), (2, 1, 1, 2, 1), (1, 0, 0, 1, 2), (3, 2, 2, 1, 1)])
def test_conv_transpose_2d(stride, padding, output_padding, groups, dilation):
    layer = torch.nn.ConvTranspose2d(4, 6, 3, stride=stride, padding=padding, output_padding=output_padding,
                                     groups=groups, dilation=dilation)
    x = rand(1, 4, 5, 6)
    want = layer(torch.from_numpy(x))
    got = mil("conv_transpose")(x, layer.weight.detach().numpy(), layer.bias.detach().numpy(),
                                pad=np.int32([padding] * 4), output_shape=np.int32(want.shape),
                                pad_type="custom", strides=np.int32([stride] * 2),
                                dilations=np.int32([dilation] * 2), groups=groups)
    close(got, want)


@needs_coremltools
def test_conv_transpose_1d_without_output_shape():
    layer = torch.nn.ConvTranspose1d(3, 2, 4, stride=2, padding=1)
    x = rand(2, 3, 9)
    got = mil("conv_transpose")(x, layer.weight.detach().numpy(), layer.bias.detach().numpy(),
                                pad=np.int32([1, 1]), pad_type="custom", strides=np.int32([2]))
    close(got, layer(torch.from_numpy(x)))


@needs_coremltools
def test_conv_1d_and_pools_with_ceil_mode():
    weight, x = rand(6, 2, 3, seed=1), rand(1, 4, 11)
    got = mil("conv")(x, weight, None, strides=np.int32([2]), pad_type="custom", pad=np.int32([1, 1]),
                      dilations=np.int32([1]), groups=2)
    close(got, F.conv1d(torch.from_numpy(x), torch.from_numpy(weight), stride=2, padding=1, groups=2))
    image = rand(1, 2, 9, 10)
    t = torch.from_numpy(image)
    close(mil("max_pool")(image, np.int32([3, 3]), np.int32([2, 2]), "valid", np.int32([0] * 4), ceil_mode=True),
          F.max_pool2d(t, 3, 2, ceil_mode=True))
    close(mil("max_pool")(image, np.int32([3, 3]), np.int32([2, 2]), "custom", np.int32([1] * 4), ceil_mode=True),
          F.max_pool2d(t, 3, 2, padding=1, ceil_mode=True))
    for exclude in (False, True):
        close(mil("avg_pool")(image, np.int32([3, 3]), np.int32([2, 2]), "custom", np.int32([1] * 4),
                              exclude_padding_from_average=exclude, ceil_mode=True),
              F.avg_pool2d(t, 3, 2, padding=1, ceil_mode=True, count_include_pad=not exclude))
    close(mil("avg_pool")(x, np.int32([3]), np.int32([2]), "valid", None), F.avg_pool1d(torch.from_numpy(x), 3, 2))


# ------------------------------------------------------------------ tensor ops

@needs_coremltools
def test_slice_by_index_masks():
    x = rand(3, 5, 7)
    got = mil("slice_by_index")(x, np.int32([1, -1, 0]), np.int32([0, 5, 6]), stride=np.int32([1, 1, 2]),
                                begin_mask=[False, False, True], end_mask=[True, False, False],
                                squeeze_mask=[False, True, False])
    close(got, x[1:, -1, 0:6:2], rtol=0, atol=0)
    close(mil("slice_by_index")(x, np.int32([0, 1, 2]), np.int32([2, 4, 7])), x[0:2, 1:4, 2:7], rtol=0, atol=0)
    close(mil("slice_by_size")(x, np.int32([1, 0, 2]), np.int32([2, -1, 3])), x[1:3, :, 2:5], rtol=0, atol=0)


@needs_coremltools
def test_split_tile_pad_fill():
    x = rand(2, 6, 4)
    parts = mil("split")(x, split_sizes=np.int32([1, 2, 3]), axis=1)
    assert [p.shape[1] for p in parts] == [1, 2, 3]
    close(np.concatenate(parts, axis=1), x, rtol=0, atol=0)
    assert len(mil("split")(x, num_splits=2, axis=-1)) == 2
    t = torch.from_numpy(x)
    close(mil("tile")(x, np.int32([1, 2, 3])), t.repeat(1, 2, 3), rtol=0, atol=0)
    for mode, torch_mode in (("constant", "constant"), ("reflect", "reflect"), ("replicate", "replicate")):
        close(mil("pad")(x, np.int32([1, 2, 2, 1]), mode=mode, constant_val=0.0), F.pad(t, (2, 1, 1, 2), torch_mode),
              rtol=0, atol=0)
    close(mil("fill_like")(x, -3.5), torch.full_like(t, -3.5), rtol=0, atol=0)
    close(mil("band_part")(rand(3, 4), lower=0, upper=-1), torch.triu(torch.from_numpy(rand(3, 4))), rtol=0, atol=0)


@needs_coremltools
def test_concat_interleave():
    """Core ML writes ShuffleNet's channel shuffle as one interleaved concat."""
    a, b = rand(1, 3, 2, 2), rand(1, 3, 2, 2, seed=1)
    want = torch.stack([torch.from_numpy(a), torch.from_numpy(b)], dim=2).reshape(1, 6, 2, 2)
    close(mil("concat")([a, b], axis=1, interleave=True), want, rtol=0, atol=0)


@needs_coremltools
def test_gather_and_scatter():
    x = rand(5, 3)
    close(mil("gather")(x, np.int32([4, -1, 0]), axis=0), x[[4, 4, 0]], rtol=0, atol=0)
    indices = np.int32([[0, 2], [1, 1]])
    close(mil("gather_along_axis")(rand(2, 3), indices, axis=1),
          torch.gather(torch.from_numpy(rand(2, 3)), 1, torch.from_numpy(indices).long()), rtol=0, atol=0)
    data, updates = rand(4, 3), rand(2, 3, seed=1)
    want = torch.from_numpy(data).index_add(0, torch.tensor([3, 1]), torch.from_numpy(updates))
    close(mil("scatter")(data, np.int32([3, 1]), updates, axis=0, mode="add"), want)
    got = mil("scatter")(data, np.int32([2]), updates[:1], axis=0, mode="update")
    assert np.array_equal(got[2], updates[0]) and np.array_equal(got[0], data[0])


@needs_coremltools
def test_gather_nd():
    """transformers' attention masks reach Core ML as a gather_nd of (row, column) pairs."""
    x = rand(3, 4, 5)
    pairs = np.int32([[[0, 1], [2, -1]], [[1, 3], [0, 0]]])
    want = np.stack([x[0, 1], x[2, 3], x[1, 3], x[0, 0]]).reshape(2, 2, 5)
    close(mil("gather_nd")(x, pairs), want, rtol=0, atol=0)
    batched = mil("gather_nd")(x, np.int32([[[1]], [[0]], [[3]]]), batch_dims=1)
    close(batched, np.stack([x[0, [1]], x[1, [0]], x[2, [3]]]), rtol=0, atol=0)


def _mil_gates(weight: torch.Tensor) -> np.ndarray:
    """PyTorch stores LSTM gates [input, forget, cell, output]; MIL [input, forget, output, cell]."""
    i, f, g, o = weight.detach().numpy().reshape(4, -1, *weight.shape[1:])
    return np.concatenate([i, f, o, g])


@needs_coremltools
@pytest.mark.parametrize("bidirectional", [False, True])
def test_lstm(bidirectional):
    torch.manual_seed(0)
    layer = torch.nn.LSTM(6, 5, bidirectional=bidirectional)
    x, directions = rand(7, 2, 6), 1 + bidirectional
    h0, c0 = rand(directions, 2, 5, seed=1), rand(directions, 2, 5, seed=2)
    want, (want_h, want_c) = layer(torch.from_numpy(x), (torch.from_numpy(h0), torch.from_numpy(c0)))
    params = {}
    for suffix, key in (("", ""), ("_reverse", "_back")):
        if suffix and not bidirectional:
            continue
        params[f"weight_ih{key}"] = _mil_gates(getattr(layer, f"weight_ih_l0{suffix}"))
        params[f"weight_hh{key}"] = _mil_gates(getattr(layer, f"weight_hh_l0{suffix}"))
        params[f"bias{key}"] = _mil_gates(getattr(layer, f"bias_ih_l0{suffix}") + getattr(layer, f"bias_hh_l0{suffix}"))
    states = [np.concatenate(list(s), axis=-1) for s in (h0, c0)]  # [b, directions * H]
    out, h, c = mil("lstm")(x, *states, direction="bidirectional" if bidirectional else "forward",
                            output_sequence=True, **params)
    close(out, want, atol=1e-5)
    close(h, torch.cat(list(want_h), dim=-1), atol=1e-5)
    close(c, torch.cat(list(want_c), dim=-1), atol=1e-5)
    last, _, _ = mil("lstm")(x, *states, direction="bidirectional" if bidirectional else "forward", **params)
    close(last[0], torch.cat(list(want_h), dim=-1), atol=1e-5)


@needs_coremltools
def test_reverse():
    x = rand(2, 3, 4)
    close(mil("reverse")(x, np.int32([1, -1])), torch.from_numpy(x).flip(1, 2), rtol=0, atol=0)


@needs_coremltools
def test_unknown_modes_are_named_not_guessed():
    with pytest.raises(NotImplementedError, match="pad mode 'circular'"):
        mil("pad")(rand(2, 3), np.int32([1, 1]), mode="circular")
    with pytest.raises(NotImplementedError, match="gelu mode"):
        mil("gelu")(rand(3), mode="CUBIC")


# ------------------------------------------------------------------ control flow (a MIL program with a loop)

@needs_coremltools
@pytest.mark.e2e  # a MIL program saved as a package: ~10 s
def test_while_loop_runs_its_blocks(tmp_path):
    """A loop that adds x to an accumulator three times: the session runs the condition and body
    blocks with the enclosing values in scope."""
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb

    from edgeport.quiet import quiet
    from edgeport.runtimes.coreml import MilSession

    @mb.program(input_specs=[mb.TensorSpec(shape=(2, 3))], opset_version=ct.target.iOS16)
    def program(x):
        def condition(i, acc):
            return mb.less(x=i, y=np.int32(3))

        def body(i, acc):
            return mb.add(x=i, y=np.int32(1)), mb.add(x=acc, y=x)

        _, total = mb.while_loop(_cond=condition, _body=body, loop_vars=(np.int32(0), mb.mul(x=x, y=0.0)))
        return mb.cond(pred=mb.greater(x=mb.reduce_sum(x=total), y=0.0),
                       _true_fn=lambda: mb.mul(x=total, y=2.0), _false_fn=lambda: mb.mul(x=total, y=-1.0))

    path = tmp_path / "loop.mlpackage"
    with quiet():
        ct.convert(program, convert_to="mlprogram", skip_model_load=True,
                   compute_precision=ct.precision.FLOAT32, minimum_deployment_target=ct.target.iOS16).save(str(path))
    session = MilSession(str(path))
    assert {"while_loop", "cond"} <= set(session.op_types)
    x = rand(2, 3)
    total = 3 * x
    want = 2 * total if total.sum() > 0 else -total
    close(session.run({session.inputs[0].name: x})[0], want)


# ------------------------------------------------------------------ conversion error messages

class _FakeNode:
    kind = "lgamma"

    @staticmethod
    def get_scope_info():
        return ["features", "3", "x_1"], ["Sequential", "LogGamma", "lgamma"]  # modules, then the node


def test_conversion_error_names_the_op_and_module():
    """coremltools' converter fails inside its `convert_nodes` loop: the message names that node's
    op and module, whatever the converter's own message says."""
    from edgeport.exporters.coreml import _raise_conversion_error

    def convert_nodes():
        node = _FakeNode()  # noqa: F841 - read back from the traceback, as coremltools' loop holds it
        raise TypeError("only 0-dimensional arrays can be converted to Python scalars")

    try:
        convert_nodes()
    except TypeError as exc:
        with pytest.raises(InputError) as err:
            _raise_conversion_error(exc, traced=None)
    message = str(err.value)
    assert message.startswith("ios: Core ML cannot convert PyTorch op aten::lgamma in module features.3 (LogGamma)")
    assert "\n" not in message


# ------------------------------------------------------------------ conversions (e2e)

class ChannelShuffle(torch.nn.Module):
    """ShuffleNetV2's channel shuffle: `x.size()` divided by the groups, an `aten::Int` of a constant."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 8, 3, padding=1)

    def forward(self, x):
        x = self.conv(x)
        batch, channels, height, width = x.size()
        x = x.view(batch, 2, channels // 2, height, width).transpose(1, 2).contiguous()
        return x.view(batch, -1, height, width)


class MaskedMean(torch.nn.Module):
    """`tensor.new_ones(...)`, as transformers builds a default attention mask."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(8, 8)

    def forward(self, x):
        mask = x.new_ones(x.shape[1], x.shape[2])  # not the batch: the reference runs several samples at once
        return self.proj(x) * mask + mask.mean(dim=0)


class PReLU1d(torch.nn.Module):
    """Per-channel PReLU on a rank-3 input (Conv1d output): Core ML's prelu refuses it."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv1d(3, 6, 3, padding=1)
        self.act = torch.nn.PReLU(6)
        with torch.no_grad():
            self.act.weight.copy_(torch.linspace(-0.5, 0.9, 6))

    def forward(self, x):
        return self.act(self.conv(x))


class ConvGru(torch.nn.Module):
    """Conv1d then a GRU: coremltools writes the GRU's unused zeros as a const named like the conv
    weight before it (the evaluator binds consts in program order)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Sequential(torch.nn.Conv1d(8, 6, 3, stride=2, padding=1), torch.nn.BatchNorm1d(6),
                                        torch.nn.ReLU(), torch.nn.Conv1d(6, 6, 3, stride=2, padding=1))
        self.gru = torch.nn.GRU(6, 5, batch_first=True)
        self.classifier = torch.nn.Linear(5, 3)

    def forward(self, x):
        steps, _ = self.gru(self.conv(x).transpose(1, 2))
        return self.classifier(steps[:, -1])


class Step(torch.nn.Module):
    """torch.heaviside: ONNX gets PyTorch's decomposition, coremltools has no conversion for it."""

    def forward(self, x):
        return torch.heaviside(x, torch.tensor([0.5]))


class WithStep(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Linear(4, 4), Step())

    def forward(self, x):
        return self.features(x)


def _seeded(cls):
    def factory():
        torch.manual_seed(0)
        return cls().eval()
    return factory


channel_shuffle, masked_mean, prelu_1d, with_step, conv_gru = (
    _seeded(c) for c in (ChannelShuffle, MaskedMean, PReLU1d, WithStep, ConvGru))


def _export_ios(tmp_path, factory: str, shape):
    """Export to ios (fp32 compute) with 4 seeded samples named after `forward(x)`'s argument."""
    import edgeport

    data = tmp_path / "data.npz"
    np.savez(data, x=np.abs(rand(4, *shape[1:], seed=7)) + 0.1)
    report = edgeport.export(f"test_ios_coverage:{factory}", targets=["ios"], out=str(tmp_path / "out"),
                             calib=str(data), target_options={"ios": {"precision": "fp32"}},
                             settings=edgeport.CheckSettings(runs=1, warmup=0, threads=1), allow_mismatch=True)
    return report.targets[0]


@needs_coremltools
@pytest.mark.e2e
@pytest.mark.parametrize("factory, shape", [("channel_shuffle", (1, 4, 6, 6)), ("masked_mean", (1, 5, 8)),
                                            ("prelu_1d", (1, 3, 16)), ("conv_gru", (1, 8, 12))])
def test_rewritten_ops_convert_and_match_pytorch(tmp_path, factory, shape):
    target = _export_ios(tmp_path, factory, shape)
    parity = target.values("parity")
    assert parity, f"parity not measured: {[(c.name, c.reason) for c in target.checks if c.status != 'measured']}"
    assert parity["cosine"] >= TOLERANCES["float32"].cosine


@needs_coremltools
@pytest.mark.e2e
def test_unsupported_op_is_named_with_its_module(tmp_path):
    with pytest.raises(UnsupportedOpError) as err:
        _export_ios(tmp_path, "with_step", (1, 4))
    assert err.value.op == "aten::heaviside" and err.value.node == "features.1"
