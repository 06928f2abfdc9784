"""Kernel bindings: normalization family."""
