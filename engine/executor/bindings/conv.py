"""Kernel bindings: conv family."""
