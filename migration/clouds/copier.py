"""The `copy` strategy: images from one registry to another over the distribution API, digests kept.

`ImageCopier.copy(jobs)` copies a set of images (by digest, then their tags) at once:

- bounded parallelism: at most `parallelism` blob transfers in flight across all images
  (every image is read at once; its blobs queue for the transfer pool, the biggest first);
- every unique blob is read from the source at most once per run: the first image that
  needs a blob streams it (GET -> PUT, hashed on the way) into its repository; every other
  repository gets it by cross-repository mount, after the transfer in flight if need be;
  at most one placement of a blob into a repository runs at a time;
- a blob the target already has is not sent again: the first request about it is a mount
  from where it is known to be, or a "mount from this same repository" (201 when it is
  there, an upload session when not), so a rerun after a crash moves only what is missing;
- an upload whose outcome is unknown (a reset, a lost response, an expired token) is
  started over in a new session after a HEAD; a blob whose bytes do not match its digest
  fails that image and is never committed;
- manifests go up last, as the exact bytes read (children of an index first, by digest),
  then by each tag (by digest when untagged), so the target serves the source's digest.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import httpx

from migration.clouds.registry import (
    READ_CHUNK,
    CorruptBlob,
    Manifest,
    RegistryClient,
    sha256_digest,
    verified_stream,
)
from migration.errors import MigrationError, PermanentError, TransientError
from migration.images import BlobRef, TransferOutcome, Verification

log = logging.getLogger(__name__)

Progress = Callable[[int], None]


@dataclass(frozen=True)
class CopyJob:
    source_repository: str
    digest: str
    tags: tuple[str, ...] = ()
    target_repository: str = ""
    manifest_absent: bool = False  # the target was just seen without it (no need to HEAD it again)

    @property
    def target(self) -> str:
        return self.target_repository or self.source_repository


@dataclass
class _Counts:
    uploaded: int = 0
    mounted: int = 0
    present: int = 0
    bytes_moved: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, action: str, moved: int = 0) -> None:
        with self.lock:
            setattr(self, action, getattr(self, action) + 1)
            self.bytes_moved += moved


class ImageCopier:
    """Copies images between two registries. One per transfer; threads are its own."""

    def __init__(
        self,
        source: RegistryClient,
        target: RegistryClient,
        *,
        parallelism: int = 4,
        progress: Progress | None = None,
        known_locations: Mapping[str, Sequence[str]] | None = None,
        known_absent: Iterable[tuple[str, str]] = (),
        manifests: Mapping[tuple[str, str], Manifest] | None = None,
    ) -> None:
        self.source = source
        self.target = target
        self.parallelism = max(1, parallelism)
        self._progress = progress or (lambda n: None)
        self._lock = threading.Lock()
        # blob digest -> target repositories known to hold it
        self._located: dict[str, set[str]] = {d: set(r) for d, r in (known_locations or {}).items()}
        # blob digest -> the transfer in flight (its result: the repository it went into)
        self._inflight: dict[str, Future[str]] = {}
        # (target repository, blob digest) -> its placement in progress (upload or mount)
        self._placing: dict[tuple[str, str], Future[str]] = {}
        # (target repository, blob) just seen missing by HEAD: the first attempt skips that HEAD
        self._absent: set[tuple[str, str]] = set(known_absent)
        self._blob_pool: ThreadPoolExecutor | None = None
        # (source repository, digest) -> a manifest already read and verified (while planning)
        self._manifests: dict[tuple[str, str], Manifest] = {
            key: m for key, m in (manifests or {}).items() if sha256_digest(m.data) == key[1]
        }

    # -- the whole set -----------------------------------------------------------------

    def copy(self, jobs: Sequence[CopyJob]) -> list[TransferOutcome]:
        """Copy every job; a failure fails its image only (see TransferOutcome.error)."""
        if not jobs:
            return []
        # image threads mostly wait (for their blobs, or for a shared one another image moves): many of
        # them keep the blob pool, which bounds the transfers, busy from the start
        image_threads = min(len(jobs), 8 * self.parallelism)
        with (
            ThreadPoolExecutor(self.parallelism, thread_name_prefix="blob") as blobs,
            ThreadPoolExecutor(image_threads, thread_name_prefix="image") as images,
        ):
            self._blob_pool = blobs
            try:
                return list(images.map(self._copy_job, jobs))
            finally:
                self._blob_pool = None

    def copy_one(self, job: CopyJob) -> TransferOutcome:
        """Copy one image; errors propagate (for the CLI's `images copy`)."""
        with ThreadPoolExecutor(self.parallelism, thread_name_prefix="blob") as blobs:
            self._blob_pool = blobs
            try:
                return self._copy_image(job)
            finally:
                self._blob_pool = None

    def _copy_job(self, job: CopyJob) -> TransferOutcome:
        try:
            return self._copy_image(job)
        except TransientError as exc:
            # the retries are spent: the run fails (and is retried), the images done so far stay done
            return TransferOutcome(
                repository=job.source_repository, digest=job.digest, strategy="copy", error=f"transient: {exc}"
            )
        except MigrationError as exc:
            log.warning("copy of %s@%s failed: %s", job.source_repository, job.digest, exc)
            return TransferOutcome(repository=job.source_repository, digest=job.digest, strategy="copy", error=str(exc))

    # -- one image ---------------------------------------------------------------------

    def _copy_image(self, job: CopyJob) -> TransferOutcome:
        counts = _Counts()
        manifest = self._manifest(job.source_repository, job.digest)
        # a tagged image goes up by its tags (the first PUT makes the digest resolvable too)
        self._copy_tree(job, manifest, counts, put_by_digest=not job.tags, check_first=not job.manifest_absent)
        for tag in job.tags:
            self.target.put_manifest(job.target, tag, manifest)
        log.info(
            "copied %s@%s -> %s (%s): %d uploaded, %d mounted, %d present, %d bytes",
            job.source_repository,
            job.digest,
            job.target,
            ",".join(job.tags) or "untagged",
            counts.uploaded,
            counts.mounted,
            counts.present,
            counts.bytes_moved,
        )
        return TransferOutcome(
            repository=job.source_repository,
            digest=job.digest,
            target_digest=manifest.digest,
            tags=job.tags,
            bytes_moved=counts.bytes_moved,
            strategy="copy",
            blobs_uploaded=counts.uploaded,
            blobs_mounted=counts.mounted,
            blobs_present=counts.present,
        )

    def _copy_tree(
        self, job: CopyJob, manifest: Manifest, counts: _Counts, *, put_by_digest: bool = True, check_first: bool = True
    ) -> None:
        """Children (of an index) and blobs first, then the manifest itself by digest."""
        if check_first and self.target.manifest_digest(job.target, manifest.digest) == manifest.digest:
            return  # already complete there (a rerun, or another tag of the same image)
        if manifest.is_index:
            for child in manifest.children():
                self._copy_tree(job, self._manifest(job.source_repository, child), counts)
        else:
            self._copy_blobs(job, manifest.blobs(), counts)
        if put_by_digest:
            self.target.put_manifest(job.target, manifest.digest, manifest)

    def _copy_blobs(self, job: CopyJob, blobs: Sequence[BlobRef], counts: _Counts) -> None:
        """Blob placements go to the blob pool; waiting for a placement in progress (another image
        moving a shared blob) happens here, in the image's thread: a blob worker never waits, so the
        pool can neither idle nor deadlock on work queued behind it."""
        pool = self._blob_pool
        assert pool is not None
        futures: list[Future[None]] = []
        pending: list[tuple[BlobRef, Future[str] | None]] = [
            (blob, None)
            for blob in sorted(dict.fromkeys(blobs), key=lambda b: -b.size)  # the big ones first
        ]
        while pending:
            blob, busy = pending.pop(0)
            if busy is not None:
                wait([busy])
            kind, other = self._claim(job.target, blob.digest)
            if kind == "present":
                counts.add("present")
                continue
            assert isinstance(other, Future)
            if kind == "wait":
                pending.append((blob, other))
            elif kind == "own":
                futures.append(pool.submit(self._placed, job, blob, counts, other, None))
            else:
                with self._lock:
                    source_repo = sorted(self._located.get(blob.digest, set()))[0]
                futures.append(pool.submit(self._placed, job, blob, counts, other, source_repo))
        failures = [e for e in (f.exception() for f in futures) if e is not None]
        if failures:
            # a corrupt blob says more than the transient trouble of its neighbours
            failures.sort(key=lambda e: not isinstance(e, CorruptBlob))
            raise failures[0]

    def _manifest(self, repository: str, digest: str) -> Manifest:
        known = self._manifests.get((repository, digest))
        return known if known is not None else self.source.get_manifest(repository, digest)

    # -- one blob ----------------------------------------------------------------------

    def _claim(self, repo: str, digest: str) -> tuple[str, Future[str] | None]:
        """What to do about a blob for a repository: present, own (transfer it), mount, or wait.

        At most one placement of a blob into a repository runs at a time: Distribution's
        filesystem storage rewrites a repository's link to a blob in place, and a manifest
        PUT that reads it mid-rewrite fails (DIGEST_INVALID). Whoever needs a placement in
        progress waits for it.
        """
        with self._lock:
            located = self._located.get(digest, set())
            if repo in located:
                return "present", None
            placing = self._placing.get((repo, digest))
            if placing is not None:
                return "wait", placing
            if located:
                placing = Future()
                self._placing[(repo, digest)] = placing
                return "mount", placing
            inflight = self._inflight.get(digest)
            if inflight is not None:
                return "wait", inflight
            inflight = Future()
            self._inflight[digest] = inflight
            self._placing[(repo, digest)] = inflight
            return "own", inflight

    def _settle(self, repo: str, digest: str, future: Future[str], error: BaseException | None) -> None:
        with self._lock:
            if error is None:
                self._located.setdefault(digest, set()).add(repo)
            if self._inflight.get(digest) is future:
                del self._inflight[digest]
            if self._placing.get((repo, digest)) is future:
                del self._placing[(repo, digest)]
        if error is None:
            future.set_result(repo)
        else:
            future.set_exception(error)

    def _placed(
        self, job: CopyJob, blob: BlobRef, counts: _Counts, future: Future[str], mount_from: str | None
    ) -> None:
        try:
            action, moved = self._place(job, blob, mount_from)
        except BaseException as exc:
            self._settle(job.target, blob.digest, future, exc)
            raise
        self._settle(job.target, blob.digest, future, None)
        counts.add(action, moved)

    def _take_absent(self, repository: str, digest: str) -> bool:
        """True (once) when planning just saw the blob missing from the repository: its HEAD can be skipped."""
        with self._lock:
            if (repository, digest) in self._absent:
                self._absent.discard((repository, digest))
                return True
            return False

    def _place(self, job: CopyJob, blob: BlobRef, mount_from: str | None) -> tuple[str, int]:
        """Mount, or find it there, or stream it from the source; restarted whole when the outcome is unknown.

        The first attempt spends one request before the upload: a mount from where the blob is
        known to be, or a plain POST when planning just saw it missing, or else a "mount from
        this very repository", which a registry answers 201 when the blob is already there and
        with an upload session when it is not. A restart asks by HEAD first: an attempt that
        sent the whole body and lost the answer is found there (uploaded, its bytes moved).
        """
        target, repo = self.target, job.target
        attempts = max(1, target.options.max_attempts)
        delivered = False  # a previous attempt sent every byte; only its answer was lost
        for attempt in range(1, attempts + 1):
            sent = 0

            def count(n: int) -> None:
                nonlocal sent
                sent += n
                self._progress(n)

            location: str | None = None
            try:
                if attempt > 1:
                    if target.blob_exists(repo, blob.digest):
                        if delivered:
                            self._progress(blob.size)
                            return "uploaded", blob.size
                        return "present", 0
                    location = target.start_upload(repo, blob.digest, mount_from)
                    if location is None:
                        return "mounted", 0
                elif mount_from is not None:
                    location = target.start_upload(repo, blob.digest, mount_from)
                    if location is None:
                        return "mounted", 0
                elif self._take_absent(repo, blob.digest):
                    location = target.start_upload(repo, blob.digest)
                else:
                    location = self._start_unless_there(repo, blob.digest)
                    if location is None:
                        return "present", 0
                assert location is not None
                self._stream(job, blob, location, count)
                return "uploaded", blob.size
            except TransientError as exc:
                delivered = delivered or (sent == blob.size and location is not None)
                if sent:
                    self._progress(-sent)
                if location is not None:
                    target.cancel_upload(repo, location)
                if attempt == attempts:
                    raise
                log.info(
                    "blob %s to %s: %s; starting the upload over (%d/%d)", blob.digest, repo, exc, attempt, attempts
                )
                time.sleep(target.backoff_delay(attempt, exc))
            except PermanentError:
                if sent:
                    self._progress(-sent)
                if location is not None:
                    target.cancel_upload(repo, location)
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _start_unless_there(self, repo: str, digest: str) -> str | None:
        """An upload session for a blob, or None when the repository has it: one POST mounting from itself."""
        try:
            return self.target.start_upload(repo, digest, mount_from=repo)
        except PermanentError as exc:
            if exc.status in (401, 403):
                raise
            # a registry that refuses that kind of mount: ask, then open a plain session
            if self.target.blob_exists(repo, digest):
                return None
            return self.target.start_upload(repo, digest)

    def _stream(self, job: CopyJob, blob: BlobRef, location: str, count: Progress) -> None:
        what = f"blob {job.source_repository}@{blob.digest}"
        with self.source.open_blob(job.source_repository, blob.digest) as response:
            declared = response.headers.get("content-length")
            if declared is not None and blob.size and int(declared) != blob.size:
                raise CorruptBlob(
                    self.source.service,
                    f"{what}: the source serves {declared} bytes, the manifest declares {blob.size}",
                )
            body = verified_stream(
                _iter_source(response, self.source, what),
                blob.digest,
                blob.size,
                service=self.source.service,
                what=what,
                on_bytes=count,
            )
            options = self.target.options
            if blob.size > options.chunk_threshold:
                self.target.upload_chunked(job.target, location, blob.digest, blob.size, body, options.chunk_size)
            else:
                self.target.upload_monolithic(job.target, location, blob.digest, blob.size, body)


def _iter_source(response: httpx.Response, source: RegistryClient, what: str) -> Iterator[bytes]:
    """The source body in READ_CHUNK pieces; a broken source connection is transient (the copy restarts)."""
    encoded = response.headers.get("content-encoding", "identity").lower() not in ("", "identity")
    try:
        # as the network hands it over (no re-chunking copy), unless something encoded the body in transit
        yield from response.iter_bytes(READ_CHUNK) if encoded else response.iter_raw()
    except httpx.HTTPError as exc:
        raise source.transport_error(exc, f"reading {what}") from None


# --- verification -------------------------------------------------------------------------


def verify_image(target: RegistryClient, repository: str, digest: str, tags: Sequence[str]) -> Verification:
    """What the target serves for the digest and each tag (`Docker-Content-Digest` by HEAD)."""
    served = {tag: target.manifest_digest(repository, tag) for tag in tags}
    # a tag serving the digest proves the digest is served; an untagged image is asked by digest
    by_digest = digest in served.values() or target.manifest_digest(repository, digest) == digest
    return Verification(repository=repository, digest=digest, by_digest=by_digest, tags=served)
