"""Deterministic container images, pushed over the registry HTTP API (no Docker needed).

The sandbox's ECR is a Distribution registry; this module fills it with real images:

* `ImageBuilder` makes layers and configs from a seed. A layer is a gzip-compressed tar of
  seeded random bytes with fixed names, owners and mtime 0, written through a gzip stream
  with a fixed header (mtime 0, no file name), so the same (seed, layer name) always gives
  the same bytes and digests. Layers are written to disk once and shared by every image
  that names them (base layers shared between tags and between repositories).
* The config is an OCI/Docker image config (amd64/linux, `rootfs.diff_ids` = sha256 of the
  uncompressed tars, labels, exposed ports); the manifest is Docker v2 schema 2, what ECR
  mostly holds. The image digest is the sha256 of the exact manifest bytes.
* `RegistryPusher` pushes with the Distribution API: HEAD the blob (skip when present),
  cross-repository mount when the blob is known in another repository, otherwise a
  monolithic upload streamed from the file; then PUT the manifest by tag and check the
  registry's `Docker-Content-Digest` equals ours.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import os
import random
import tarfile
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import httpx

log = logging.getLogger("sandbox.oci")

MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_V1 = "application/vnd.docker.container.image.v1+json"
LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
BROKEN_LABEL = "mmrv.sandbox/broken"

_RANDOM_BLOCK = 64 * 1024  # content is generated in fixed blocks so chunking never changes bytes
_UPLOAD_CHUNK = 256 * 1024
_GZIP_LEVEL = 6  # Docker's default compression level


class RegistryError(RuntimeError):
    """The registry refused or answered something we did not expect (status kept, no secrets)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(f"{message}{f' (HTTP {status})' if status is not None else ''}")
        self.status = status


# --- what images are made of -----------------------------------------------------------------


@dataclass(frozen=True)
class LayerSpec:
    """One layer. Its name seeds its content, so layers with equal specs are the same blob."""

    name: str  # e.g. "debian-bookworm-slim"
    size: int  # bytes of payload in the tar
    path: str  # file path inside the layer, e.g. "usr/lib/mmrv/base.bin"
    created_by: str  # the history line, as `docker history` would show it


@dataclass(frozen=True)
class ImageSpec:
    layers: tuple[LayerSpec, ...]
    labels: Mapping[str, str]
    exposed_ports: tuple[int, ...] = ()
    env: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    working_dir: str = "/app"
    user: str = "10001"
    created: str = "2024-01-01T00:00:00Z"


@dataclass(frozen=True)
class Blob:
    digest: str
    size: int
    media_type: str
    path: Path
    diff_id: str | None = None  # layers: sha256 of the uncompressed tar


