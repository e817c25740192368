"""Target options: one frozen dataclass per options section, with its TOML section and flags.

Each target names its section (`Target.options`): `[ios]`, `[android]`, `[browser]`, `[mcu]` in
edgeport.toml, the same keys in `export(target_options={...})`, and one command-line flag per
field (declared in the field's metadata, so `edgeport export --help`, the config file and the
exporter read one table). Values are validated when the dataclass is made.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from edgeport.errors import InputError


def option(default: str, flag: str, choices: tuple[str, ...], help: str):  # noqa: A002 - argparse's word
    """A field of an options dataclass: its default, command-line flag, allowed values and help."""
    return field(default=default, metadata={"flag": flag, "choices": choices, "help": help})


def _validate(section: str, options) -> None:
    for f in fields(options):
        value, choices = getattr(options, f.name), f.metadata["choices"]
        if value not in choices:
            raise InputError(f"{section}: {f.name} must be one of {', '.join(choices)}, got '{value}'")


@dataclass(frozen=True)
class IosOptions:
    """`ios`: minimum deployment target and compute precision."""

    deployment_target: str = option("iOS16", "--ios-target", ("iOS15", "iOS16", "iOS17", "iOS18"),
                                     "minimum deployment target: iOS15, iOS16 (default), iOS17, iOS18")
    precision: str = option("fp16", "--ios-precision", ("fp16", "fp32"),
                            "Core ML compute precision: fp16 (default) or fp32")

    def __post_init__(self):
        if self.deployment_target not in fields(self)[0].metadata["choices"]:
            raise InputError(f"ios: unknown deployment target '{self.deployment_target}' "
                             f"(known: {', '.join(fields(self)[0].metadata['choices'])})")
        if self.precision not in fields(self)[1].metadata["choices"]:
            raise InputError(f"ios: unknown precision '{self.precision}' "
                             f"(known: {', '.join(fields(self)[1].metadata['choices'])})")

    @property
    def ios_version(self) -> int:
        return int(self.deployment_target[3:])


@dataclass(frozen=True)
class AndroidOptions:
    """`android`: integer or float input / output of int8 and int16x8 models."""

    io: str = option("int", "--android-io", ("int", "float"),
                     "int8/int16x8 models: 'int' input/output (default) or 'float'")

    def __post_init__(self):
        if self.io not in ("int", "float"):
            raise InputError("android: io must be 'int' (integer input/output) or 'float'")


@dataclass(frozen=True)
class BrowserOptions:
    """`browser`: TF.js weight storage for the fp32 recipe (None: the recipe's own)."""

    tfjs_weights: str | None = option(None, "--tfjs-weights", ("float32", "float16", "uint8", "uint16"),
                                      "TF.js weight storage for --quantize none: float32 (default), float16, "
                                      "uint8 or uint16 (TF.js's per-tensor affine format)")

    def __post_init__(self):
        choices = fields(self)[0].metadata["choices"]
        if self.tfjs_weights is not None and self.tfjs_weights not in choices:
            raise InputError(f"browser-tfjs: tfjs_weights must be one of {', '.join(choices)}, not '{self.tfjs_weights}'")


@dataclass(frozen=True)
class McuOptions:
    """`mcu`: how the C library stores its weights in flash, and when compressed ones are decoded."""

    storage: str = option("auto", "--mcu-storage", ("auto", "dense", "huffman"),
                          "weights in flash: auto (default: palette indices after --palettize, sparse rows after "
                          "--prune), dense, or huffman (Deep Compression: sparse + palette + Huffman-coded)")
    decode: str = option("kernel", "--mcu-decode", ("kernel", "init"),
                         "compressed weights decoded on the fly by the kernels (kernel, default) or once "
                         "into RAM at the first invoke (init: faster, costs RAM)")

    def __post_init__(self):
        _validate("mcu", self)


# TOML section / `target_options` key -> its options dataclass, in `--help` order.
OPTION_SECTIONS = {"ios": IosOptions, "android": AndroidOptions, "browser": BrowserOptions, "mcu": McuOptions}


def option_keys(section: str) -> set[str]:
    return {f.name for f in fields(OPTION_SECTIONS[section])}
