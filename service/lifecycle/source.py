"""The source role: which versions of a model are on disk and ready to load.

A version is a directory under the model's base path named by a positive integer. Names that
start with "." or end in ".tmp"/".partial" are being published and are ignored; a directory
counts only once it holds a model file (so a copy in progress is not picked up half-done).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["MODEL_FILES", "is_ignored", "is_ready", "scan", "fingerprint"]

# model.json is ours; the others are converted by engine importers at load time.
MODEL_FILES = ("model.json", "model.onnx", "model.keras", "model.h5", "model.tflite")
_IGNORED_SUFFIXES = (".tmp", ".partial")


def is_ignored(name: str) -> bool:
    return name.startswith(".") or name.endswith(_IGNORED_SUFFIXES)


def parse_version(name: str) -> int | None:
    """'12' -> 12; anything that is not a plain positive integer -> None."""
    if is_ignored(name) or not name.isascii() or not name.isdigit():
        return None
    v = int(name)
    return v if v > 0 else None


def is_ready(path: Path) -> bool:
    return any((path / f).is_file() for f in MODEL_FILES)


def scan(base_path: str | os.PathLike[str]) -> dict[int, Path] | None:
    """Ready versions under ``base_path`` (version -> directory), or None if the base path
    cannot be listed (missing, not a directory, unreadable): callers keep what they serve."""
    try:
        entries = list(os.scandir(base_path))
    except OSError:
        return None
    found: dict[int, Path] = {}
    for entry in sorted(entries, key=lambda e: e.name):
        v = parse_version(entry.name)
        if v is None or v in found:  # "07" after "7" is the same version: first name wins
            continue
        try:
            if not entry.is_dir():
                continue
        except OSError:
            continue
        path = Path(entry.path)
        if is_ready(path):
            found[v] = path
    return found


def fingerprint(path: Path) -> tuple[tuple[str, int, int], ...]:
    """(relative name, size, mtime_ns) of the files of a version (two levels deep): it
    changes when a failed version is fixed in place, so the retry happens at once."""
    out: list[tuple[str, int, int]] = []

    def walk(d: Path, prefix: str, depth: int) -> None:
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError:
            return
        for e in entries:
            try:
                if e.is_dir():
                    if depth > 0:
                        walk(Path(e.path), prefix + e.name + "/", depth - 1)
                    continue
                st = e.stat()
            except OSError:
                continue
            out.append((prefix + e.name, st.st_size, st.st_mtime_ns))

    walk(path, "", 1)
    return tuple(out)
