"""What the ACR side of the emulator holds while it runs: the token signer and the import workers."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from sandbox.azure.acr.access import ALL_ACTIONS, Scope
from sandbox.azure.acr.copying import ImportFailed, ImportJob, run_import
from sandbox.azure.acr.registry_client import Endpoint
from sandbox.azure.acr.signing import Signer, SigningFiles
from sandbox.azure.config import EmulatorConfig
from sandbox.azure.errors import ServiceError
from sandbox.azure.lro import FinishContext, Lro, finisher
from sandbox.azure.store import Record, Store

log = logging.getLogger("sandbox.azure.acr")

FINISHER = "acr_import"  # the name importImage operations finish by (lro.py)
IMPORT_WORKERS = 4  # imports run side by side, as ACR runs them
INTERNAL_TOKEN_SECONDS = 600
IMPORTER_SUBJECT = "acr-import"


@finisher(FINISHER)
def _imported(ctx: FinishContext, op: Record, succeeded: bool) -> None:
    """Nothing changes in ARM when an import ends: the registries hold the result."""


class AcrRuntime:
    def __init__(self, config: EmulatorConfig, store: Store, lro: Lro) -> None:
        self.config = config
        self.store = store
        self.lro = lro
        self._signer: Signer | None = None
        if config.acr_signing_key and config.acr_signing_cert:
            self._signer = Signer(SigningFiles(config.acr_signing_key, config.acr_signing_cert))
        self._workers = ThreadPoolExecutor(max_workers=IMPORT_WORKERS, thread_name_prefix="acr-import")

    def signer(self) -> Signer:
        if self._signer is None:
            raise ServiceError(
                404,
                "NotFound",
                "This emulator has no ACR data plane (start it with --acr-signing-key and --acr-signing-cert).",
            )
        return self._signer

    def own_endpoint(self, registry: Record) -> Endpoint:
        """One of the sandbox's registries, reached directly, with tokens signed here."""
        name = registry["body"]["name"].lower()
        base = self.config.registry_backends.get(name)
        if not base:
            raise ServiceError(
                400,
                "InvalidParameters",
                f"The registry '{registry['body']['name']}' has no data plane in this sandbox: only the registries "
                "named in the spec are served.",
            )
        service = registry["body"]["properties"]["loginServer"]
        signer = self.signer()

        def mint(scopes: Sequence[str]) -> str:
            parsed = [s for text in scopes for part in text.split() if (s := Scope.parse(part)) is not None]
            access = [{"type": s.type, "name": s.name, "actions": sorted(ALL_ACTIONS | {"*"})} for s in parsed]
            claims = {"sub": IMPORTER_SUBJECT, "aud": service, "access": access}
            return signer.sign(claims, INTERNAL_TOKEN_SECONDS)

        return Endpoint(base, service, mint=mint)

    def submit(self, op_id: str, job: ImportJob) -> None:
        self._workers.submit(self._run, op_id, job)

    def _run(self, op_id: str, job: ImportJob) -> None:
        error: dict[str, str] | None = None
        try:
            stats = run_import(job)
            log.info(
                "import %s done: %d manifest(s) written, blobs %d copied (%d bytes), %d mounted, %d present",
                op_id,
                stats.manifests,
                stats.copied,
                stats.bytes_copied,
                stats.mounted,
                stats.present,
            )
        except ImportFailed as failed:
            log.info("import %s failed: %s", op_id, failed.code)
            error = {"code": failed.code, "message": failed.message}
        except Exception:  # a bug must fail the operation, not leave it running for an hour
            log.exception("import %s crashed", op_id)
            error = {"code": "InternalServerError", "message": "The import failed; see the emulator's log."}
        with self.store.transaction():
            self.lro.complete(op_id, error)
