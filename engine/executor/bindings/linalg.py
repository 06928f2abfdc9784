"""Kernel bindings: linalg family."""
