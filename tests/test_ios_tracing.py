"""The ios target traces the PyTorch model (torch.jit.trace) for coremltools; a model whose trace
changes from run to run is refused in one line naming the module, not a traceback. The
TransformerEncoder fast path, which used to change the trace, is off while tracing."""

from __future__ import annotations

import importlib.util

import pytest
from conftest import run_cli

from edgeport.errors import InputError

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(importlib.util.find_spec("coremltools") is None, reason="coremltools is not installed")


class PaddedEncoder(torch.nn.Module):
    """A TransformerEncoder given a src_key_padding_mask: in eval mode PyTorch takes its nested
    tensor fast path, which the tracer records differently on each run."""

    def __init__(self):
        super().__init__()
        layer = torch.nn.TransformerEncoderLayer(d_model=16, nhead=2, dim_feedforward=32, batch_first=True)
        self.encoder = torch.nn.TransformerEncoder(layer, num_layers=1)

    def forward(self, x):
        mask = torch.zeros(x.shape[0], x.shape[1], dtype=torch.bool)
        mask[:, -1] = True
        return self.encoder(x, src_key_padding_mask=mask)


def padded_encoder() -> torch.nn.Module:
    torch.manual_seed(0)
    return PaddedEncoder().eval()


class Flip(torch.nn.Module):
    """Takes the other branch on every call: each trace records another graph."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return x * 2 if self.calls % 2 else x + 1


class Flipping(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.flip = Flip()

    def forward(self, x):
        return self.flip(x)


def flipping() -> torch.nn.Module:
    return Flipping().eval()


def test_encoder_fast_path_is_off_while_tracing():
    from edgeport.exporters.coreml import _trace

    model, x = padded_encoder(), torch.randn(1, 4, 16)
    traced = _trace(model, (x,))
    with torch.no_grad():  # the fast path writes zeros at padded positions, the layers' ops do not
        assert torch.allclose(traced(x)[:, :-1], model(x)[:, :-1], atol=1e-5)
    assert torch.backends.mha.get_fastpath_enabled()  # restored


def test_nondeterministic_trace_is_an_input_error_naming_the_module():
    from edgeport.exporters.coreml import _trace

    with pytest.raises(InputError) as err:
        _trace(flipping(), (torch.randn(1, 4, 16),))
    message = str(err.value)
    assert message.startswith("ios: tracing the PyTorch model for Core ML (torch.jit.trace) is not deterministic "
                              "in module flip (Flip)")
    assert "data-dependent branch" in message and "\n" not in message


def test_untraceable_model_is_an_input_error():
    from edgeport.exporters.coreml import _trace

    class DictOutput(torch.nn.Module):
        def forward(self, x):
            return {"y": x}  # a dict output with no tensors to trace through: the tracer refuses it

    with pytest.raises(InputError, match=r"^ios: tracing the PyTorch model for Core ML \(torch.jit.trace\) failed: "):
        _trace(DictOutput(), (torch.randn(1, 4),))


@pytest.mark.e2e
def test_cli_exits_2_with_one_line(tmp_path):
    out = tmp_path / "out"
    result = run_cli("export", "test_ios_tracing:flipping", "--target", "ios", "--input-shape", "1,4,16",
                     "--out", str(out), "--runs", "1")
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("edgeport:")]
    assert len(errors) == 1 and "not deterministic in module flip (Flip)" in errors[0]
    assert "Traceback" not in result.stderr
    assert not out.exists()


class Encoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        layer = torch.nn.TransformerEncoderLayer(d_model=16, nhead=2, dim_feedforward=32, batch_first=True)
        self.encoder = torch.nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)

    def forward(self, x):
        return self.encoder(x)


def encoder() -> torch.nn.Module:
    torch.manual_seed(0)
    return Encoder().eval()


@pytest.mark.e2e
def test_transformer_encoder_int8_on_ios(tmp_path):
    """An nn.TransformerEncoder (fast path on in eval mode) traces, and its int8 program, whose
    attention is iOS18's fused scaled_dot_product_attention, is calibrated in the MIL evaluator."""
    import numpy as np

    data = tmp_path / "x.npz"
    np.savez(data, x=np.random.default_rng(0).standard_normal((16, 4, 16)).astype(np.float32))
    out = tmp_path / "out"
    result = run_cli("export", "test_ios_tracing:encoder", "--target", "ios", "--ios-target", "iOS18",
                     "--quantize", "int8", "--calib", str(data), "--out", str(out), "--runs", "1", "--json")
    assert result.returncode == 0, result.stderr
    import json

    parity = json.loads((out / "report.json").read_text())["targets"][0]["checks"]["parity"]
    assert parity["cosine"] >= 0.99, parity
