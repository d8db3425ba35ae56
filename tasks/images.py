"""Image transfer tasks: observe both registries, transfer (import, copy or docker), verify.

Every task builds its registry clients from settings inside the task (credentials never
travel as parameters or results: ECR's token comes from `get_authorization_token`, ACR's
from the Entra token exchange), takes names and plain data, and returns plain data.
Reruns are cheap by construction: blobs and manifests already in ACR are seen by HEAD and
skipped, so a rerun after a crash moves only what is missing.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from uuid import UUID

from prefect import task
from prefect.cache_policies import NO_CACHE

from migration.clouds.aws import AwsGateway
from migration.clouds.azure import ArmGateway
from migration.clouds.copier import CopyJob, ImageCopier, verify_image
from migration.clouds.docker_engine import DockerEngine
from migration.clouds.logins import client_for
from migration.clouds.registry import CorruptBlob, Manifest, RegistryClient
from migration.errors import NotFoundError, PermanentError, TransientError
from migration.images import (
    BlobRef,
    ImageItem,
    ImageObservation,
    ImagePlan,
    Selection,
    SourceImage,
    TransferOutcome,
    Verification,
    ecr_registry_host,
)
from migration.platform import acr_id
from migration.progress import Meter
from migration.settings import AwsSettings, AzureSettings, RegistrySettings
from migration.spec import Environment, Spec, load_spec
from tasks.defaults import retry_options

log = logging.getLogger(__name__)


def source_registry(spec: Spec) -> str:
    """The ECR data plane host of the spec's account (or `MMRV_ECR_REGISTRY`)."""
    return ecr_registry_host(spec.aws.account_id, spec.aws.region, AwsSettings().ecr_registry)


def _load(spec_path: str, env: str) -> tuple[Spec, Environment]:
    spec = load_spec(spec_path)
    return spec, spec.environment(env)


def _source(spec: Spec) -> RegistryClient:
    return client_for(source_registry(spec), region=spec.aws.region, pool_size=2 * spec.images.parallelism + 2)


def _target(spec: Spec, environment: Environment, host: str) -> RegistryClient:
    return client_for(host, tenant=environment.azure.tenant_id, pool_size=2 * spec.images.parallelism + 2)


# --- observe --------------------------------------------------------------------------------


def _observe_image(
    source: RegistryClient, target: RegistryClient, image: SourceImage, in_target: bool = True
) -> ImageObservation:
    """The image's manifest(s) at the source; its manifest and tags at the target (blobs come after).

    `in_target` false: the target's catalog does not list the repository, so it holds no
    manifest and no tag there (nothing to ask).
    """
    repo = image.repository
    try:
        manifest = source.get_manifest(repo, image.digest)
        read = [manifest]
        children = manifest.children() if manifest.is_index else []
        blobs: dict[str, BlobRef] = {b.digest: b for b in manifest.blobs()}
        for child in children:
            read.append(source.get_manifest(repo, child))
            for blob in read[-1].blobs():
                blobs.setdefault(blob.digest, blob)
    except (NotFoundError, CorruptBlob) as exc:
        return ImageObservation(repository=repo, digest=image.digest, source_error=str(exc))
    tags = {tag: target.manifest_digest(repo, tag) if in_target else None for tag in image.tags}
    # a tag that resolves to the digest proves the manifest is there; else ask by digest
    present = in_target and (
        image.digest in tags.values() or target.manifest_digest(repo, image.digest) == image.digest
    )
    return ImageObservation(
        repository=repo,
        digest=image.digest,
        media_type=manifest.media_type,
        children=tuple(children),
        blobs=tuple(blobs.values()),
        target_has_manifest=present,
        target_tags=tags,
        manifests={m.digest: (m.media_type, base64.b64encode(m.data).decode()) for m in read},
    )


