"""A tiny text classifier whose `forward(input_ids, attention_mask)` takes two int64 tensors, as
sentence-embedding and BERT-style models do (random weights, fixed seed)."""

from __future__ import annotations

import torch
from torch import nn


class MaskedMeanClassifier(nn.Module):
    def __init__(self, vocab: int = 100, width: int = 16, classes: int = 4):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.head = nn.Linear(width, classes)

    def forward(self, input_ids, attention_mask):
        mask = attention_mask.unsqueeze(-1).to(torch.float32)
        pooled = (self.embed(input_ids) * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.head(pooled)


def build() -> nn.Module:
    torch.manual_seed(0)
    return MaskedMeanClassifier()


def build_large() -> nn.Module:
    """Most of its weights in the embedding table (4000 x 64), as in a real text model."""
    torch.manual_seed(0)
    return MaskedMeanClassifier(vocab=4000, width=64)


def build_wide() -> nn.Module:
    """An embedding table of BERT-tiny's width (2000 x 128): TFLite's per-row int4 parameters
    (a float scale and an int64 zero point, 12 bytes a row) weigh less on wider rows."""
    torch.manual_seed(0)
    return MaskedMeanClassifier(vocab=2000, width=128)
