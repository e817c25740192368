"""Audio encoders: Whisper-tiny's encoder and a wav2vec 2.0 feature encoder (transformers configs,
random weights), and a keyword-spotting model (1-D convolutions + GRU, defined here).

Inputs are made from synthetic speech (`data.speech`): Whisper reads 80-bin log-mel frames (1 s,
100 frames; the encoder's positions are sized to it), wav2vec 2.0 the raw 16 kHz waveform, the
keyword model 40-bin log-mel frames.
"""

from __future__ import annotations

import torch

from benchmarks.zoo import data
from benchmarks.zoo._common import Entry, Input, seeded
from benchmarks.zoo._vision import transformers

MODULE = "benchmarks.zoo.audio"
FRAMES = 100  # 1 s of 10 ms frames
KEYWORDS = 12  # Speech Commands: 10 words, silence, unknown


class WhisperEncoder(torch.nn.Module):
    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_features):
        return self.encoder(input_features).last_hidden_state


class Wav2Vec2Encoder(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_values):
        return self.model(input_values).last_hidden_state


class KeywordSpotter(torch.nn.Module):
    """Log-mel frames -> two strided 1-D convolutions -> a GRU -> keyword logits (last step)."""

    def __init__(self, mels: int = 40, width: int = 64, classes: int = KEYWORDS):
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv1d(mels, width, 5, stride=2, padding=2), torch.nn.BatchNorm1d(width), torch.nn.ReLU(),
            torch.nn.Conv1d(width, width, 3, stride=2, padding=1), torch.nn.BatchNorm1d(width), torch.nn.ReLU())
        self.gru = torch.nn.GRU(width, width, batch_first=True)
        self.classifier = torch.nn.Linear(width, classes)

    def forward(self, mel):
        steps, _ = self.gru(self.features(mel).transpose(1, 2))
        return self.classifier(steps[:, -1])


@seeded
def whisper_encoder():
    t = transformers()
    config = t.WhisperConfig(num_mel_bins=80, d_model=384, encoder_layers=4, encoder_attention_heads=6,
                             encoder_ffn_dim=1536, max_source_positions=FRAMES // 2)
    return WhisperEncoder(t.WhisperModel(config).get_encoder())


@seeded
def wav2vec2():
    t = transformers()
    config = t.Wav2Vec2Config(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=256,
                              conv_dim=(64, 64, 64, 64, 64, 64, 64), feat_extract_norm="group",
                              num_conv_pos_embeddings=32, num_conv_pos_embedding_groups=4)
    return Wav2Vec2Encoder(t.Wav2Vec2Model(config))


@seeded
def kws_gru():
    from benchmarks.zoo._common import settle_norms
    import numpy as np

    return settle_norms(KeywordSpotter(), _mels(np.random.default_rng(1), 8, 40, 49)["mel"])


def _mels(rng, count, bins, frames, name="mel"):
    return {name: data.log_mel(data.speech(rng, count, data.SAMPLE_RATE), bins, frames)}


def _whisper_data(rng, count):
    return _mels(rng, count, 80, FRAMES, "input_features")


def _kws_data(rng, count):
    return _mels(rng, count, 40, 49)


def _waveform(rng, count):
    return {"input_values": data.speech(rng, count, data.SAMPLE_RATE)}


ENTRIES = [
    Entry("whisper_encoder", "audio", f"{MODULE}:whisper_encoder", "transformers",
          (Input("input_features", (1, 80, FRAMES)),), _whisper_data),
    Entry("wav2vec2", "audio", f"{MODULE}:wav2vec2", "transformers",
          (Input("input_values", (1, data.SAMPLE_RATE)),), _waveform),
    Entry("kws_gru", "audio", f"{MODULE}:kws_gru", "torch", (Input("mel", (1, 40, 49)),), _kws_data),
]