def observe(
    source: RegistryClient, target: RegistryClient, images: Sequence[SourceImage], parallelism: int
) -> list[ImageObservation]:
    """What the source holds for each image and what the target already has of it.

    Blobs are looked up once each: for every unique blob of the images not yet in the
    target, HEAD in the plan's repositories that use it (its own first) until one has it.
    A blob found anywhere moves no bytes (it is mounted); one found nowhere is copied.
    Repositories the target's catalog does not list are not asked at all.
    """
    listed = target.list_repositories()  # one request instead of many HEADs into repositories not there

    def there(repository: str) -> bool:
        return listed is None or repository in listed

    with ThreadPoolExecutor(parallelism, thread_name_prefix="observe") as pool:
        first = list(pool.map(lambda i: _observe_image(source, target, i, there(i.repository)), images))
        # an image already in the target has every one of its blobs in its repository there
        known = {b.digest: obs.repository for obs in first if obs.target_has_manifest for b in obs.blobs}
        candidates: dict[str, list[str]] = {}
        for obs in first:
            if obs.source_error or obs.target_has_manifest or not there(obs.repository):
                continue
            for blob in obs.blobs:
                repos = candidates.setdefault(blob.digest, [])
                if obs.repository not in repos:
                    repos.append(obs.repository)
        for obs in first:  # blobs of repositories the catalog lacks: only where else they may be
            if not obs.source_error and not obs.target_has_manifest and not there(obs.repository):
                for blob in obs.blobs:
                    candidates.setdefault(blob.digest, [])

        def locate(digest: str) -> tuple[str | None, list[str]]:
            if digest in known:
                return known[digest], []
            checked: list[str] = []
            for repo in candidates[digest]:
                if target.blob_exists(repo, digest):
                    return repo, checked
                checked.append(repo)
            return None, checked

        found = dict(zip(candidates, pool.map(locate, candidates), strict=True))
    out = []
    for obs in first:
        if obs.source_error or obs.target_has_manifest:
            out.append(obs)
            continue
        # a repository the catalog does not list: no blob looked up here, so none is known absent either
        # (the copy still HEADs each one first; a registry may not list a repository holding only blobs)
        located = {b.digest: (found[b.digest][0],) for b in obs.blobs if b.digest in found and found[b.digest][0]}
        absent = tuple(b.digest for b in obs.blobs if b.digest in found and obs.repository in found[b.digest][1])
        out.append(obs.model_copy(update={"target_blob_repos": located, "target_blobs_absent": absent}))
    return out


@task(name="images-observe", task_run_name="images-observe[{env}]", cache_policy=NO_CACHE, **retry_options())
def observe_images(spec_path: str, env: str, target_registry: str, selection: Selection) -> list[ImageObservation]:
    """What the source holds for each selected image and what the target already has of it."""
    spec, environment = _load(spec_path, env)
    with _source(spec) as source, _target(spec, environment, target_registry) as target:
        return observe(source, target, selection.images, spec.images.parallelism)


# --- transfer -------------------------------------------------------------------------------


def _artifact_sink(artifact_id: str | None) -> Callable[[int, int], None] | None:
    """Updates the flow's Prefect progress artifact (percent of the bytes to move)."""
    if not artifact_id:
        return None
    from prefect.artifacts import update_progress_artifact

    def update(done: int, total: int) -> None:
        percent = 100.0 if total <= 0 else max(0.0, min(100.0, 100.0 * done / total))
        try:
            update_progress_artifact(artifact_id=UUID(artifact_id), progress=percent)
        except Exception as exc:  # the UI's progress bar must never fail a transfer
            log.debug("progress artifact update failed: %s", exc)

    return update


def copy_plan(
    source: RegistryClient,
    target: RegistryClient,
    items: list[ImageItem],
    *,
    parallelism: int,
    meter: Meter,
) -> list[TransferOutcome]:
    """The copy strategy over a plan's images (shared by the flow and the benchmark)."""
    known: dict[str, set[str]] = {}
    absent: set[tuple[str, str]] = set()
    for item in items:
        for digest, repos in item.observation.target_blob_repos.items():
            known.setdefault(digest, set()).update(repos)
        absent.update((item.source.repository, d) for d in item.observation.target_blobs_absent)
    jobs = [
        CopyJob(i.source.repository, i.source.digest, tuple(i.source.tags), manifest_absent=True)
        for i in items
        if not i.observation.target_has_manifest
    ] + [
        CopyJob(i.source.repository, i.source.digest, tuple(i.missing_tags))
        for i in items
        if i.observation.target_has_manifest
    ]
    manifests = {
        (i.source.repository, digest): Manifest(base64.b64decode(data), media_type, digest)
        for i in items
        for digest, (media_type, data) in i.observation.manifests.items()
    }
    copier = ImageCopier(
        source,
        target,
        parallelism=parallelism,
        progress=meter.add,
        known_locations={d: sorted(r) for d, r in known.items()},
        known_absent=absent,
        manifests=manifests,
    )
    outcomes = copier.copy(jobs)
    meter.finish()
    return outcomes


