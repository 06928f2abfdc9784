"""numba kernels, one module per op family. Imports nothing from ir, passes or executor."""
