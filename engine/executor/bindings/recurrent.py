"""Kernel bindings: recurrent family."""
