"""Kernel bindings: reduce family."""
