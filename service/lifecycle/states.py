"""The states of a servable version (TF Serving's ManagerState) and the status records."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["State", "VersionStatus", "ModelSummary"]


class State(StrEnum):
    """START -> LOADING -> AVAILABLE -> UNLOADING -> END; a failed load goes to END + error."""

    START = "START"
    LOADING = "LOADING"
    AVAILABLE = "AVAILABLE"
    UNLOADING = "UNLOADING"
    END = "END"


@dataclass(frozen=True)
class VersionStatus:
    """One version's state; ``error_message`` is set when its last load failed."""

    name: str
    version: int
    state: State
    error_message: str | None = None

    def to_json(self) -> dict[str, Any]:
        """TF Serving's get-model-status entry for this version."""
        return {
            "version": str(self.version),
            "state": self.state.value,
            "status": {
                "error_code": "UNKNOWN" if self.error_message else "OK",
                "error_message": self.error_message or "",
            },
        }


@dataclass(frozen=True)
class ModelSummary:
    """A model as the management API lists it: versions (highest first), labels, config."""

    name: str
    base_path: str
    versions: list[VersionStatus] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)
    policy: dict[str, Any] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return any(v.state is State.AVAILABLE for v in self.versions)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "base_path": self.base_path,
            "ready": self.ready,
            "model_version_policy": self.policy,
            "labels": dict(self.labels),
            "versions": [
                {"version": v.version, "state": v.state.value, "error": v.error_message}
                for v in self.versions
            ],
        }
