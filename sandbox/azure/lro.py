"""Long-running operations as ARM runs them, paced for a local sandbox.

    PUT           -> 201/200, provisioningState non-terminal, `Azure-AsyncOperation: <status URL>`;
                     the status URL answers {"status": "InProgress"} then {"status": "Succeeded"};
                     the resource GET then shows the final state (the SDK's final GET).
    DELETE, POST  -> 202, `Location: <result URL>`; the result URL answers 202 while running,
                     then 200 with the result (or 204 without one).

Both URLs live under the subscription, like ARM's own:
    /subscriptions/{sub}/providers/{ns}/locations/{loc}/operations/{id}        (Azure-AsyncOperation)
    /subscriptions/{sub}/providers/{ns}/locations/{loc}/operationResults/{id}  (Location)

An operation finishes when polled `LroSettings.polls` times or `LroSettings.seconds` after it
began, whichever is first (see config.py); `advance()` runs at the start of every request so a
GET of the resource sees a finished operation even if nobody polled it. An *external* operation
(`start(..., external=True)`: real work on another thread, e.g. an ACR import copying blobs)
finishes only when that work calls `complete()`, or fails after `EXTERNAL_TIMEOUT_SECONDS`. What finishing means
(mark Succeeded, remove the resource, purge a vault...) is a named *finisher*, registered by
the provider modules, because operations are persisted and must finish after a restart too.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sandbox.azure.config import LroSettings
from sandbox.azure.store import Record, Store

log = logging.getLogger("sandbox.azure.lro")

IN_PROGRESS = "InProgress"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
KEEP_FINISHED_SECONDS = 3600.0
EXTERNAL_TIMEOUT_SECONDS = 3600.0  # an external operation nobody completed by then has failed


@dataclass(frozen=True)
class FinishContext:
    store: Store
    lro: Lro


Finisher = Callable[[FinishContext, Record, bool], None]
FINISHERS: dict[str, Finisher] = {}


def finisher(name: str) -> Callable[[Finisher], Finisher]:
    """Register what finishing an operation of this name does: fn(ctx, operation, succeeded)."""

    def register(fn: Finisher) -> Finisher:
        FINISHERS[name] = fn
        return fn

    return register


def iso_now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class Lro:
    def __init__(self, store: Store, settings: LroSettings) -> None:
        self.store = store
        self.settings = settings
        # the work behind an external operation died with the previous process
        with store.transaction():
            for op in store.operations.values():
                if op.get("external") and op["status"] == IN_PROGRESS:
                    self._fail(op, "InternalServerError", "The operation was interrupted by a restart of the emulator.")

    def start(
        self,
        *,
        subscription: str,
        namespace: str,
        location: str,
        resource_type: str,
        resource_id: str,
        finisher_name: str,
        payload: dict[str, Any] | None = None,
        external: bool = False,
    ) -> Record:
        op_id = str(uuid.uuid4())
        op: Record = {
            "id": op_id,
            "subscription": subscription,
            "namespace": namespace,
            "location": location or "global",
            "resource_type": resource_type,
            "resource_id": resource_id,
            "finisher": finisher_name,
            "payload": payload or {},
            "started": time.time(),
            "start_time": iso_now(),
            "polls": 0,
            "status": IN_PROGRESS,
            "fail": self._take_injected_failure(resource_type),
            "external": external,
        }
        self.store.operations[op_id] = op
        self.store.touch()
        return op

    def _take_injected_failure(self, resource_type: str) -> bool:
        for key in (resource_type.lower(), "*"):
            for name, count in list(self.settings.fail_next.items()):
                if name.lower() == key and count > 0:
                    self.settings.fail_next[name] = count - 1
                    return True
        return False

    # --- URLs ---------------------------------------------------------------------------

    def _base(self, op: Record) -> str:
        return f"/subscriptions/{op['subscription']}/providers/{op['namespace']}/locations/{op['location']}"

    def status_path(self, op: Record) -> str:
        return f"{self._base(op)}/operations/{op['id']}"

    def result_path(self, op: Record) -> str:
        return f"{self._base(op)}/operationResults/{op['id']}"

    def async_headers(self, op: Record, public_url: str, api_version: str) -> dict[str, str]:
        url = f"{public_url}{self.status_path(op)}?api-version={api_version}"
        return {"Azure-AsyncOperation": url, **self.settings.retry_headers()}

    def location_headers(self, op: Record, public_url: str, api_version: str) -> dict[str, str]:
        url = f"{public_url}{self.result_path(op)}?api-version={api_version}"
        return {"Location": url, **self.settings.retry_headers()}

    # --- progress -----------------------------------------------------------------------

    def get(self, op_id: str) -> Record | None:
        return self.store.operations.get(op_id)

    def poll(self, op: Record) -> Record:
        """One status poll: count it, finish the operation if its time has come."""
        if op["status"] == IN_PROGRESS:
            op["polls"] += 1
            self.store.touch()
            if op["polls"] >= self.settings.polls and not op.get("external"):
                self._finish(op)
        return op

    def advance(self) -> None:
        """Finish every operation whose time is up; forget long-finished ones."""
        now = time.time()
        for op in list(self.store.operations.values()):
            if op["status"] == IN_PROGRESS and op.get("external"):
                if now - op["started"] >= EXTERNAL_TIMEOUT_SECONDS:
                    self._fail(op, "OperationTimedOut", "The operation did not complete in time.")
            elif op["status"] == IN_PROGRESS and now - op["started"] >= self.settings.seconds:
                self._finish(op)
            elif op["status"] != IN_PROGRESS and now - op["started"] > KEEP_FINISHED_SECONDS:
                del self.store.operations[op["id"]]
                self.store.touch()

    def _finish(self, op: Record) -> None:
        succeeded = not op["fail"]
        op["status"] = SUCCEEDED if succeeded else FAILED
        op["end_time"] = iso_now()
        if not succeeded:
            op["error"] = {
                "code": "InternalServerError",
                "message": "The operation failed (fault injected by the sandbox through /_sandbox/lro).",
            }
        self.store.touch()
        fn = FINISHERS.get(op["finisher"])
        if fn is None:
            log.error("operation %s has unknown finisher %r", op["id"], op["finisher"])
            return
        fn(FinishContext(self.store, self), op, succeeded)
        log.info("operation %s on %s: %s", op["id"], op["resource_id"], op["status"])

    def complete(self, op_id: str, error: dict[str, str] | None = None) -> None:
        """End an external operation: Succeeded, or Failed with `error` ({"code", "message"}).

        A failure injected through `/_sandbox/lro` (`fail_next`) still applies: the work was
        done, but the operation reports the injected failure, as a flaky service would.
        """
        op = self.store.operations.get(op_id)
        if op is None or op["status"] != IN_PROGRESS:
            return
        if error is not None:
            self._fail(op, error["code"], error["message"])
        else:
            self._finish(op)

    def _fail(self, op: Record, code: str, message: str) -> None:
        op["status"] = FAILED
        op["end_time"] = iso_now()
        op["error"] = {"code": code, "message": message}
        self.store.touch()
        fn = FINISHERS.get(op["finisher"])
        if fn is not None:
            fn(FinishContext(self.store, self), op, False)
        log.info("operation %s on %s: Failed (%s)", op["id"], op["resource_id"], code)

    def status_body(self, op: Record) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.status_path(op),
            "name": op["id"],
            "status": op["status"],
            "startTime": op["start_time"],
        }
        if "end_time" in op:
            body["endTime"] = op["end_time"]
        if "error" in op:
            body["error"] = op["error"]
        return body
