"""Defaults every task of mmrv-migrate shares: retry only TransientError, with exponential backoff and jitter.

`read_task(...)` decorates an idempotent read: no cache (an inventory must see the estate
as it is now, not as a previous run saw it), no persisted result, retries for transient
failures only. The retry numbers come from `RetrySettings` (MMRV_TASK_RETRIES,
MMRV_RETRY_BASE_SECONDS, MMRV_RETRY_JITTER). Settings are read in entrypoints, not at import
time, so a flow applies them when it runs with `with_retries(task)`; the decorator's
built-in numbers are `RetrySettings`' defaults.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from prefect.tasks import exponential_backoff

from migration.errors import is_transient
from migration.settings import RetrySettings

P = ParamSpec("P")
R = TypeVar("R")

_DEFAULTS = RetrySettings.model_construct()  # the class defaults; reads no environment


def retry_only_transient(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect's `retry_condition_fn`: retry a failed run only when it raised a TransientError."""
    data = state.data
    if isinstance(data, BaseException):
        return is_transient(data)
    try:
        state.result()
    except BaseException as exc:
        return is_transient(exc)
    return False


def retry_options(settings: RetrySettings | None = None) -> dict[str, Any]:
    """Task options for retries: `task.with_options(**retry_options(RetrySettings()))`."""
    s = settings if settings is not None else _DEFAULTS
    return {
        "retries": max(0, s.retries),
        "retry_delay_seconds": exponential_backoff(backoff_factor=max(0.0, s.base_delay_seconds)),
        "retry_jitter_factor": max(0.0, s.jitter_factor),
        "retry_condition_fn": retry_only_transient,
    }


def with_retries(t: Task[P, R], settings: RetrySettings | None = None) -> Task[P, R]:
    """The task with retry options from the environment (`RetrySettings()`), applied at run time."""
    return t.with_options(**retry_options(settings if settings is not None else RetrySettings()))


def read_task(*, name: str, task_run_name: str) -> Callable[[Callable[P, R]], Task[P, R]]:
    """Decorator for an idempotent cloud read."""

    def decorate(fn: Callable[P, R]) -> Task[P, R]:
        return task(
            fn,
            name=name,
            task_run_name=task_run_name,
            cache_policy=NO_CACHE,
            persist_result=False,
            **retry_options(),
        )

    return decorate
