"""The image transfer ECR -> ACR as data: references, what to carry, the plan, the ledger.

Pure: no SDK, no Prefect, no network. The flow feeds it what the inventory read (task
definition revisions, ECR repositories) and what the registry client observed (manifests,
blobs, tags at both ends); it answers with an `ImagePlan` (one `migration.plan.Action` per
image, so `plan --phase images`, the approval view and apply all render the same object)
and, after the transfer, a `Ledger` of what moved.

Identity is the digest. A tag that points to another digest in ACR than in ECR is a
conflict: the plan blocks that image and nothing overwrites the tag. Bytes to move are
the unique blobs (layers shared between images and repositories counted once) not yet in
the target registry in any repository: those already there are mounted, not copied.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from migration.errors import InputError, PermanentError
from migration.inventory import (
    EcrImage,
    EcrRepository,
    TaskDefinitionHistory,
    human_size,
    short_digest,
)
from migration.plan import Action, ActionKind, FieldChange, Plan
from migration.semver import parse_range
from migration.spec import Images, Spec

# --- media types --------------------------------------------------------------------------

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
INDEX_TYPES = frozenset({DOCKER_MANIFEST_LIST, OCI_INDEX})
IMAGE_TYPES = frozenset({DOCKER_MANIFEST, OCI_MANIFEST})
MANIFEST_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST)

# --- references ---------------------------------------------------------------------------

# The distribution reference grammar (github.com/distribution/reference), anchored.
_HOST = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:]+\])"
HOST_RE = re.compile(rf"{_HOST}(?::[0-9]{{1,5}})?")
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
TAG_RE = re.compile(r"[\w][\w.-]{0,127}")
DIGEST_RE = re.compile(r"sha256:[a-f0-9]{64}")


class BadReference(InputError):
    """A malformed image reference (exit 2): says which part is wrong and what is allowed."""


class ImageRef(BaseModel):
    """`host/repository[:tag][@sha256:...]`, parsed strictly."""

    model_config = ConfigDict(frozen=True)

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def reference(self) -> str:
        """What goes after /manifests/: the digest when known, else the tag."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        out = f"{self.registry}/{self.repository}"
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def parse_ref(text: str) -> ImageRef:
    """Parse `host[:port]/repo[/more]:tag` or `host/repo@sha256:<64 hex>`; the host is required.

    Raises BadReference (an InputError, exit 2) naming the reference and the bad part.
    """

    def bad(why: str) -> BadReference:
        return BadReference(f"image reference {text!r}: {why}")

    rest, at, digest = text.partition("@")
    if at and not DIGEST_RE.fullmatch(digest):
        raise bad(f"{digest!r} is not a digest; write sha256: and 64 lower-case hex digits")
    host, slash, path = rest.partition("/")
    if not slash or not path:
        raise bad("needs a registry host and a repository, like registry.example.com/team/app:1.0")
    if not HOST_RE.fullmatch(host) or ("." not in host and ":" not in host and host != "localhost"):
        raise bad(f"{host!r} is not a registry host (a DNS name or IP, optionally :port)")
    name, colon, tag = path.rpartition(":")
    if not colon or "/" in tag:
        name, tag = path, ""
    if not REPOSITORY_RE.fullmatch(name):
        raise bad(f"{name!r} is not a repository name (lower-case letters, digits, '.', '_', '-', '/' between parts)")
    if colon and not TAG_RE.fullmatch(tag):
        raise bad(f"{tag!r} is not a tag (1-128 letters, digits, '_', '.', '-'; not starting with '.' or '-')")
    return ImageRef(registry=host, repository=name, tag=tag or None, digest=digest or None)


def ecr_registry_host(account_id: str, region: str, override: str | None = None) -> str:
    """The ECR data plane: `MMRV_ECR_REGISTRY` when set, else the account's registry."""
    return override or f"{account_id}.dkr.ecr.{region}.amazonaws.com"


# --- models -------------------------------------------------------------------------------


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SourceImage(Model):
    """One image (by digest) selected for transfer, with its ECR tags and why it was selected."""

    component: str
    repository: str
    digest: str
    tags: tuple[str, ...] = ()
    selected_by: tuple[str, ...] = ()  # "mmrv-backend:3 (active)", "tag filter", "newest", "all"
    size_bytes: int | None = None  # what ECR reports (compressed, without shared-layer accounting)


class Selection(Model):
    images: tuple[SourceImage, ...] = ()
    missing: tuple[str, ...] = ()  # referenced by a task definition but not in ECR
    skipped: tuple[str, ...] = ()  # referenced images that are not the components' ECR images