@dataclass(frozen=True)
class BuiltImage:
    manifest: bytes
    digest: str
    config: Blob
    layers: tuple[Blob, ...]
    media_type: str = MANIFEST_V2

    @property
    def blobs(self) -> tuple[Blob, ...]:
        return (*self.layers, self.config)

    @property
    def size(self) -> int:
        """Compressed size: config plus layers, what ECR reports as imageSizeInBytes."""
        return sum(b.size for b in self.blobs)


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def derive_seed(seed: int, name: str) -> int:
    """A per-object seed: stable across runs and Python versions (unlike hash())."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{name}".encode()).digest()[:8], "big")


# --- building -----------------------------------------------------------------------------------


class _SeededReader:
    """`size` bytes from random.Random(seed), produced in fixed blocks whatever the read sizes."""

    def __init__(self, seed: int, size: int) -> None:
        self._rng = random.Random(seed)
        self._left = size
        self._buffer = b""

    def read(self, n: int = -1) -> bytes:
        want = self._left if n is None or n < 0 else min(n, self._left)
        while len(self._buffer) < want:
            self._buffer += self._rng.randbytes(_RANDOM_BLOCK)
        out, self._buffer = self._buffer[:want], self._buffer[want:]
        self._left -= len(out)
        return out


class _Sink(Protocol):
    def write(self, data: bytes, /) -> int: ...


class _HashingWriter(io.RawIOBase):
    """Counts and hashes what passes through on its way to `sink`."""

    def __init__(self, sink: _Sink) -> None:
        self._sink = sink
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.sha.update(data)
        self.size += len(data)
        self._sink.write(data)
        return len(data)


class ImageBuilder:
    """Builds images for one seed into `workdir`, each distinct layer once."""

    def __init__(self, seed: int, workdir: Path) -> None:
        self.seed = seed
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._layers: dict[LayerSpec, Blob] = {}

    def layer(self, spec: LayerSpec) -> Blob:
        if spec not in self._layers:
            self._layers[spec] = self._write_layer(spec)
        return self._layers[spec]

    def _write_layer(self, spec: LayerSpec) -> Blob:
        fd, tmp = tempfile.mkstemp(dir=self.workdir, prefix=".layer-")
        with os.fdopen(fd, "wb") as raw:
            compressed = _HashingWriter(raw)
            # filename="" and mtime=0 keep the gzip header free of anything that varies
            with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, compresslevel=_GZIP_LEVEL, mtime=0) as gz:
                uncompressed = _HashingWriter(gz)
                with tarfile.open(fileobj=uncompressed, mode="w|", format=tarfile.USTAR_FORMAT) as tar:
                    _add_file(tar, spec.path, _SeededReader(derive_seed(self.seed, spec.name), spec.size), spec.size)
        digest = "sha256:" + compressed.sha.hexdigest()
        path = self.workdir / digest.replace(":", "-")
        os.replace(tmp, path)
        return Blob(digest, compressed.size, LAYER_GZIP, path, diff_id="sha256:" + uncompressed.sha.hexdigest())

    def build(self, spec: ImageSpec) -> BuiltImage:
        layers = tuple(self.layer(layer) for layer in spec.layers)
        config_bytes = _config_json(spec, layers)
        config = self._write_blob(config_bytes, CONFIG_V1)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_V2,
            "config": {"mediaType": CONFIG_V1, "size": config.size, "digest": config.digest},
            "layers": [{"mediaType": b.media_type, "size": b.size, "digest": b.digest} for b in layers],
        }
        # indent=3 is how Docker and Distribution render schema 2 manifests
        manifest_bytes = json.dumps(manifest, indent=3).encode()
        return BuiltImage(manifest_bytes, sha256_digest(manifest_bytes), config, layers)

    def _write_blob(self, data: bytes, media_type: str) -> Blob:
        digest = sha256_digest(data)
        path = self.workdir / digest.replace(":", "-")
        if not path.exists():
            path.write_bytes(data)
        return Blob(digest, len(data), media_type, path)


def _add_file(tar: tarfile.TarFile, path: str, content: _SeededReader, size: int) -> None:
    parts = path.strip("/").split("/")
    for depth in range(1, len(parts)):
        tar.addfile(_tar_info("/".join(parts[:depth]) + "/", tarfile.DIRTYPE, 0o755, 0))
    tar.addfile(_tar_info("/".join(parts), tarfile.REGTYPE, 0o644, size), content)  # type: ignore[arg-type]


def _tar_info(name: str, kind: bytes, mode: int, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.mtime = kind, mode, size, 0
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def _config_json(spec: ImageSpec, layers: Sequence[Blob]) -> bytes:
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": spec.created,
        "config": {
            "User": spec.user,
            "ExposedPorts": {f"{port}/tcp": {} for port in spec.exposed_ports},
            "Env": list(spec.env),
            "Cmd": list(spec.cmd),
            "WorkingDir": spec.working_dir,
            "Labels": dict(spec.labels),
        },
        "rootfs": {"type": "layers", "diff_ids": [b.diff_id for b in layers]},
        "history": [{"created": spec.created, "created_by": layer.created_by} for layer in spec.layers],
    }
    return json.dumps(config, sort_keys=True, separators=(",", ":")).encode()


# --- pushing ------------------------------------------------------------------------------------

BlobAction = Literal["exists", "mounted", "uploaded"]


@dataclass
class PushResult:
    repository: str
    tags: list[str]
    digest: str
    manifest_size: int
    image_size: int
    blobs: dict[str, BlobAction] = field(default_factory=dict)
    bytes_uploaded: int = 0

    def count(self, action: BlobAction) -> int:
        return sum(1 for a in self.blobs.values() if a == action)


class RegistryPusher:
    """Pushes built images into one registry, remembering where each blob already lives."""

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        *,
        verify: bool | str = True,
        timeout: float = 60.0,
    ) -> None:
        self.client = httpx.Client(
            base_url=base_url.rstrip("/"),
            auth=httpx.BasicAuth(username, password),
            verify=verify,
            timeout=timeout,
            # the registry is local: never let proxy variables of the environment reroute it
            trust_env=False,
        )
        self.locations: dict[str, set[str]] = {}
        self.bytes_uploaded = 0

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> RegistryPusher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def push(self, repository: str, image: BuiltImage, tags: Sequence[str]) -> PushResult:
        result = PushResult(repository, list(tags), image.digest, len(image.manifest), image.size)
        before = self.bytes_uploaded
        for blob in image.blobs:
            result.blobs[blob.digest] = self.push_blob(repository, blob)
        result.bytes_uploaded = self.bytes_uploaded - before
        for tag in tags:
            self.put_manifest(repository, tag, image)
        log.info("pushed %s:%s %s (%s)", repository, ",".join(tags), image.digest, _actions(result))
        return result

    def push_blob(self, repository: str, blob: Blob) -> BlobAction:
        if self.blob_exists(repository, blob.digest):
            action: BlobAction = "exists"
        else:
            source = next(iter(sorted(self.locations.get(blob.digest, set()) - {repository})), None)
            location = self._start_upload(repository, blob.digest, source)
            if location is None:
                action = "mounted"
            else:
                self._upload(location, blob)
                action = "uploaded"
        self.locations.setdefault(blob.digest, set()).add(repository)
        return action

    def blob_exists(self, repository: str, digest: str) -> bool:
        response = self.client.head(f"/v2/{repository}/blobs/{digest}")
        if response.status_code == 200:
            return True
        if response.status_code == 404:
            return False
        raise RegistryError(f"HEAD blob {digest} in {repository}", response.status_code)

    def _start_upload(self, repository: str, digest: str, mount_from: str | None) -> str | None:
        """Open an upload session; with `mount_from`, ask for a cross-repository mount first.

        201 means the registry linked the existing blob (nothing to send); 202 means a session
        was opened instead (the mount was refused) and its Location takes the upload.
        """
        params = {"mount": digest, "from": mount_from} if mount_from else None
        response = self.client.post(f"/v2/{repository}/blobs/uploads/", params=params)
        if response.status_code == 201 and mount_from:
            return None
        if response.status_code != 202 or "location" not in response.headers:
            raise RegistryError(f"start upload of {digest} to {repository}", response.status_code)
        return response.headers["location"]

    def _upload(self, location: str, blob: Blob) -> None:
        url = self.client.base_url.join(location).copy_merge_params({"digest": blob.digest})
        response = self.client.put(
            url,
            content=_file_chunks(blob.path),
            # an explicit length keeps httpx from chunking; the body still streams from disk
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(blob.size)},
        )
        if response.status_code != 201:
            raise RegistryError(f"upload of {blob.digest}", response.status_code)
        _check_digest(response, blob.digest, "blob")
        self.bytes_uploaded += blob.size

    def put_manifest(self, repository: str, tag: str, image: BuiltImage) -> str:
        response = self.client.put(
            f"/v2/{repository}/manifests/{tag}",
            content=image.manifest,
            headers={"Content-Type": image.media_type},
        )
        if response.status_code != 201:
            raise RegistryError(f"PUT manifest {repository}:{tag}: {response.text[:300]}", response.status_code)
        _check_digest(response, image.digest, "manifest")
        return image.digest

    # reading back (verification and tests)

    def get_manifest(self, repository: str, reference: str) -> tuple[bytes, str]:
        response = self.client.get(f"/v2/{repository}/manifests/{reference}", headers={"Accept": MANIFEST_V2})
        if response.status_code != 200:
            raise RegistryError(f"GET manifest {repository}:{reference}", response.status_code)
        return response.content, response.headers.get("docker-content-digest", "")

    def blob_sha256(self, repository: str, digest: str) -> tuple[str, int]:
        """Stream a blob back and return (its sha256 digest, its size)."""
        sha, size = hashlib.sha256(), 0
        with self.client.stream("GET", f"/v2/{repository}/blobs/{digest}", follow_redirects=True) as response:
            if response.status_code != 200:
                raise RegistryError(f"GET blob {digest} from {repository}", response.status_code)
            for chunk in response.iter_bytes(_UPLOAD_CHUNK):
                sha.update(chunk)
                size += len(chunk)
        return "sha256:" + sha.hexdigest(), size


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(_UPLOAD_CHUNK):
            yield chunk


def _check_digest(response: httpx.Response, expected: str, what: str) -> None:
    reported = response.headers.get("docker-content-digest")
    if reported != expected:
        raise RegistryError(f"registry reports {what} digest {reported}, we computed {expected}")


def _actions(result: PushResult) -> str:
    return ", ".join(f"{a} {result.count(a)}" for a in ("uploaded", "mounted", "exists") if result.count(a))
