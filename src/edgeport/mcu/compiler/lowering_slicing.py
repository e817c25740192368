"""Slicing ops -> C kernel calls: STRIDED_SLICE, SPLIT, GATHER (int8, as LiteRT's reference kernels compute them).

One op family of the lowerings (the shared parts are in `lowering`); the `LOWERINGS` table at
the end goes into the registry built in `lowerings`.
"""

from __future__ import annotations

from edgeport.mcu.compiler.lowering import Lower

# op name -> lowering, for the registry built in `lowerings`
LOWERINGS: dict[str, Lower] = {}
