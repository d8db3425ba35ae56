"""The copy behind importImage: manifests with their exact bytes, an index's children, every blob.

Runs on a worker thread (runtime.py), never inside a request: reads the source registry and
writes the target one over the Distribution API (registry_client.py). A blob the target
repository has is skipped, one another repository of the target has is cross-repository
mounted, any other is streamed from source to target without being held in memory. Every
failure is an `ImportFailed` with the ARM error the operation reports, in ACR's words.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from sandbox.azure.acr.registry_client import Endpoint, Session, Unreachable

MAX_MANIFESTS = 50  # ACR: "The maximum number of manifests for an imported image is 50."
INDEX_TYPES = frozenset(
    {"application/vnd.docker.distribution.manifest.list.v2+json", "application/vnd.oci.image.index.v1+json"}
)
ACCEPT = ", ".join(
    (
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    )
)
REPOSITORY = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*")
TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


class ImportFailed(Exception):
    """The import's operation ends Failed with this ARM error (code, message)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ImageRef:
    repository: str
    tag: str | None
    digest: str | None

    @property
    def reference(self) -> str:
        return self.digest or self.tag or "latest"

    @classmethod
    def parse(cls, text: str, what: str) -> ImageRef:
        name, _, digest = text.partition("@")
        repository, _, tag = name.partition(":")
        if not REPOSITORY.fullmatch(repository) or (tag and not TAG.fullmatch(tag)):
            raise ValueError(f"The {what} '{text}' is not of the form 'repository[:tag]' or 'repository@digest'.")
        if digest and not DIGEST.fullmatch(digest):
            raise ValueError(f"The digest in {what} '{text}' is not a sha256 digest.")
        return cls(repository, tag or None, digest or None)

    def __str__(self) -> str:
        return f"{self.repository}@{self.digest}" if self.digest else f"{self.repository}:{self.tag or 'latest'}"


@dataclass(frozen=True)
class TargetRef:
    repository: str
    tag: str | None  # None: untagged (a manifest-only copy)


@dataclass
class ImportJob:
    registry_id: str
    source: Endpoint
    source_ref: ImageRef
    source_local: bool  # reachable without leaving the sandbox (resolvable during the POST itself)
    target: Endpoint
    targets: list[TargetRef]
    force: bool


@dataclass
class ImportStats:
    copied: int = 0
    mounted: int = 0
    present: int = 0
    bytes_copied: int = 0
    manifests: int = 0


@dataclass
class Manifest:
    digest: str
    media_type: str
    content: bytes = field(repr=False)

    @property
    def document(self) -> dict[str, Any]:
        data = json.loads(self.content)
        return data if isinstance(data, dict) else {}

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES or (not self.media_type and "manifests" in self.document)


def upstream_message(status: int, reason: str, body: str) -> str:
    """ACR's wording for a source registry's refusal: `Invalid message <Status> <Reason> <registry's body>`."""
    name = {401: "Unauthorized", 403: "Forbidden", 404: "NotFound"}.get(status, str(status))
    return f"Invalid message {name} {reason} {body.strip()}"


def _pull_scope(repository: str) -> str:
    return f"repository:{repository}:pull"


def _push_scope(repository: str) -> str:
    return f"repository:{repository}:pull,push"


def head_digest(session: Session, repository: str, reference: str) -> str | None:
    response = session.request(
        "HEAD", f"/v2/{repository}/manifests/{reference}", _pull_scope(repository), headers={"Accept": ACCEPT}
    )
    if response.status_code != 200:
        return None
    return response.headers.get("docker-content-digest")


def _fetch_manifest(session: Session, repository: str, reference: str) -> Manifest:
    response = session.request(
        "GET", f"/v2/{repository}/manifests/{reference}", _pull_scope(repository), headers={"Accept": ACCEPT}
    )
    if response.status_code != 200:
        raise ImportFailed(
            "InvalidParameters", upstream_message(response.status_code, response.reason_phrase, response.text)
        )
    content = response.content
    digest = "sha256:" + hashlib.sha256(content).hexdigest()
    if reference.startswith("sha256:") and digest != reference:
        raise ImportFailed("InvalidParameters", f"The manifest {repository}@{reference} read back as {digest}.")
    media_type = response.headers.get("content-type", "").split(";", 1)[0].strip()
    return Manifest(digest, media_type, content)


def check_conflicts(target: Session, targets: list[TargetRef], digest: str) -> None:
    for ref in targets:
        if ref.tag is None:
            continue
        existing = head_digest(target, ref.repository, ref.tag)
        if existing and existing != digest:
            raise ImportFailed(
                "Conflict",
                f"Tag {ref.repository}:{ref.tag} already exists in target registry with digest {existing}; the "
                f"source is {digest}. Use mode 'Force' to overwrite it.",
            )


def run_import(job: ImportJob) -> ImportStats:
    """Copy the image; raise ImportFailed with the error the operation should report."""
    stats = ImportStats()
    try:
        with Session(job.source) as src, Session(job.target) as dst:
            top = _fetch_manifest(src, job.source_ref.repository, job.source_ref.reference)
            if job.source_ref.digest and top.digest != job.source_ref.digest:
                raise ImportFailed("InvalidParameters", f"The source manifest digest is {top.digest}.")
            if not job.force:
                check_conflicts(dst, job.targets, top.digest)
            children = _children(src, job.source_ref.repository, top)
            blobs = _blobs([m for m in (top, *children) if not m.is_index])
            copier = _BlobCopier(src, dst, job.source_ref.repository, stats)
            for repository in dict.fromkeys(t.repository for t in job.targets):
                for blob in blobs:
                    copier.ensure(repository, blob)
                for child in children:
                    _put_manifest(dst, repository, child.digest, child, stats)
            for ref in job.targets:
                _put_manifest(dst, ref.repository, ref.tag or top.digest, top, stats)
    except Unreachable as exc:
        message = f"Error copying blobs: a registry could not be reached: {exc}"
        raise ImportFailed("InvalidParameters", message) from None
    return stats


