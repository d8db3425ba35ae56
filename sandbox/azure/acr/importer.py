"""`POST .../registries/{name}/importImage`: ACR's server-side import, done for real between sandbox registries.

Request body (ImportImageParameters, 2025-11-01):

    {"source": {"registryUri": "host[:port]" | "resourceId": "<ACR id>",
                "sourceImage": "repo:tag" | "repo@sha256:...",
                "credentials": {"username": "...", "password": "..."}},
     "targetTags": ["repo:tag", ...], "untaggedTargetRepositories": ["repo", ...],
     "mode": "NoForce" | "Force"}

What Azure does and this does too: validate the parameters (400 InvalidParameters); with mode
NoForce, refuse a target tag that already points at another digest before anything is copied
(409 Conflict, at once when the source digest is known without leaving the sandbox, else as
the operation's failure); answer 202 with a `Location` to poll; then copy the manifest with its
exact bytes (so the digest is preserved), an index's child manifests (at most 50), and every
blob: skipped when the target repository has it, cross-repository mounted when another
repository of the target registry has it, otherwise streamed from the source (copying.py). The operation
fails the way ACR's does when the source refuses the credentials or has no such image
(`Invalid message Unauthorized Unauthorized {...}`, with the source registry's own error body).

The source is reached by its `registryUri` (mapped to a direct URL by `--source-registry-map`,
else `https://<registryUri>`), with the given credentials; a sandbox ACR (by `resourceId`, or by
its login server) is read with a token the emulator signs itself, after checking the caller may
pull there. The password never reaches a log line or an error message.
"""

from __future__ import annotations

import logging
from typing import Any

from sandbox.azure.acr.access import REGISTRY_TYPE, allowed_actions, registry_by_login_server
from sandbox.azure.acr.copying import (
    REPOSITORY,
    ImageRef,
    ImportFailed,
    ImportJob,
    TargetRef,
    check_conflicts,
    head_digest,
    upstream_message,
)
from sandbox.azure.acr.oauth import NULL_USER
from sandbox.azure.acr.registry_client import Endpoint, Session, Unreachable
from sandbox.azure.acr.runtime import FINISHER, AcrRuntime
from sandbox.azure.acr.signing import TokenInvalid
from sandbox.azure.errors import ServiceError
from sandbox.azure.providers.base import ArmRequest, ArmResponse
from sandbox.azure.store import Record

log = logging.getLogger("sandbox.azure.acr.import")


def _invalid(message: str) -> ServiceError:
    return ServiceError(400, "InvalidParameters", message)


# --- parameters -------------------------------------------------------------------------------


def _parse(text: str, what: str) -> ImageRef:
    try:
        return ImageRef.parse(text, what)
    except ValueError as exc:
        raise _invalid(str(exc)) from None


def _targets(body: dict[str, Any], source: ImageRef) -> list[TargetRef]:
    tags = body.get("targetTags") or []
    untagged = body.get("untaggedTargetRepositories") or []
    if not isinstance(tags, list) or not isinstance(untagged, list):
        raise _invalid("targetTags and untaggedTargetRepositories must be lists of strings.")
    targets = []
    for text in tags:
        ref = _parse(str(text), "target tag")
        if ref.digest:
            raise _invalid(f"The target tag '{text}' must be 'repository[:tag]', not a digest.")
        targets.append(TargetRef(ref.repository, ref.tag or source.tag or "latest"))
    for text in untagged:
        if not REPOSITORY.fullmatch(str(text)):
            raise _invalid(f"The untagged target repository '{text}' is not a valid repository name.")
        targets.append(TargetRef(str(text), None))
    if not targets:  # neither given: the source's own repository and tag, as the CLI defaults
        targets.append(TargetRef(source.repository, source.tag or ("latest" if not source.digest else None)))
    return targets


def _host_of(uri: str) -> str:
    return uri.split("://", 1)[-1].rstrip("/").lower()


# --- the POST ---------------------------------------------------------------------------------


