"""How many threads the plan being prepared will run on: the preparing thread's numba thread
count (``numba.set_num_threads`` is per thread; a server's batch thread sets its own before it
prepares and runs its plans, and ``Model`` keeps one plan per count).

A plan picks its serial or parallel kernels once, when it is prepared. A parallel (``prange``)
kernel run on one thread still goes through numba's parallel launch, which takes the GIL
(``gil_ensure``) and takes it again after the region (``restore_thread``): in a server whose
event loop holds the GIL, each take can wait a switch interval. With one thread, plans get
the serial kernels.
"""

from __future__ import annotations

import numba

__all__ = ["plan_threads", "use_parallel"]


def plan_threads() -> int:
    """The thread count a plan prepared on this thread now is sized for."""
    return max(1, int(numba.get_num_threads()))


def use_parallel(worth_it: bool) -> bool:
    """Whether a kernel whose work is ``worth_it`` for threads should take its parallel
    variant: only when the plan will have more than one thread."""
    return worth_it and plan_threads() > 1
