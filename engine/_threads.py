"""Thread-pool settings that must be in the environment before numpy or numba load.

The engine runs two pools on the same cores: OpenBLAS's (GEMMs) and numba's OpenMP pool
(everything else). An idle worker of either that keeps spinning takes a core from the other
pool's next kernel; on 2 cores one hand-off could cost a whole scheduler slice (15 ms for a
0.8 ms conv). Both pools are told to go to sleep soon after their work ends. Set early by
``engine`` and ``service``; a value the user already set wins. No effect if numpy was
imported before the engine (then set these variables in the environment yourself).
"""

from __future__ import annotations

import os

__all__ = ["THREAD_ENV"]

THREAD_ENV = {
    "OMP_WAIT_POLICY": "PASSIVE",
    # OpenBLAS spins 2**N cycles after a call before sleeping; its default (~0.1 s) is far
    # longer than the gap between two kernels of one request.
    "OPENBLAS_THREAD_TIMEOUT": "14",
}

for _key, _value in THREAD_ENV.items():
    os.environ.setdefault(_key, _value)