def start_import(req: ArmRequest, record: Record, runtime: AcrRuntime) -> ArmResponse:
    """Validate, check NoForce conflicts it can see at once, start the copy on a worker, answer 202."""
    body = req.json_body()
    source = body.get("source")
    if not isinstance(source, dict) or not source.get("sourceImage"):
        raise _invalid("source.sourceImage is required.")
    mode = body.get("mode") or "NoForce"
    if mode not in ("NoForce", "Force"):
        raise _invalid(f"mode '{mode}' is not valid; allowed: NoForce, Force.")
    source_ref = _parse(str(source["sourceImage"]), "source image")
    targets = _targets(body, source_ref)
    target = runtime.own_endpoint(record)
    endpoint, local = _resolve_source(req, runtime, source)
    job = ImportJob(record["id"], endpoint, source_ref, local, target, targets, force=mode == "Force")
    if not job.force:
        _conflict_now(job)
    op = req.lro.start(
        subscription=record["id"].split("/")[2],
        namespace="Microsoft.ContainerRegistry",
        location=record["body"].get("location", ""),
        resource_type=REGISTRY_TYPE,
        resource_id=record["id"],
        finisher_name=FINISHER,
        payload={"image": str(source_ref)},  # never the credentials: operations are persisted
        external=True,
    )
    runtime.submit(op["id"], job)
    log.info("import %s started: %s from %s into %s", op["id"], source_ref, job.source.host, record["body"]["name"])
    return ArmResponse(202, None, req.lro.location_headers(op, req.public_url, req.api_version))


def _resolve_source(req: ArmRequest, runtime: AcrRuntime, source: dict[str, Any]) -> tuple[Endpoint, bool]:
    credentials = source.get("credentials") or {}
    if not isinstance(credentials, dict):
        raise _invalid("source.credentials must be an object with username and password.")
    user, password = str(credentials.get("username") or ""), str(credentials.get("password") or "")
    if source.get("resourceId"):
        registry = req.store.get(str(source["resourceId"]))
        if registry is None or registry["type"].lower() != REGISTRY_TYPE.lower():
            raise _invalid(f"The source registry '{source['resourceId']}' could not be found.")
        return _own_source(req, runtime, registry, req.principal.oid), True
    uri = str(source.get("registryUri") or "")
    if not uri:
        raise _invalid("source.registryUri or source.resourceId is required.")
    host = _host_of(uri)
    own = registry_by_login_server(req.store, host)
    if own is not None:
        principal = req.principal.oid
        if user or password:  # `az acr login --expose-token` style: the null user and a refresh token
            principal = _refresh_principal(runtime, user, password, host)
        return _own_source(req, runtime, own, principal), True
    basic = (user, password) if user or password else None
    mapped = req.config.source_registries.get(host)
    if mapped:
        return Endpoint(mapped, host, basic=basic), True
    verify: str | bool = str(req.config.ca_bundle) if req.config.ca_bundle else True
    return Endpoint(f"https://{host}", host, basic=basic, verify=verify), False


def _refresh_principal(runtime: AcrRuntime, user: str, password: str, host: str) -> str:
    """The principal of an ACR refresh token given as source credentials (the null user's password)."""
    refused = _invalid(upstream_message(401, "Unauthorized", "authentication required"))
    if user != NULL_USER:
        raise refused
    try:
        claims = runtime.signer().verify(password)
    except TokenInvalid:
        raise refused from None
    if str(claims.get("aud", "")).lower() != host:
        raise refused
    return str(claims["sub"])


def _own_source(req: ArmRequest, runtime: AcrRuntime, registry: Record, principal: str) -> Endpoint:
    if "pull" not in allowed_actions(req.store, req.config, principal, registry["id"]):
        raise _invalid(
            f"The caller {principal} has no pull permission (AcrPull or above) on the source registry "
            f"'{registry['id']}'."
        )
    return runtime.own_endpoint(registry)


def _conflict_now(job: ImportJob) -> None:
    """NoForce: refuse before anything happens when a target tag holds another digest (Azure answers 409)."""
    if not job.source_local:
        return  # found out by the job, before it copies anything
    try:
        with Session(job.source) as src, Session(job.target) as dst:
            digest = job.source_ref.digest or head_digest(src, job.source_ref.repository, job.source_ref.reference)
            if digest:
                check_conflicts(dst, job.targets, digest)
    except ImportFailed as failed:
        if failed.code == "Conflict":
            raise ServiceError(409, "Conflict", failed.message) from None
    except Unreachable:
        pass  # the job reports it
