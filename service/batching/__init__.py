"""Dynamic batching per model version: TF Serving's parameters, Triton's behaviour.

- ``params``: ``BatchingParameters`` (TF names), the text-format file, the flags.
- ``keys``: which requests may share a batch (same signature, dtypes, non-batch shapes).
- ``task``: one queued request, its future and handle.
- ``queue``: one version's bounded queue; batch formation (merge, split, drop expired).
- ``merge``: merged input buffers (padding) and per-request output views.
- ``scheduler``: the batch threads, shared by every queue, round robin.
"""

from service.batching.keys import batch_key
from service.batching.params import (
    BatchingParameters,
    load_batching_parameters_file,
    params_from_settings,
    parse_batching_parameters,
)
from service.batching.queue import QUEUE_FULL, Batch, ModelQueue
from service.batching.scheduler import Scheduler
from service.batching.task import Task

__all__ = [
    "QUEUE_FULL",
    "Batch",
    "BatchingParameters",
    "ModelQueue",
    "Scheduler",
    "Task",
    "batch_key",
    "load_batching_parameters_file",
    "params_from_settings",
    "parse_batching_parameters",
]
