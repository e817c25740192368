"""PyTorch op conversions that coremltools 9 lacks or gets wrong, one function per TorchScript op.

`register()` puts every row of `TORCH_OPS` into coremltools' torch op registry (overriding its
own conversion where it has one); the Core ML exporter calls it before each conversion. Each
row says why it exists:

- `int` / `bool` (`aten::Int`, `aten::Bool`): coremltools turns a constant `prim::NumToTensor`
  into a 1-element array of shape (1,) (torch makes a 0-d tensor), and its cast then calls
  `int(array)`, which NumPy 2 refuses ("only 0-dimensional arrays can be converted to Python
  scalars"). Every traced `x.size(1) // groups`, `int(h * w)`, ... hits it (channel shuffles,
  attention head splits). The conversion takes the single element.
- `new_ones` (`tensor.new_ones(size)`, transformers' attention masks): not in coremltools.
- `prelu`: Core ML's `prelu` refuses rank-3 and rank-5 inputs unless alpha is one value; such a
  PReLU becomes relu(x) + alpha * min(x, 0) with alpha broadcast along the channel axis.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgeport.registry import Registry

TORCH_OPS: Registry[Callable] = Registry("Core ML torch op conversion")


def register() -> None:
    """Install every conversion of `TORCH_OPS` in coremltools' registry (idempotent)."""
    from coremltools.converters.mil.frontend.torch.torch_op_registry import register_torch_op

    for name in TORCH_OPS.names():
        register_torch_op(TORCH_OPS.get(name), torch_alias=[name], override=True)


def _inputs(context, node, **expected):
    from coremltools.converters.mil.frontend.torch.ops import _get_inputs

    return _get_inputs(context, node, **expected)


def _scalar_cast(context, node, to: type, dtype_name: str) -> None:
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.frontend.torch.ops import _cast

    x = _inputs(context, node, expected=1)[0]
    if x.can_be_folded_to_const() and np.size(x.val) == 1:
        context.add(mb.const(val=to(np.asarray(x.val).item()), name=node.name))
        return
    _cast(context, node, to, dtype_name)  # a computed value: coremltools squeezes and casts it


@TORCH_OPS.register("int")
def _int(context, node):
    _scalar_cast(context, node, int, "int32")


@TORCH_OPS.register("bool")
def _bool(context, node):
    _scalar_cast(context, node, bool, "bool")


@TORCH_OPS.register("new_ones")
def new_ones(context, node):
    """aten::new_ones(self, size, dtype, layout, device, pin_memory): ones of `size`, in `dtype`
    or else in the dtype of `self`."""
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.frontend.torch.ops import _cast_to
    from coremltools.converters.mil.frontend.torch.utils import NUM_TO_DTYPE_STRING
    from coremltools.converters.mil.mil import types

    inputs = _inputs(context, node, min_expected=2)
    x, size = inputs[0], inputs[1]
    if isinstance(size, list):  # a size computed from shapes: a list of scalars
        size = mb.concat(values=[mb.reshape(x=s, shape=[1]) for s in size], axis=0)
    if types.is_float(size.dtype):
        size = mb.cast(x=size, dtype="int32")
    dtype = inputs[2] if len(inputs) > 2 and inputs[2] is not None else None
    dtype_name = NUM_TO_DTYPE_STRING[int(dtype.val)] if dtype is not None and dtype.val is not None \
        else types.builtin_to_string(x.dtype)
    ones = mb.fill(shape=size, value=1.0)
    context.add(ones if dtype_name == "fp32" else _cast_to(ones, dtype_name, node.name), node.name)


@TORCH_OPS.register("prelu")
def prelu(context, node):
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.frontend.torch.ops import prelu as coreml_prelu

    x, alpha = _inputs(context, node, expected=2)
    uniform = alpha.val is not None and np.unique(np.asarray(alpha.val)).size == 1
    if x.rank not in (3, 5) or uniform:
        coreml_prelu(context, node)  # Core ML's prelu holds it
        return
    channel_shape = [-1] + [1] * (x.rank - 2)  # alpha along axis 1, broadcast over the rest
    if alpha.val is not None:
        alpha = mb.const(val=np.asarray(alpha.val, dtype=np.float32).reshape(channel_shape))
    else:
        alpha = mb.reshape(x=alpha, shape=channel_shape)
    negative = mb.mul(x=alpha, y=mb.minimum(x=x, y=np.float32(0.0)))
    context.add(mb.add(x=mb.relu(x=x), y=negative, name=node.name))
