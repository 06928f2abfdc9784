"""Benchmarks: the engine against onnxruntime on the same models and weights."""