def _children(src: Session, repository: str, top: Manifest) -> list[Manifest]:
    if not top.is_index:
        return []
    listed = top.document.get("manifests") or []
    if len(listed) > MAX_MANIFESTS:
        raise ImportFailed(
            "InvalidParameters",
            f"The source image index lists {len(listed)} manifests; an import copies at most {MAX_MANIFESTS}.",
        )
    children = [_fetch_manifest(src, repository, str(entry.get("digest", ""))) for entry in listed]
    nested = [c for c in children if c.is_index]
    if nested:
        raise ImportFailed("InvalidParameters", f"The index {top.digest} nests another index ({nested[0].digest}).")
    return list({c.digest: c for c in children}.values())


@dataclass(frozen=True)
class Blob:
    digest: str
    size: int


def _blobs(manifests: list[Manifest]) -> list[Blob]:
    found: dict[str, Blob] = {}
    for manifest in manifests:
        document = manifest.document
        for entry in [document.get("config") or {}, *(document.get("layers") or [])]:
            digest = str(entry.get("digest") or "")
            if digest:
                found.setdefault(digest, Blob(digest, int(entry.get("size") or 0)))
    return list(found.values())


def _put_manifest(dst: Session, repository: str, reference: str, manifest: Manifest, stats: ImportStats) -> None:
    response = dst.request(
        "PUT",
        f"/v2/{repository}/manifests/{reference}",
        _push_scope(repository),
        headers={"Content-Type": manifest.media_type or "application/vnd.oci.image.manifest.v1+json"},
        content=manifest.content,
    )
    if response.status_code not in (200, 201):
        raise ImportFailed("InvalidParameters", f"Error writing manifest {repository}:{reference}: {response.text}")
    written = response.headers.get("docker-content-digest")
    if written and written != manifest.digest:
        raise ImportFailed("InternalServerError", f"The target stored {written} for {manifest.digest}.")
    stats.manifests += 1


class _BlobCopier:
    """Each blob into each target repository: present, mounted from a sibling repository, or streamed."""

    def __init__(self, src: Session, dst: Session, source_repository: str, stats: ImportStats) -> None:
        self.src, self.dst, self.source_repository, self.stats = src, dst, source_repository, stats
        self._where: dict[str, str] = {}  # digest -> a target repository known to hold it
        self._catalog: list[str] | None = None

    def ensure(self, repository: str, blob: Blob) -> None:
        if self._exists(repository, blob.digest):
            self.stats.present += 1
            self._where.setdefault(blob.digest, repository)
            return
        sibling = self._sibling_with(repository, blob.digest)
        location = None
        if sibling is not None:
            mounted = self.dst.request(
                "POST",
                f"/v2/{repository}/blobs/uploads/",
                f"{_push_scope(repository)} {_pull_scope(sibling)}",
                params={"mount": blob.digest, "from": sibling},
            )
            if mounted.status_code == 201:
                self.stats.mounted += 1
                self._where.setdefault(blob.digest, repository)
                return
            location = mounted.headers.get("location") if mounted.status_code == 202 else None
        self._upload(repository, blob, location)
        self._where.setdefault(blob.digest, repository)

    def _exists(self, repository: str, digest: str) -> bool:
        response = self.dst.request("HEAD", f"/v2/{repository}/blobs/{digest}", _pull_scope(repository))
        return response.status_code == 200

    def _sibling_with(self, repository: str, digest: str) -> str | None:
        known = self._where.get(digest)
        if known and known != repository:
            return known
        if self._catalog is None:
            listing = self.dst.request("GET", "/v2/_catalog", "registry:catalog:*", params={"n": "1000"})
            self._catalog = list(listing.json().get("repositories") or []) if listing.status_code == 200 else []
        for other in self._catalog:
            if other != repository and self._exists(other, digest):
                self._where[digest] = other
                return other
        return None

    def _upload(self, repository: str, blob: Blob, location: str | None) -> None:
        scope = _push_scope(repository)
        if location is None:
            started = self.dst.request("POST", f"/v2/{repository}/blobs/uploads/", scope)
            if started.status_code != 202:
                raise ImportFailed("InvalidParameters", f"Error copying blobs: upload refused ({started.status_code})")
            location = started.headers["location"]
        url = location if "://" in location else self.dst.url(location)
        url += ("&" if "?" in url else "?") + f"digest={blob.digest}"
        source_path = f"/v2/{self.source_repository}/blobs/{blob.digest}"
        with self.src.stream("GET", source_path, _pull_scope(self.source_repository)) as response:
            if response.status_code != 200:
                response.read()
                refused = upstream_message(response.status_code, response.reason_phrase, response.text)
                raise ImportFailed("InvalidParameters", f"Error copying blobs: {refused}")
            size = response.headers.get("content-length") or str(blob.size)
            headers = {"Content-Type": "application/octet-stream", "Content-Length": size}
            put = self.dst.request("PUT", url, scope, headers=headers, content=response.iter_raw())
        if put.status_code != 201:
            raise ImportFailed("InvalidParameters", f"Error copying blobs: {blob.digest}: {put.text.strip()}")
        self.stats.copied += 1
        self.stats.bytes_copied += int(size)
