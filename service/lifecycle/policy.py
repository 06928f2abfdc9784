"""The version policy role: which of the versions on disk a model should serve."""

from __future__ import annotations

from collections.abc import Iterable

from service.config import VersionPolicy

__all__ = ["aspired_versions"]


def aspired_versions(policy: VersionPolicy, available: Iterable[int]) -> set[int]:
    """latest N: the N highest; all: every one; specific: those listed that exist."""
    have = set(available)
    if policy.kind == "all":
        return have
    if policy.kind == "specific":
        return have & set(policy.versions)
    if policy.kind == "latest":
        return set(sorted(have, reverse=True)[: max(policy.num_versions, 1)])
    raise ValueError(f"unknown version policy {policy.kind!r}")
