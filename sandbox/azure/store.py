"""Everything the emulator has been told, kept in one JSON file so a restart sees it again.

Four collections, keyed case-insensitively as ARM and Key Vault are:

    resources       lower-cased ARM id -> {"id", "type", "body", "meta"}  (role assignments included)
    operations      operation id -> a long-running operation (see lro.py)
    deleted_vaults  lower-cased vault name -> a soft-deleted vault and the data it held
    vault_data      lower-cased vault name -> {"secrets": {lower-cased name: {...}}}

Each request runs inside `transaction()`: one lock for the whole emulator (requests are short)
and, if anything changed, one atomic write (temporary file, fsync, rename) at the end, so a
kill -9 leaves either the old or the new state on disk, never half of one. The file holds
secret values: it is created readable by its owner only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger("sandbox.azure.store")

FORMAT_VERSION = 1
Record = dict[str, Any]


class Store:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._dirty = False
        self.resources: dict[str, Record] = {}
        self.operations: dict[str, Record] = {}
        self.deleted_vaults: dict[str, Record] = {}
        self.vault_data: dict[str, Record] = {}
        if path is not None and path.exists():
            self._load(path)

    # --- persistence ------------------------------------------------------------------

    def _load(self, path: Path) -> None:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != FORMAT_VERSION:
            raise ValueError(f"{path}: unknown state format {data.get('format')!r} (expected {FORMAT_VERSION})")
        self.resources = data.get("resources", {})
        self.operations = data.get("operations", {})
        self.deleted_vaults = data.get("deleted_vaults", {})
        self.vault_data = data.get("vault_data", {})
        log.info("loaded %d resources and %d vaults' data from %s", len(self.resources), len(self.vault_data), path)

    def _save(self) -> None:
        if self.path is None:
            return
        data = {
            "format": FORMAT_VERSION,
            "resources": self.resources,
            "operations": self.operations,
            "deleted_vaults": self.deleted_vaults,
            "vault_data": self.vault_data,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(data, handle, indent=1, sort_keys=True)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Store]:
        """Serialise a request against all others; persist what it changed, even if it then failed."""
        with self._lock:
            try:
                yield self
            finally:
                if self._dirty:
                    self._save()
                    self._dirty = False

    def touch(self) -> None:
        """Mark the state changed (callers that mutate nested dicts in place)."""
        self._dirty = True

    # --- resources --------------------------------------------------------------------

    def get(self, resource_id: str) -> Record | None:
        return self.resources.get(resource_id.lower())

    def put(self, record: Record) -> None:
        self.resources[record["id"].lower()] = record
        self._dirty = True

    def remove(self, resource_id: str) -> Record | None:
        self._dirty = True
        return self.resources.pop(resource_id.lower(), None)

    def under(self, resource_id: str) -> list[Record]:
        """Every record nested below `resource_id` (children, extension resources)."""
        prefix = resource_id.lower().rstrip("/") + "/"
        return [r for key, r in self.resources.items() if key.startswith(prefix)]

    def of_type(self, type_name: str) -> list[Record]:
        wanted = type_name.lower()
        return [r for r in self.resources.values() if r["type"].lower() == wanted]
