"""Plain numpy versions of every kernel: slow, obviously correct, used only by tests.

One module per family; this package re-exports them all.
"""
