"""Export layer: checkpoint -> ONNX (optimum) -> quantized files -> verified bundle.

Needs the ``[export]`` extra (torch, transformers, optimum-onnx). The runtime never imports it.
"""
