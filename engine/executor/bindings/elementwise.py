"""Kernel bindings: elementwise family."""
