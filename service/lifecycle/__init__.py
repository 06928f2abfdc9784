"""Model lifecycle: TF Serving's source, policy, loader and manager roles, in Python.

The HTTP side needs only ``ModelManager`` (and the records it returns): ``acquire`` a
refcounted ``Handle`` per request, read ``status``/``models``/``labels``/``ready``, and drive
``load_version``/``unload_version``/``set_label``/``reload_config`` for management.
"""

from service.lifecycle.manager import EventListener, Handle, ModelManager
from service.lifecycle.states import ModelSummary, State, VersionStatus

__all__ = [
    "EventListener",
    "Handle",
    "ModelManager",
    "ModelSummary",
    "State",
    "VersionStatus",
]