@task(name="images-copy", task_run_name="images-copy[{env}]", cache_policy=NO_CACHE, **retry_options())
def copy_images(
    spec_path: str, env: str, plan: ImagePlan, items: list[ImageItem], progress_artifact: str | None = None
) -> list[TransferOutcome]:
    """Registry-to-registry copy of `items`; retried whole on transient trouble (what is done stays done)."""
    spec, environment = _load(spec_path, env)
    total = sum(i.bytes_to_move for i in items)
    meter = Meter(f"images {env}", total, sink=_artifact_sink(progress_artifact))
    with _source(spec) as source, _target(spec, environment, plan.target_registry) as target:
        outcomes = copy_plan(source, target, items, parallelism=spec.images.parallelism, meter=meter)
    transient = [o for o in outcomes if o.error and o.error.startswith("transient:")]
    if transient:
        raise TransientError(
            "registry",
            f"{len(transient)} image(s) hit transient faults past their retries (first: {transient[0].error}); "
            "a retry moves only what is missing",
        )
    return outcomes


@task(
    name="images-import",
    task_run_name="import[{env}] {item.source.repository}",
    cache_policy=NO_CACHE,
    **retry_options(),
)
def import_image(spec_path: str, env: str, plan: ImagePlan, item: ImageItem) -> TransferOutcome:
    """ACR's server-side import of one image by digest, tagging what is missing (mode NoForce).

    A PermanentError (ACR cannot reach or read the source, an index too large ...) is
    returned as the outcome's error, so the flow can fall back to copying that image.
    """
    spec, environment = _load(spec_path, env)
    repo, digest = item.source.repository, item.source.digest
    login = AwsGateway(AwsSettings().model_copy(update={"region": spec.aws.region})).get_registry_login()
    body = {
        "source": {
            "registryUri": plan.source_registry,
            "sourceImage": f"{repo}@{digest}",
            "credentials": {"username": login.username, "password": login.password},
        },
        "targetTags": [f"{repo}:{tag}" for tag in item.missing_tags],
        "untaggedTargetRepositories": [] if item.source.tags else [repo],
        "mode": "NoForce",
    }
    arm = ArmGateway(AzureSettings(), environment.azure.subscription_id)
    try:
        arm.import_image(acr_id(environment), body)
    except TransientError:
        raise
    except PermanentError as exc:
        return TransferOutcome(repository=repo, digest=digest, strategy="import", error=f"import failed: {exc}")
    return TransferOutcome(
        repository=repo,
        digest=digest,
        target_digest=digest,
        tags=item.source.tags,
        bytes_moved=item.bytes_to_move,
        strategy="import",
        note="server-side import (bytes from the plan)",
    )


@task(name="images-docker", task_run_name="images-docker[{env}]", cache_policy=NO_CACHE, **retry_options())
def docker_images(
    spec_path: str, env: str, plan: ImagePlan, items: list[ImageItem], progress_artifact: str | None = None
) -> list[TransferOutcome]:
    """Pull, tag, push through the Docker Engine at DOCKER_HOST, one image at a time."""
    spec, environment = _load(spec_path, env)
    meter = Meter(f"images {env}", sum(i.bytes_to_move for i in items), sink=_artifact_sink(progress_artifact))
    outcomes = []
    engine = DockerEngine(RegistrySettings().docker_host)
    try:
        with _source(spec) as source, _target(spec, environment, plan.target_registry) as target:
            for item in items:
                try:
                    outcome = engine.transfer(
                        source, target, item.source.repository, item.source.digest, item.source.tags
                    )
                except PermanentError as exc:
                    outcome = TransferOutcome(
                        repository=item.source.repository, digest=item.source.digest, strategy="docker", error=str(exc)
                    )
                changed = bool(outcome.target_digest) and outcome.target_digest != item.source.digest
                if changed and not spec.images.allow_digest_change:
                    outcome = outcome.model_copy(
                        update={
                            "error": f"the daemon changed the digest to {outcome.target_digest} (ACR now has the "
                            "image under that digest); the spec does not allow it (images.allow_digest_change)"
                        }
                    )
                meter.add(item.bytes_to_move)
                outcomes.append(outcome)
    finally:
        engine.close()
        meter.finish()
    return outcomes


# --- verify ---------------------------------------------------------------------------------


@task(name="images-verify", task_run_name="images-verify[{env}]", cache_policy=NO_CACHE, **retry_options())
def verify_images(
    spec_path: str, env: str, target_registry: str, targets: list[tuple[str, str, list[str]]]
) -> list[Verification]:
    """`Docker-Content-Digest` at the target, by digest and by every tag, for each image."""
    spec, environment = _load(spec_path, env)
    with (
        _target(spec, environment, target_registry) as target,
        ThreadPoolExecutor(spec.images.parallelism, thread_name_prefix="verify") as pool,
    ):
        return list(pool.map(lambda t: verify_image(target, t[0], t[1], t[2]), targets))