class BlobRef(Model):
    digest: str
    size: int
    media_type: str = ""


class ImageObservation(Model):
    """What the registries hold for one selected image: its source manifest's content and the target's state."""

    repository: str
    digest: str
    media_type: str | None = None
    children: tuple[str, ...] = ()  # child manifest digests of an index
    blobs: tuple[BlobRef, ...] = ()  # every blob of the image (and of its children), once each
    source_error: str | None = None  # the source manifest could not be read (e.g. deleted meanwhile)
    target_has_manifest: bool = False
    target_tags: dict[str, str | None] = Field(default_factory=dict)  # tag -> digest it has in the target
    target_blob_repos: dict[str, tuple[str, ...]] = Field(default_factory=dict)  # blob -> target repos holding it
    target_blobs_absent: tuple[str, ...] = ()  # blobs seen missing from this repository in the target (by HEAD)
    # the manifests read (the image's and an index's children): digest -> (media type, base64 of the exact bytes),
    # so the transfer does not read them again
    manifests: dict[str, tuple[str, str]] = Field(default_factory=dict, repr=False)


class ImageItem(Model):
    source: SourceImage
    observation: ImageObservation
    kind: ActionKind
    reason: str
    missing_tags: tuple[str, ...] = ()
    conflicts: dict[str, str] = Field(default_factory=dict)  # tag -> the other digest it has in the target
    bytes_to_move: int = 0  # unique blob bytes this image brings first (shared ones counted once, overall)

    @property
    def needs_transfer(self) -> bool:
        return self.kind == "create"


class ImagePlan(Model):
    environment: str
    source_registry: str
    target_registry: str
    items: tuple[ImageItem, ...] = ()
    missing: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    unique_bytes: int = 0  # unique blob bytes of every selected image
    bytes_to_move: int = 0  # of which not in the target yet

    def source_ref(self, item: ImageItem) -> str:
        return f"{self.source_registry}/{item.source.repository}@{item.source.digest}"

    def target_ref(self, item: ImageItem) -> str:
        return f"{self.target_registry}/{item.source.repository}@{item.source.digest}"

    @property
    def to_transfer(self) -> list[ImageItem]:
        return [i for i in self.items if i.needs_transfer]

    @property
    def plan(self) -> Plan:
        actions = []
        for item in self.items:
            actions.append(
                Action(
                    kind=item.kind,
                    resource=self.target_ref(item),
                    resource_type="image",
                    reason=item.reason,
                    changes=tuple(
                        FieldChange(field=f"tag {tag}", observed=other, desired=item.source.digest)
                        for tag, other in item.conflicts.items()
                    ),
                    desired={
                        "source": self.source_ref(item),
                        "tags": list(item.source.tags),
                        "missing_tags": list(item.missing_tags),
                        "bytes_to_move": item.bytes_to_move,
                    },
                )
            )
        for what in self.missing:
            actions.append(
                Action(
                    kind="blocked",
                    resource=f"{self.source_registry}/{what.split(' ', 1)[0]}",
                    resource_type="image",
                    reason=f"not in ECR: {what.split(' ', 1)[1] if ' ' in what else 'referenced'}",
                )
            )
        return Plan(phase="images", environment=self.environment, actions=tuple(actions))

    def summary(self) -> str:
        return (
            f"{self.plan.summary()}; {human_size(self.bytes_to_move)} to move "
            f"of {human_size(self.unique_bytes)} unique ({self.source_registry} -> {self.target_registry})"
        )

    def render_markdown(self, *, include_noop: bool = True) -> str:
        lines = [
            f"# Images ECR -> ACR: {self.environment}",
            "",
            f"From `{self.source_registry}` to `{self.target_registry}`: {len(self.items)} image(s) selected, "
            f"{len(self.to_transfer)} to transfer, {human_size(self.bytes_to_move)} to move "
            f"({human_size(self.unique_bytes)} unique in all).",
            "",
            self.plan.render_markdown(include_noop=include_noop),
        ]
        if self.skipped:
            lines += ["Not carried (not the components' ECR images):", ""]
            lines += [f"- {s}" for s in self.skipped] + [""]
        return "\n".join(lines)


# --- selection ----------------------------------------------------------------------------


def _is_ecr_host(host: str | None, ecr_host: str) -> bool:
    if host is None or host == ecr_host:
        return True
    return bool(re.fullmatch(r"\d{12}\.dkr\.ecr(-fips)?\.[a-z0-9-]+\.amazonaws\.com(\.cn)?", host))


