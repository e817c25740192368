"""MIL builder helpers shared by the Core ML exporter and its rewriting modules (weights,
activations, low-bit layers): ops added to a converted program keep their source scopes."""

from __future__ import annotations


def scope_of(op):
    """A builder scope carrying `op`'s source scopes: coremltools requires them on ops added to a
    program converted from PyTorch. Graph-pass history (which may list several passes) is left out."""
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.mil.scope import ScopeInfo, ScopeSource

    return mb.scope(*[ScopeInfo(source=k, data=v) for k, v in op.scopes.items()
                      if k != ScopeSource.COREMLTOOLS_GRAPH_PASS])


def replace_weight(block, op, build, old=None):
    """Swap `op.weight` (or the const var `old` it reads) for the var that `build()` creates, in
    `op`'s scope."""
    from coremltools.converters.mil import Builder as mb

    with block, scope_of(op):
        new = build(mb)
    block.replace_uses_of_var_after_op(anchor_op=new.op, old_var=op.weight if old is None else old, new_var=new,
                                      no_check_var_types=True)
