"""ONNX export: ``nnkit.onnx.export(model, "model.onnx", input_shape)``.

The optional extra ``onnx`` (``pip install ".[onnx]"`` from the nnkit checkout). Importing
this package does not import onnx; :func:`export` does, and says how to install it if it is
missing. docs/interop.md shows the whole path: exporting, running the file in onnxruntime,
and writing a converter for a layer of your own.

- :func:`export`: the model in eval mode as an ONNX file, checked by ``onnx.checker``.
- :func:`register_converter`: the converter ``fn(ctx, module, inputs) -> outputs`` of a
  module class; every built-in layer and container has one.
- :class:`ExportContext`, :class:`Value`, :class:`TensorSpec`: what a converter works with.
- :class:`ExportError`: a module that cannot be exported, named by path and class.
"""

from nnkit.onnx import _attention, _containers, _converters, _sequences  # noqa: F401
from nnkit.onnx._attention import attention
from nnkit.onnx._context import (
    ConverterResult,
    ExportContext,
    ExportError,
    Opaque,
    TensorSpec,
    Value,
    ValueTree,
    register_converter,
)
from nnkit.onnx._converters import gelu, layer_norm, reduce, reshape_to
from nnkit.onnx._export import MIN_OPSET, export
from nnkit.onnx._trace import TRACE_BATCHES, TRACE_LENGTHS

__all__ = [
    "MIN_OPSET",
    "TRACE_BATCHES",
    "TRACE_LENGTHS",
    "ConverterResult",
    "ExportContext",
    "ExportError",
    "Opaque",
    "TensorSpec",
    "Value",
    "ValueTree",
    "attention",
    "export",
    "gelu",
    "layer_norm",
    "reduce",
    "register_converter",
    "reshape_to",
]