def _tag_filter(policy: Images) -> tuple[list[re.Pattern[str]], object | None]:
    patterns = [re.compile(p) for p in policy.tags.regex]
    semver = parse_range(policy.tags.semver) if policy.tags.semver else None
    return patterns, semver


def _matches_filters(tag: str, patterns: Sequence[re.Pattern[str]], semver: object | None) -> bool:
    if any(p.fullmatch(tag) for p in patterns):
        return True
    return semver is not None and semver.matches(tag)  # type: ignore[attr-defined]


def select_images(
    spec: Spec,
    history: TaskDefinitionHistory | None,
    repositories: Iterable[EcrRepository | None],
    *,
    ecr_host: str,
    policy: Images | None = None,
) -> Selection:
    """Which images (by digest) each component needs in ACR, and why.

    `history` is the back end's task definitions (the active one and the newest of its
    family, as the inventory reads them); `repositories` the components' ECR repositories
    with their images (None for a component without one).
    """
    policy = policy or spec.images
    patterns, semver = _tag_filter(policy)
    by_name = {r.name: r for r in repositories if r is not None}
    chosen: dict[tuple[str, str], tuple[str, EcrImage, list[str]]] = {}
    missing: list[str] = []
    skipped: list[str] = []

    def choose(component: str, repo: EcrRepository, image: EcrImage, why: str) -> None:
        key = (repo.name, image.digest)
        if key not in chosen:
            chosen[key] = (component, image, [])
        if why not in chosen[key][2]:
            chosen[key][2].append(why)

    revisions = []
    if history is not None:
        active = [r for r in history.revisions if r.active]
        others = sorted((r for r in history.revisions if not r.active), key=lambda r: r.revision, reverse=True)
        revisions = active + others[: policy.revisions]
    family = history.active.family if history else ""
    repo_components = {c.image_repository: name for name, c in spec.components.items()}

    for revision in revisions:
        label = f"{family}:{revision.revision}" + (" (active)" if revision.active else "")
        for ref in revision.images:
            owner = repo_components.get(ref.repository)
            if owner is None or not _is_ecr_host(ref.registry, ecr_host):
                skipped.append(f"{ref.raw} (task definition {label})")
                continue
            repo = by_name.get(ref.repository)
            found = repo.find(ref) if repo else None
            if repo is None or found is None:
                entry = f"{ref.short} (task definition {label})"
                if entry not in missing:
                    missing.append(entry)
                continue
            choose(owner, repo, found, label)

    for name, component in spec.components.items():
        repo = by_name.get(component.image_repository)
        if repo is None:
            continue
        if policy.select == "all":
            for image in repo.images:
                choose(name, repo, image, "all")
            continue
        if component.source != "ecs" or history is None:
            # nothing runs it from a task definition (Amplify builds the front end): its newest images
            for image in repo.images[: policy.revisions + 1]:
                choose(name, repo, image, "newest")
        for image in repo.images:
            if any(_matches_filters(t, patterns, semver) for t in image.tags):
                choose(name, repo, image, "tag filter")

    images = tuple(
        SourceImage(
            component=component,
            repository=repository,
            digest=digest,
            tags=tuple(image.tags),
            selected_by=tuple(why),
            size_bytes=image.size_bytes,
        )
        for (repository, digest), (component, image, why) in chosen.items()
    )
    return Selection(images=images, missing=tuple(missing), skipped=tuple(dict.fromkeys(skipped)))


# --- the plan -----------------------------------------------------------------------------


def plan_images(
    environment: str,
    selection: Selection,
    observations: Sequence[ImageObservation],
    *,
    source_registry: str,
    target_registry: str,
) -> ImagePlan:
    """One action per selected image: noop (there, same digest), create (missing), blocked (conflict)."""
    observed = {(o.repository, o.digest): o for o in observations}
    seen_blobs: set[str] = set()
    moving: set[str] = set()
    unique_bytes = 0
    bytes_to_move = 0
    items = []
    for source in selection.images:
        obs = observed.get((source.repository, source.digest)) or ImageObservation(
            repository=source.repository, digest=source.digest, source_error="not observed"
        )
        kind, reason, missing_tags, conflicts = _decide(source, obs)
        own = 0
        for blob in obs.blobs:
            if blob.digest in seen_blobs:
                continue
            seen_blobs.add(blob.digest)
            unique_bytes += blob.size
            in_target = obs.target_has_manifest or bool(obs.target_blob_repos.get(blob.digest))
            if kind == "create" and not in_target and blob.digest not in moving:
                moving.add(blob.digest)
                own += blob.size
        bytes_to_move += own
        if kind == "create":
            reason += f"; {human_size(own)} to move" if own else "; every blob is already in the target"
        items.append(
            ImageItem(
                source=source,
                observation=obs,
                kind=kind,
                reason=reason,
                missing_tags=missing_tags,
                conflicts=conflicts,
                bytes_to_move=own,
            )
        )
    return ImagePlan(
        environment=environment,
        source_registry=source_registry,
        target_registry=target_registry,
        items=tuple(items),
        missing=selection.missing,
        skipped=selection.skipped,
        unique_bytes=unique_bytes,
        bytes_to_move=bytes_to_move,
    )


