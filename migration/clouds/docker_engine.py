"""The `docker` strategy: pull, tag, push through a Docker Engine API with the docker SDK.

For teams that must move images through a daemon (`DOCKER_HOST`: Docker, or podman's
Docker-compatible service). The daemon stores images uncompressed and compresses them
again on push, so the pushed manifest (and its digest) can differ from the source: the
outcome says which digest the target got, and the flow fails the image unless the spec
allows a digest change. An index (multi-arch) comes out as the daemon's one platform.
The registries' credentials go to the daemon per request (`auth_config`): ECR's basic
login, ACR's refresh token with the null user (what `az acr login` does).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from migration.clouds.registry import RegistryClient
from migration.errors import NotFoundError, PermanentError, TransientError
from migration.images import TransferOutcome

log = logging.getLogger(__name__)


class DockerEngine:
    """A Docker Engine API client (the daemon at `docker_host`, else the SDK's environment defaults)."""

    def __init__(self, docker_host: str | None = None, timeout: float = 600.0) -> None:
        import docker

        self.where = docker_host or "the Docker daemon (DOCKER_HOST)"
        try:
            self.client = (
                docker.DockerClient(base_url=docker_host, timeout=int(timeout))
                if docker_host
                else docker.from_env(timeout=int(timeout))
            )
            self.client.ping()
        except docker.errors.DockerException as exc:
            raise PermanentError("docker", f"cannot reach {self.where}: {exc}") from None

    def close(self) -> None:
        self.client.close()

    def transfer(
        self,
        source: RegistryClient,
        target: RegistryClient,
        repository: str,
        digest: str,
        tags: Iterable[str],
        *,
        target_repository: str | None = None,
    ) -> TransferOutcome:
        """Pull `repository@digest` from the source, tag it for the target, push every tag."""
        import docker

        tags = tuple(tags)
        target_repository = target_repository or repository
        if not tags:
            return TransferOutcome(
                repository=repository,
                digest=digest,
                strategy="docker",
                error="the docker strategy cannot push an untagged image; use copy or import",
            )
        source_ref = f"{source.host}/{repository}@{digest}"
        target_name = f"{target.host}/{target_repository}"
        try:
            user, password = source.registry_password(repository)
            self._stream(
                self.client.api.pull(
                    source_ref, auth_config={"username": user, "password": password}, stream=True, decode=True
                ),
                f"pull {source_ref}",
            )
            user, password = target.registry_password(target_repository)
            pushed: str | None = None
            for tag in tags:
                self.client.api.tag(source_ref, target_name, tag)
                events = self.client.api.push(
                    target_name, tag=tag, auth_config={"username": user, "password": password}, stream=True, decode=True
                )
                pushed = self._stream(events, f"push {target_name}:{tag}") or pushed
        except docker.errors.APIError as exc:
            status = exc.status_code
            text = f"{self.where}: {exc.explanation or exc}"
            if status == 404:
                raise NotFoundError("docker", text, status) from None
            if status is not None and status >= 500 and "connection" in str(exc).lower():
                raise TransientError("docker", text, status) from None
            raise PermanentError("docker", text, status) from None
        except docker.errors.DockerException as exc:
            raise TransientError("docker", f"{self.where}: {exc}") from None
        finally:
            self._forget(source_ref, [f"{target_name}:{t}" for t in tags])
        served = target.manifest_digest(target_repository, tags[0])
        target_digest = served or pushed or digest
        size = sum(b.size for b in target.get_manifest(target_repository, target_digest).blobs())
        note = "" if target_digest == digest else f"the daemon pushed a different digest: {target_digest}"
        return TransferOutcome(
            repository=repository,
            digest=digest,
            target_digest=target_digest,
            tags=tags,
            bytes_moved=size,
            strategy="docker",
            note=note,
        )

    @staticmethod
    def _stream(events: Iterable[dict[str, Any]], what: str) -> str | None:
        """Read a pull/push progress stream; raise on an error event; return the digest a push reports."""
        digest = None
        for event in events:
            if event.get("error") or event.get("errorDetail"):
                message = event.get("error") or (event.get("errorDetail") or {}).get("message")
                raise PermanentError("docker", f"{what}: {message}")
            aux = event.get("aux") or {}
            if isinstance(aux, dict) and aux.get("Digest"):
                digest = str(aux["Digest"])
        return digest

    def _forget(self, *refs: str | list[str]) -> None:
        """Remove what this transfer left in the daemon's store (it is only a waypoint)."""
        import docker

        names: list[str] = []
        for ref in refs:
            names += ref if isinstance(ref, list) else [ref]
        for name in reversed(names):
            try:
                self.client.api.remove_image(name, force=True)
            except docker.errors.DockerException:
                log.debug("could not remove %s from the daemon", name)
