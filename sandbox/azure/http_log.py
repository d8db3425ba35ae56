"""One access-log line per request: method, path, status, time. Never a body, a query string or a header:
they carry secret values (Key Vault) and tokens (ACR, ARM)."""

from __future__ import annotations

import logging
import time

from starlette.requests import Request
from starlette.responses import Response

log = logging.getLogger("sandbox.azure")


def logged(request: Request, started: float, response: Response) -> Response:
    """Log the request (`started`: its time.perf_counter() at arrival) and return the response."""
    log.info(
        "%s %s -> %d (%.1f ms)",
        request.method,
        request.scope["path"],
        response.status_code,
        (time.perf_counter() - started) * 1000,
    )
    return response