def _decide(source: SourceImage, obs: ImageObservation) -> tuple[ActionKind, str, tuple[str, ...], dict[str, str]]:
    selected = ", ".join(source.selected_by)
    tags = ", ".join(source.tags) or "untagged"
    if obs.source_error:
        return "blocked", f"cannot read it in ECR: {obs.source_error}", (), {}
    if obs.media_type in (DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED):
        return "blocked", "a Docker schema 1 manifest: no registry keeps its digest; rebuild or convert it", (), {}
    conflicts = {t: d for t in source.tags if (d := obs.target_tags.get(t)) is not None and d != source.digest}
    if conflicts:
        where = ", ".join(f"{t} -> {short_digest(d)}" for t, d in conflicts.items())
        return (
            "blocked",
            f"conflict: in ACR {where}, in ECR {short_digest(source.digest)}; not overwritten",
            (),
            conflicts,
        )
    missing_tags = tuple(t for t in source.tags if obs.target_tags.get(t) is None)
    if obs.target_has_manifest and not missing_tags:
        return "noop", f"in ACR with the same digest ({tags}; {selected})", (), {}
    if obs.target_has_manifest:
        return "create", f"in ACR, tag(s) {', '.join(missing_tags)} missing ({selected})", missing_tags, {}
    return "create", f"missing in ACR ({tags}; {selected})", missing_tags, {}


# --- outcomes and the ledger --------------------------------------------------------------

Strategy = Literal["import", "copy", "docker"]


class TransferOutcome(Model):
    """What a strategy did for one image (pushed tags, bytes it moved, or why it failed)."""

    repository: str
    digest: str
    target_digest: str | None = None  # differs from `digest` only when a daemon rewrote the image
    tags: tuple[str, ...] = ()
    bytes_moved: int = 0
    strategy: str = ""
    blobs_uploaded: int = 0
    blobs_mounted: int = 0
    blobs_present: int = 0
    error: str | None = None
    note: str = ""


class Verification(Model):
    """`Docker-Content-Digest` at the target, by digest and by every tag."""

    repository: str
    digest: str  # what the target must serve (the source digest, or the daemon's when allowed)
    by_digest: bool = False
    tags: dict[str, str | None] = Field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.by_digest and all(d == self.digest for d in self.tags.values())


class LedgerEntry(Model):
    source: str  # host/repo@sha256:...
    target: str  # host/repo@sha256:... (what ACR serves)
    tags: list[str] = Field(default_factory=list)
    bytes_moved: int = 0
    strategy: str = "none"
    status: Literal["transferred", "present", "blocked", "failed"] = "transferred"
    verified: bool = False
    note: str = ""


