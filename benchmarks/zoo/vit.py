"""Vision transformers and hybrids from timm, random weights, 100 classes, 64-px images.

The plain ViTs are built for 64x64 inputs (16 patches of 16x16), the hybrids at their smallest
resolution that keeps every stage's attention window whole.
"""

from __future__ import annotations

import numpy as np

from benchmarks.zoo._common import Entry, image_input, seeded, settle_norms
from benchmarks.zoo._vision import timm

CLASSES = 100
MODULE = "benchmarks.zoo.vit"


def _timm(name: str, size: int, sized: bool):
    @seeded
    def build():
        extra = {"img_size": size} if sized else {}
        model = timm().create_model(name, pretrained=False, num_classes=CLASSES, **extra)
        _, make = image_input(size)
        return settle_norms(model, make(np.random.default_rng(1), 8))
    return build


# zoo name: (timm model, image size, whether the model takes img_size). Each row becomes a
# module-level factory of the zoo name (`benchmarks.zoo.vit:deit_tiny`).
MODELS = {
    "deit_tiny": ("deit_tiny_patch16_224", 64, True),
    "coat_lite_tiny": ("coat_lite_tiny", 64, True),
    "mobilevit_xxs": ("mobilevit_xxs", 64, False),
    "mobilevitv2_050": ("mobilevitv2_050", 64, False),
    "levit_128s": ("levit_128s", 64, True),
    "efficientformerv2_s0": ("efficientformerv2_s0", 64, True),
    "edgenext_xx_small": ("edgenext_xx_small", 64, False),
    "fastvit_t8": ("fastvit_t8", 64, False),
}
for _name, (_model, _size, _sized) in MODELS.items():
    globals()[_name] = _timm(_model, _size, _sized)

ENTRIES = [
    Entry(name, "vision-transformer", f"{MODULE}:{name}", "timm", *image_input(size))
    for name, (_, size, _) in MODELS.items()
]
