"""Segmentation and detection with several outputs: torchvision definitions, random weights.

torchvision returns dicts (`{"out": ..., "aux": ...}`) and, for detection, boxes after NMS; the
wrappers here return the tensors a device runs: per-pixel class scores, and SSDlite's raw box
regressions and class logits (decoding and NMS stay in the app, as on device).
"""

from __future__ import annotations

import numpy as np
import torch

from benchmarks.zoo._common import Entry, image_input, seeded, settle_norms
from benchmarks.zoo._vision import torchvision

MODULE = "benchmarks.zoo.dense"
SEGMENT_CLASSES = 21  # Pascal VOC
DETECT_CLASSES = 91  # COCO


class Segmenter(torch.nn.Module):
    """A torchvision segmentation model returning its `out` (and `aux`) maps as a tuple."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        result = self.model(x)
        return tuple(result[k] for k in ("out", "aux") if k in result) if "aux" in result else result["out"]


class SSDliteHead(torch.nn.Module):
    """SSDlite's backbone and head: box regressions [N, anchors, 4] and class logits
    [N, anchors, classes], before anchor decoding and NMS."""

    def __init__(self, model):
        super().__init__()
        self.backbone, self.head = model.backbone, model.head

    def forward(self, x):
        features = list(self.backbone(x).values())
        result = self.head(features)
        return result["bbox_regression"], result["cls_logits"]


def _settled(model, size):
    _, make = image_input(size)
    return settle_norms(model, make(np.random.default_rng(1), 8))


@seeded
def lraspp():
    models = torchvision().models.segmentation
    return _settled(Segmenter(models.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None,
                                                               num_classes=SEGMENT_CLASSES)), 96)


@seeded
def deeplabv3_mobilenet():
    models = torchvision().models.segmentation
    return _settled(Segmenter(models.deeplabv3_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=SEGMENT_CLASSES, aux_loss=True)), 96)


@seeded
def ssdlite():
    detection = torchvision().models.detection
    model = detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None,
                                                   num_classes=DETECT_CLASSES)
    return _settled(SSDliteHead(model), 128)


ENTRIES = [
    Entry("lraspp", "dense", f"{MODULE}:lraspp", "torchvision", *image_input(96)),
    Entry("deeplabv3_mobilenet", "dense", f"{MODULE}:deeplabv3_mobilenet", "torchvision", *image_input(96),
          outputs=2),
    Entry("ssdlite", "dense", f"{MODULE}:ssdlite", "torchvision", *image_input(128), outputs=2),
]
