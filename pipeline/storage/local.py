"""The local-directory store: the embedded default, one machine (or one shared filesystem).

Its publish semantics (versioned directory, atomic swap) live in
``pipeline.storage.sidecar``; this is the object-style view readers use.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


class LocalStore:
    """put/get/exists/list/delete of files under one root directory (keys are relative paths)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __repr__(self) -> str:
        return f"LocalStore({self.root})"

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"key escapes the store: {key}")
        return path

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)

    def get(self, key: str) -> bytes:
        """The file's bytes; ``FileNotFoundError`` when it does not exist."""
        return self._path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> list[str]:
        root = self.root.resolve()
        if not root.is_dir():
            return []
        keys = (str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
        return sorted(k for k in keys if k.startswith(prefix))

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            self._path(key).unlink(missing_ok=True)
