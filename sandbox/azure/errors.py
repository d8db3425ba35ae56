"""Errors in the shapes ARM and Key Vault answer them, so SDK callers see `error.code`."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse


class ServiceError(Exception):
    """Raised anywhere in a handler; becomes `{"error": {"code", "message"}}` with `status`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        inner_code: str | None = None,
        headers: dict[str, str] | None = None,
        target: str | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.inner_code = inner_code
        self.headers = headers or {}
        self.target = target

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.target:
            error["target"] = self.target
        if self.inner_code:
            # Key Vault's shape: {"error": {"code": "Forbidden", "innererror": {"code": "ForbiddenByRbac"}}}
            error["innererror"] = {"code": self.inner_code}
        return {"error": error}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def bad_request(code: str, message: str, target: str | None = None) -> ServiceError:
    return ServiceError(400, code, message, target=target)


def not_found(code: str, message: str) -> ServiceError:
    return ServiceError(404, code, message)


def conflict(code: str, message: str) -> ServiceError:
    return ServiceError(409, code, message)


def resource_group_not_found(name: str) -> ServiceError:
    return not_found("ResourceGroupNotFound", f"Resource group '{name}' could not be found.")


def resource_not_found(type_name: str, name: str, resource_group: str | None) -> ServiceError:
    where = f" under resource group '{resource_group}'" if resource_group else ""
    return not_found("ResourceNotFound", f"The Resource '{type_name}/{name}'{where} was not found.")
