"""Kernel bindings: shape family."""
