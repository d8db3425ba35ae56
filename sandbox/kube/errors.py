"""API errors as the API server returns them: a `Status` object with the right code and reason.

The messages follow k8s.io/apimachinery/pkg/api/errors word for word (e.g.
`deployments.apps "web" not found`, `Deployment.apps "Web" is invalid: metadata.name: ...`),
because clients and people match on them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox.kube.resources import ResourceType


@dataclass(frozen=True)
class Cause:
    """A metav1.StatusCause; `reason` is Go's CauseType (it goes over the wire as `reason`)."""

    reason: str
    message: str
    field: str

    def to_json(self) -> dict[str, str]:
        return {"reason": self.reason, "message": self.message, "field": self.field}

    def text(self) -> str:
        """How the aggregate error message prints it: `<field>: <message>`."""
        return f"{self.field}: {self.message}" if self.field else self.message


def _go_value(value: Any) -> str:
    # field.Invalid prints strings quoted (%q) and numbers bare
    if isinstance(value, str):
        return json.dumps(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def invalid_value(field: str, value: Any, detail: str) -> Cause:
    return Cause("FieldValueInvalid", f"Invalid value: {_go_value(value)}: {detail}", field)


def required_value(field: str, detail: str = "") -> Cause:
    return Cause("FieldValueRequired", "Required value" + (f": {detail}" if detail else ""), field)


def not_supported(field: str, value: Any, supported: list[str]) -> Cause:
    choices = ", ".join(json.dumps(s) for s in supported)
    return Cause("FieldValueNotSupported", f"Unsupported value: {_go_value(value)}: supported values: {choices}", field)


def duplicate_value(field: str, value: Any) -> Cause:
    return Cause("FieldValueDuplicate", f"Duplicate value: {_go_value(value)}", field)


def forbidden_field(field: str, detail: str) -> Cause:
    return Cause("FieldValueForbidden", f"Forbidden: {detail}", field)


class ApiError(Exception):
    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body


def _details(rt: ResourceType, name: str, **extra: Any) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name} if name else {}
    if rt.group:
        details["group"] = rt.group
    details["kind"] = rt.plural
    details.update(extra)
    return details


def not_found(rt: ResourceType, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{rt.qualified} "{name}" not found', _details(rt, name))


def namespace_not_found(namespace: str) -> ApiError:
    return ApiError(404, "NotFound", f'namespaces "{namespace}" not found', {"name": namespace, "kind": "namespaces"})


def path_not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def already_exists(rt: ResourceType, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{rt.qualified} "{name}" already exists', _details(rt, name))


def conflict(rt: ResourceType, name: str) -> ApiError:
    message = (
        f'Operation cannot be fulfilled on {rt.qualified} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )
    return ApiError(409, "Conflict", message, _details(rt, name))


def precondition_failed(rt: ResourceType, name: str, what: str) -> ApiError:
    message = f'Operation cannot be fulfilled on {rt.qualified} "{name}": {what}'
    return ApiError(409, "Conflict", message, _details(rt, name))


def invalid(rt: ResourceType, name: str, causes: list[Cause]) -> ApiError:
    # one error prints bare, several as apimachinery's aggregate "[a, b]"
    summary = causes[0].text() if len(causes) == 1 else "[" + ", ".join(c.text() for c in causes) + "]"
    details: dict[str, Any] = {"name": name} if name else {}
    if rt.group:
        details["group"] = rt.group
    details["kind"] = rt.kind
    details["causes"] = [c.to_json() for c in causes]
    return ApiError(422, "Invalid", f'{rt.group_kind} "{name}" is invalid: {summary}', details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def namespace_terminating(rt: ResourceType, name: str, namespace: str) -> ApiError:
    message = (
        f'{rt.qualified} "{name}" is forbidden: unable to create new content in namespace '
        f"{namespace} because it is being terminated"
    )
    cause = Cause("NamespaceTerminating", f"namespace {namespace} is being terminated", "metadata.namespace")
    return ApiError(403, "Forbidden", message, _details(rt, name, causes=[cause.to_json()]))


def unsupported_media_type(accepted: list[str]) -> ApiError:
    message = "the body of the request was in an unknown format - accepted media types include: " + ", ".join(accepted)
    return ApiError(415, "UnsupportedMediaType", message)


def method_not_allowed(verb: str, rt: ResourceType) -> ApiError:
    return ApiError(405, "MethodNotAllowed", f"{verb} is not supported on resources of kind {rt.qualified!r}")


def expired(message: str) -> ApiError:
    return ApiError(410, "Expired", message)
