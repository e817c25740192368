"""Mobile CNNs: torchvision and timm definitions, random weights, 100 classes, small images.

Every factory here takes no argument (an edgeport `module:factory` source), seeds torch, builds
the network with `weights=None` / `pretrained=False` and settles its BatchNorm statistics on
realistic images (`settle_norms`).
"""

from __future__ import annotations

import numpy as np

from benchmarks.zoo._common import Entry, image_input, seeded, settle_norms
from benchmarks.zoo._vision import timm, torchvision

CLASSES = 100
MODULE = "benchmarks.zoo.cnn"


def _settled(model, size: int):
    _, make = image_input(size)
    return settle_norms(model, make(np.random.default_rng(1), 8))


def _tv(name: str, size: int):
    @seeded
    def build():
        return _settled(getattr(torchvision().models, name)(weights=None, num_classes=CLASSES), size)
    return build


def _timm(name: str, size: int):
    @seeded
    def build():
        return _settled(timm().create_model(name, pretrained=False, num_classes=CLASSES), size)
    return build


# zoo name: (package, its model name, image size). Each row becomes a module-level factory of the
# zoo name (`benchmarks.zoo.cnn:mobilenet_v2`), the form edgeport imports.
MODELS = {
    "mobilenet_v2": ("torchvision", "mobilenet_v2", 96),
    "mobilenet_v3_small": ("torchvision", "mobilenet_v3_small", 96),
    "mobilenet_v3_large": ("torchvision", "mobilenet_v3_large", 96),
    "efficientnet_b0": ("torchvision", "efficientnet_b0", 96),
    "shufflenet_v2": ("torchvision", "shufflenet_v2_x0_5", 96),
    "squeezenet": ("torchvision", "squeezenet1_1", 96),
    "mnasnet": ("torchvision", "mnasnet0_5", 96),
    "regnet_x_400mf": ("torchvision", "regnet_x_400mf", 96),
    "resnet18": ("torchvision", "resnet18", 64),
    "ghostnet": ("timm", "ghostnet_100", 96),
    "mixnet_s": ("timm", "mixnet_s", 96),
    "lcnet_050": ("timm", "lcnet_050", 96),
    "mobilenetv4_conv_small": ("timm", "mobilenetv4_conv_small", 96),
    "repghostnet": ("timm", "repghostnet_050", 96),
    "tinynet_e": ("timm", "tinynet_e", 96),
    "convnext_atto": ("timm", "convnext_atto", 64),
    "cs3darknet_s": ("timm", "cs3darknet_s", 96),
}
_BUILDERS = {"torchvision": _tv, "timm": _timm}
for _name, (_package, _model, _size) in MODELS.items():
    globals()[_name] = _BUILDERS[_package](_model, _size)

ENTRIES = [
    Entry(name, "mobile-cnn", f"{MODULE}:{name}", package, *image_input(size))
    for name, (package, _, size) in MODELS.items()
]
