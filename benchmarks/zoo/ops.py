"""Small purpose-built models for what the package architectures leave out or use only in passing.

- `face_detector`: a RetinaFace-style detector (PReLU stem as in MTCNN, LeakyReLU backbone, FPN
  with nearest upsampling, three outputs: class scores, boxes, landmarks), the kind of model
  issue #15 started from.
- `conv_autoencoder`: ELU + GroupNorm encoder, ConvTranspose + bilinear-upsampling decoder.
- `masked_pool`: two inputs of different dtypes (float32 features, int64 lengths): a length mask
  (Where), Pad, Split, attention pooling with Softmax over the time axis (not the last one),
  tanh-GELU; two outputs.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.zoo._common import Entry, Input, image_input, seeded, settle_norms

MODULE = "benchmarks.zoo.ops"


def _conv(cin, cout, stride=1, act=None):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                         act if act is not None else nn.LeakyReLU(0.1))


class FaceDetector(nn.Module):
    ANCHORS = 2

    def __init__(self, width: int = 16):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1), nn.PReLU(width))
        self.stage1 = nn.Sequential(_conv(width, 2 * width, 2), _conv(2 * width, 2 * width))
        self.stage2 = nn.Sequential(_conv(2 * width, 4 * width, 2), _conv(4 * width, 4 * width))
        self.lateral1 = nn.Conv2d(2 * width, 2 * width, 1)
        self.lateral2 = nn.Conv2d(4 * width, 2 * width, 1)
        self.heads = nn.ModuleList(nn.Conv2d(2 * width, self.ANCHORS * size, 1) for size in (2, 4, 10))

    def forward(self, x):
        c1 = self.stage1(self.stem(x))
        c2 = self.stage2(c1)
        p2 = self.lateral2(c2)
        p1 = self.lateral1(c1) + F.interpolate(p2, size=c1.shape[-2:], mode="nearest")
        outputs = []
        for head, size in zip(self.heads, (2, 4, 10)):
            per_level = [head(p).permute(0, 2, 3, 1).reshape(x.shape[0], -1, size) for p in (p1, p2)]
            outputs.append(torch.cat(per_level, dim=1))
        scores, boxes, landmarks = outputs
        return F.softmax(scores, dim=-1), boxes, landmarks


class ConvAutoencoder(nn.Module):
    def __init__(self, width: int = 16, code: int = 32):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(3, width, 3, 2, 1), nn.GroupNorm(4, width), nn.ELU(),
            nn.Conv2d(width, 2 * width, 3, 2, 1), nn.GroupNorm(8, 2 * width), nn.ELU(),
            nn.Conv2d(2 * width, code, 3, 2, 1))
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(code, 2 * width, 4, 2, 1), nn.GroupNorm(8, 2 * width), nn.ELU(),
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.ELU(),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Conv2d(width, 3, 3, 1, 1), nn.Sigmoid())

    def forward(self, x):
        return self.decoder(self.encoder(x))


class MaskedPool(nn.Module):
    """Attention pooling over the valid steps of a padded sequence."""

    def __init__(self, channels: int = 32, hidden: int = 64):
        super().__init__()
        self.project = nn.Conv1d(channels, 2 * hidden, 3)  # padded by hand below (Pad)
        self.score = nn.Linear(hidden, 1)
        self.out = nn.Linear(hidden, hidden)

    def forward(self, features, lengths):
        steps = features.shape[1]
        padded = F.pad(features.transpose(1, 2), (1, 1), mode="replicate")
        value, gate = self.project(padded).transpose(1, 2).chunk(2, dim=-1)  # Split
        hidden = F.gelu(value, approximate="tanh") * torch.sigmoid(gate)
        valid = torch.arange(steps, device=features.device)[None, :] < lengths[:, None]
        logits = torch.where(valid[..., None], self.score(hidden), torch.full_like(hidden[..., :1], -1e4))
        weights = F.softmax(logits, dim=1)  # over time: axis 1 of [N, T, 1]
        pooled = (weights * hidden).sum(dim=1)
        return self.out(pooled), weights[..., 0]


@seeded
def face_detector():
    _, make = image_input(128)
    return settle_norms(FaceDetector(), make(np.random.default_rng(1), 8))


@seeded
def conv_autoencoder():
    return ConvAutoencoder()


@seeded
def masked_pool():
    return MaskedPool()


SEQUENCE = 24


def _sequences(rng, count):
    features = rng.normal(0, 1, (count, SEQUENCE, 32)).astype(np.float32)
    features *= np.linspace(0.5, 1.5, 32, dtype=np.float32)  # channels with different ranges
    lengths = rng.integers(SEQUENCE // 2, SEQUENCE + 1, count).astype(np.int64)
    features[np.arange(SEQUENCE)[None, :] >= lengths[:, None]] = 0.0  # padding is zeros
    return {"features": features, "lengths": lengths}


ENTRIES = [
    Entry("face_detector", "ops", f"{MODULE}:face_detector", "torch", *image_input(128), outputs=3),
    Entry("conv_autoencoder", "autoencoder", f"{MODULE}:conv_autoencoder", "torch",
          *image_input(64, normalize="unit")),
    Entry("masked_pool", "ops", f"{MODULE}:masked_pool", "torch",
          (Input("features", (1, SEQUENCE, 32)), Input("lengths", (1,), "int64")), _sequences, outputs=2),
]
