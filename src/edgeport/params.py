"""`ParamMap`: which PyTorch parameter each ONNX initializer of the float model is, made once.

The float model's ONNX graph is where the plan's weight numbers live (keyed by initializer name);
the other converters start from the PyTorch module and name weights after its parameters
(`features.0.weight`): PT2E's `get_attr` nodes keep the path, coremltools writes
`features_0_weight` (plus `_to_fp16` in fp16 programs). The map answers "which plan weight is
this?" by name, for every converter, instead of each one re-discovering it by value.

It is built when the source is loaded (`edgeport.sources`) and rebuilt or refreshed whenever the
model's weights change (structured pruning, compression). A `.tflite` source has an empty map.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace

import numpy as np

FP16_SUFFIX = "_to_fp16"  # coremltools' name for the fp16 copy of a const in fp16 programs


def normalized(name: str) -> str:
    """The one normalization of tensor names: `features.0.weight`, `features_0_weight` and
    `Features.0.Weight` all become `features_0_weight` (how coremltools and other converters
    spell a PyTorch parameter path; also a valid identifier for names edgeport writes)."""
    return re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower()


def fingerprint(array: np.ndarray) -> str:
    """A stable digest of a tensor's dtype, shape and values (16 hex digits): two tensors with
    the same fingerprint hold the same numbers, whichever graph they come from."""
    array = np.ascontiguousarray(array)
    digest = hashlib.sha1(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Param:
    """One weight of the float model.

    Attributes:
        path: PyTorch parameter path (`features.0.weight`); None for an ONNX initializer that is
            no parameter of the module (ONNX sources, constants the exporter made).
        onnx: ONNX initializer name; None for a parameter the ONNX graph does not hold
            (BatchNorm's, folded into the conv before it).
        shape: The ONNX initializer's shape (the parameter's when `onnx` is None).
        fingerprint: `fingerprint()` of the ONNX initializer (of the parameter when `onnx` is None).
        rewritten: The initializer holds other values than the parameter: the exporter folded
            BatchNorm into it (or otherwise rewrote it). Other converters' copies of the
            parameter then differ from the plan's weight.
    """

    path: str | None
    onnx: str | None
    shape: tuple[int, ...]
    fingerprint: str
    rewritten: bool = False


@dataclass(frozen=True)
class ParamMap:
    """The float model's weights: PyTorch parameter path <-> ONNX initializer (see `Param`)."""

    entries: tuple[Param, ...] = ()
    _by_path: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    _by_onnx: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    _by_key: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        keys: dict[str, list[Param]] = {}
        for entry in self.entries:
            if entry.path is not None:
                self._by_path[entry.path] = entry
                keys.setdefault(normalized(entry.path), []).append(entry)
            if entry.onnx is not None:
                self._by_onnx[entry.onnx] = entry
        # a spelling two paths share (`a.b_c`, `a_b.c`) names neither
        self._by_key.update((key, found[0]) for key, found in keys.items() if len(found) == 1)

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self):
        return iter(self.entries)

    def by_path(self, path: str) -> Param | None:
        return self._by_path.get(path)

    def by_onnx(self, name: str) -> Param | None:
        return self._by_onnx.get(name)

    def onnx_name(self, path: str) -> str | None:
        """The ONNX initializer of PyTorch parameter `path`, if the graph holds it."""
        entry = self._by_path.get(path)
        return entry.onnx if entry else None

    def torch_path(self, onnx_name: str) -> str | None:
        """The PyTorch parameter path of ONNX initializer `onnx_name`, if it is one."""
        entry = self._by_onnx.get(onnx_name)
        return entry.path if entry else None

    def by_spelling(self, name: str) -> Param | None:
        """The parameter a converter named `name` after its path: `features_0_weight`, or
        `features_0_weight_to_fp16` (a Core ML const in an fp16 program)."""
        return self._by_key.get(normalized(name.removesuffix(FP16_SUFFIX)))

    @classmethod
    def build(cls, onnx_model, module=None) -> ParamMap:
        """The map of `onnx_model`'s float initializers and, when given, the parameters of the
        PyTorch `module` it was exported from.

        A parameter is paired with the initializer of the same name (torch's dynamo exporter keeps
        parameter paths), else of the same normalized name, else of the same values (an exporter
        that renamed it). A parameter the graph does not hold (folded BatchNorm) has no
        initializer; an initializer no parameter explains has no path.
        """
        inits = _float_initializers(onnx_model)
        prints = {name: fingerprint(value) for name, value in inits.items()}
        entries, claimed = [], set()
        for path, value in _module_tensors(module, inits):
            found = _pair(path, fingerprint(value), inits, prints, claimed)
            if found is None:
                entries.append(Param(path, None, tuple(value.shape), fingerprint(value)))
                continue
            claimed.add(found)
            entries.append(Param(path, found, tuple(inits[found].shape), prints[found],
                                 rewritten=prints[found] != fingerprint(value)))
        entries += [Param(None, name, tuple(value.shape), prints[name])
                    for name, value in inits.items() if name not in claimed]
        return cls(tuple(entries))

    def with_values(self, onnx_model, module=None) -> ParamMap:
        """The same pairs, with shapes, fingerprints and `rewritten` of the weights as they are now
        in `onnx_model` and `module` (after compression rewrote some of them in both)."""
        inits = _float_initializers(onnx_model)
        tensors = dict(_module_tensors(module, inits)) if module is not None else {}
        entries = []
        for entry in self.entries:
            onnx_value, torch_value = inits.get(entry.onnx), tensors.get(entry.path)
            value = onnx_value if onnx_value is not None else torch_value
            if value is None:
                entries.append(entry)
                continue
            rewritten = entry.rewritten if torch_value is None or onnx_value is None else \
                fingerprint(onnx_value) != fingerprint(torch_value)
            entries.append(replace(entry, shape=tuple(value.shape), fingerprint=fingerprint(value),
                                   rewritten=rewritten))
        return ParamMap(tuple(entries))


def _pair(path: str, value_print: str, inits: dict, prints: dict, claimed: set) -> str | None:
    """The initializer of parameter `path`: same name, same normalized name, or same values
    (each unique among the unclaimed ones)."""
    if path in inits and path not in claimed:
        return path
    free = [n for n in inits if n not in claimed]
    for same in (lambda n: normalized(n) == normalized(path), lambda n: prints[n] == value_print):
        found = [n for n in free if same(n)]
        if len(found) == 1:
            return found[0]
    return None


def _float_initializers(onnx_model) -> dict[str, np.ndarray]:
    """Initializer name -> float array (integer initializers are shapes and indices, not weights)."""
    if onnx_model is None:
        return {}
    from onnx import numpy_helper

    arrays = {i.name: numpy_helper.to_array(i) for i in onnx_model.graph.initializer}
    return {name: a for name, a in arrays.items() if np.issubdtype(a.dtype, np.floating)}


def _module_tensors(module, inits: dict):
    """(path, float32 array) of the module's parameters, and of its buffers the ONNX graph holds
    under their own name (BatchNorm's running statistics are folded away, so not listed)."""
    if module is None:
        return
    yield from ((path, p.detach().cpu().numpy()) for path, p in module.named_parameters())
    yield from ((path, b.detach().cpu().numpy()) for path, b in module.named_buffers()
                if path in inits and b.is_floating_point())
