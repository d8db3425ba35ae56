"""Error kinds of mmrv-migrate.

Every failure the tool can explain is one of these; the CLI is the only place that
turns them into exit codes.

    MigrationError                 anything the tool explains to a person
    ├── InputError        (exit 2) bad spec, bad flag, bad reference: nothing was contacted
    │   ├── ProblemsError          several problems with one input, one line each
    │   │   ├── SpecError          the migration spec failed validation
    │   │   └── TranslationError   an ECS input cannot be translated (migration.translate)
    │   └── SandboxNotRunning      --sandbox given but no sandbox is up
    ├── ApprovalRefused   (exit 1) an approval gate said no, timed out, or was answered by a non-approver
    │                              (migration.approval; nothing in production changed)
    └── CloudError        (exit 1) a cloud or the sandbox said no, or could not be reached
        ├── TransientError         429, 5xx, throttling, timeouts, LRO still running: retry
        └── PermanentError         4xx validation, missing permission, not found: fail at once
            └── NotFoundError      a `get_` of something that does not exist

Retries happen only for TransientError (see `is_transient`), with backoff and jitter,
through Prefect's `retry_condition_fn`.
"""

from __future__ import annotations


class MigrationError(Exception):
    """Base of every error the tool explains to a person."""

    exit_code = 1


class InputError(MigrationError):
    """The user's input is wrong; nothing was contacted and nothing changed."""

    exit_code = 2


class ProblemsError(InputError):
    """Everything wrong with one input at once: `problems` holds one line per problem."""

    verb = ""  # e.g. "cannot translate": said before the count

    def __init__(self, problems: list[str], source: str) -> None:
        self.problems = list(problems)
        self.source = source
        count = len(self.problems)
        what = f"{self.verb}, " if self.verb else ""
        header = f"{source}: {what}{count} problem{'s' if count != 1 else ''}"
        super().__init__("\n".join([header, *(f"  - {p}" for p in self.problems)]))


class SpecError(ProblemsError):
    """The migration spec failed validation."""

    def __init__(self, problems: list[str], source: str = "spec") -> None:
        super().__init__(problems, source)


class SandboxNotRunning(InputError):
    def __init__(self, state_dir: str) -> None:
        super().__init__(f"no sandbox is running in {state_dir}: run `mmrv-migrate sandbox up` first")


class CloudError(MigrationError):
    """A cloud API refused or could not be reached. Keeps the service and status code."""

    def __init__(self, service: str, message: str, status: int | None = None) -> None:
        self.service = service
        self.status = status
        code = f" (HTTP {status})" if status is not None else ""
        super().__init__(f"{service}: {message}{code}")


class TransientError(CloudError):
    """Worth retrying: throttling, 5xx, timeouts, lost connections."""


class PermanentError(CloudError):
    """Retrying will not help: validation, authorization, quota, not found."""


class NotFoundError(PermanentError):
    """A `get_` found nothing at the name it was given."""


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TransientError)
