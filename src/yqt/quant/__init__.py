"""Quantization internals: modes, the layer swap, calibration, GPTQ, INT8 activations, storage,
the per-mode gate and parity. :func:`yqt.quantize.quantize` is the entry point that combines them."""
