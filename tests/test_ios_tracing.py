"""The ios target traces the PyTorch model (torch.jit.trace) for coremltools; a model whose trace
changes from run to run is refused in one line naming the module, not a traceback."""

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


def test_nondeterministic_trace_is_an_input_error_naming_the_module():
    from edgeport.exporters.coreml import _trace

    with pytest.raises(InputError) as err:
        _trace(padded_encoder(), (torch.randn(1, 4, 16),))
    message = str(err.value)
    assert message.startswith("ios: tracing the PyTorch model for Core ML (torch.jit.trace) is not deterministic "
                              "in module encoder (TransformerEncoder)")
    assert "set_fastpath_enabled(False)" in message and "\n" not in message


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
    result = run_cli("export", "test_ios_tracing:padded_encoder", "--target", "ios", "--input-shape", "1,4,16",
                     "--out", str(out), "--runs", "1")
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("edgeport:")]
    assert len(errors) == 1 and "not deterministic in module encoder (TransformerEncoder)" in errors[0]
    assert "Traceback" not in result.stderr
    assert not out.exists()