class Ledger(Model):
    environment: str
    source_registry: str
    target_registry: str
    strategy: str
    images: list[LedgerEntry] = Field(default_factory=list)
    missing: list[str] = Field(default_factory=list)  # task definitions run them, ECR does not have them
    unique_bytes: int = 0

    @property
    def bytes_moved(self) -> int:
        return sum(e.bytes_moved for e in self.images)

    @property
    def failed(self) -> list[LedgerEntry]:
        return [e for e in self.images if e.status == "failed" or (e.status != "blocked" and not e.verified)]

    @property
    def blocked(self) -> list[LedgerEntry]:
        return [e for e in self.images if e.status == "blocked"]

    @property
    def complete(self) -> bool:
        return not self.failed and not self.blocked and not self.missing

    def to_json_dict(self) -> dict[str, object]:
        """The stable `--json` shape: {"images": [{"source", "target", "tags", "bytes_moved", ...}], ...}."""
        return {
            "images": [e.model_dump(mode="json") for e in self.images],
            "environment": self.environment,
            "source_registry": self.source_registry,
            "target_registry": self.target_registry,
            "strategy": self.strategy,
            "bytes_moved": self.bytes_moved,
            "unique_bytes": self.unique_bytes,
            "missing": list(self.missing),
            "complete": self.complete,
        }

    def summary(self) -> str:
        counts = {s: sum(1 for e in self.images if e.status == s) for s in ("transferred", "present", "blocked")}
        return (
            f"images [{self.environment}]: {counts['transferred']} transferred, {counts['present']} already there, "
            f"{counts['blocked']} blocked, {len(self.failed)} failed; {human_size(self.bytes_moved)} moved"
        )

    def render_markdown(self) -> str:
        lines = [f"# Image ledger: {self.environment}", "", self.summary() + ".", ""]
        lines += [
            "| status | source | target | tags | moved | strategy | verified | note |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for e in self.images:
            lines.append(
                f"| {e.status} | `{e.source}` | `{e.target}` | {', '.join(e.tags) or '-'} "
                f"| {human_size(e.bytes_moved)} | {e.strategy} | {'yes' if e.verified else 'no'} "
                f"| {e.note.replace('|', '/') or '-'} |"
            )
        if self.missing:
            lines += ["", "Referenced by task definitions but not in ECR:", ""] + [f"- {m}" for m in self.missing]
        return "\n".join(lines) + "\n"


def build_ledger(
    plan: ImagePlan,
    strategy: str,
    outcomes: Iterable[TransferOutcome],
    verifications: Iterable[Verification],
) -> Ledger:
    """Join the plan, what each strategy did, and what the target serves now."""
    done = {(o.repository, o.digest): o for o in outcomes}
    checked = {(v.repository, v.digest): v for v in verifications}
    entries = []
    for item in plan.items:
        key = (item.source.repository, item.source.digest)
        outcome = done.get(key)
        target_digest = (outcome.target_digest if outcome else None) or item.source.digest
        check = checked.get((item.source.repository, target_digest))
        entry = LedgerEntry(
            source=plan.source_ref(item),
            target=f"{plan.target_registry}/{item.source.repository}@{target_digest}",
            tags=list(item.source.tags),
            verified=bool(check and check.ok),
        )
        if item.kind == "blocked":
            entry = entry.model_copy(update={"status": "blocked", "note": item.reason, "verified": False})
        elif item.kind == "noop":
            entry = entry.model_copy(update={"status": "present", "note": "already in ACR with the same digest"})
        elif outcome is None:
            entry = entry.model_copy(update={"status": "failed", "note": "not transferred"})
        elif outcome.error:
            entry = entry.model_copy(
                update={"status": "failed", "strategy": outcome.strategy, "note": outcome.error, "verified": False}
            )
        else:
            note = outcome.note
            if check is not None and not check.ok:
                note = (note + "; " if note else "") + _verification_problem(check)
            entry = entry.model_copy(
                update={"bytes_moved": outcome.bytes_moved, "strategy": outcome.strategy, "note": note}
            )
        entries.append(entry)
    return Ledger(
        environment=plan.environment,
        source_registry=plan.source_registry,
        target_registry=plan.target_registry,
        strategy=strategy,
        images=entries,
        missing=list(plan.missing),
        unique_bytes=plan.unique_bytes,
    )


def _verification_problem(check: Verification) -> str:
    if not check.by_digest:
        return f"ACR does not serve {short_digest(check.digest)}"
    wrong = [f"{t} -> {short_digest(d) if d else 'missing'}" for t, d in check.tags.items() if d != check.digest]
    return "tags not pointing at the image in ACR: " + ", ".join(wrong)


def verification_targets(
    plan: ImagePlan, outcomes: Mapping[tuple[str, str], TransferOutcome]
) -> list[tuple[str, str, list[str]]]:
    """(repository, digest the target must serve, tags) of every image that is, or should now be, in ACR."""
    out = []
    for item in plan.items:
        if item.kind == "blocked":
            continue
        outcome = outcomes.get((item.source.repository, item.source.digest))
        if item.kind == "create" and (outcome is None or outcome.error):
            continue
        digest = (outcome.target_digest if outcome else None) or item.source.digest
        out.append(
            (item.source.repository, digest, list(outcome.tags if outcome and outcome.tags else item.source.tags))
        )
    return out


class ImagesIncomplete(PermanentError):
    """The transfer ended with images failed, blocked or missing; `ledger` says which (the CLI still writes it)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        problems = [f"{e.source}: {e.status}: {e.note}" for e in ledger.failed + ledger.blocked]
        problems += [f"{m}: not in ECR" for m in ledger.missing]
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        super().__init__("images", f"{ledger.summary()}: {shown}")
