"""The image transfer as data: references, selection, the plan (noop / missing / conflict, bytes), the ledger."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from migration.errors import InputError
from migration.images import (
    BlobRef,
    ImageObservation,
    Selection,
    SourceImage,
    TransferOutcome,
    Verification,
    build_ledger,
    ecr_registry_host,
    parse_ref,
    plan_images,
    select_images,
    verification_targets,
)
from migration.inventory import (
    EcrImage,
    EcrRepository,
    TaskDefinition,
    TaskDefinitionHistory,
    TaskDefinitionRevision,
    parse_image_reference,
)
from migration.spec import Spec, load_spec, validate_spec

SPEC_PATH = Path(__file__).resolve().parents[2] / "deployments" / "mmrv.yaml"
ECR = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
ACR = "mmrvstagingacr.azurecr.io"


def d(n: int) -> str:
    return f"sha256:{n:064x}"


@pytest.fixture()
def spec() -> Spec:
    return load_spec(SPEC_PATH)


def spec_with(**images: object) -> Spec:
    data = yaml.safe_load(SPEC_PATH.read_text())
    data["images"] = copy.deepcopy(images)
    return validate_spec(data)


T0 = datetime(2024, 1, 1, tzinfo=UTC)


def repo(name: str, images: list[tuple[int, list[str]]]) -> EcrRepository:
    """Images newest first (as the inventory lists them): (digest number, tags)."""
    return EcrRepository(
        name=name,
        arn=f"arn:aws:ecr:eu-west-1:123456789012:repository/{name}",
        uri=f"{ECR}/{name}",
        images=[
            EcrImage(digest=d(n), tags=tags, size_bytes=1000 * n, pushed_at=T0 - timedelta(days=i))
            for i, (n, tags) in enumerate(images)
        ],
    )


def history(revisions: list[tuple[int, str, bool]]) -> TaskDefinitionHistory:
    """(revision, image reference, active)."""
    revs = [
        TaskDefinitionRevision(
            arn=f"arn:aws:ecs:eu-west-1:123456789012:task-definition/mmrv-backend:{n}",
            revision=n,
            status="ACTIVE",
            active=active,
            images=[parse_image_reference(image)],
        )
        for n, image, active in revisions
    ]
    active = next(r for r in revs if r.active)
    return TaskDefinitionHistory(
        active=TaskDefinition(arn=active.arn, family="mmrv-backend", revision=active.revision, status="ACTIVE"),
        revisions=sorted(revs, key=lambda r: r.revision, reverse=True),
    )


BACKEND = repo(
    "mmrv-backend",
    [(5, ["1.4.1-broken"]), (4, ["1.4.0", "latest"]), (3, ["1.3.0"]), (2, ["1.2.0"]), (1, ["1.1.0"])],
)
WEB = repo("mmrv-web", [(13, ["2.2.0", "latest"]), (12, ["2.1.0"]), (11, ["2.0.0"])])
HISTORY = history(
    [
        (5, f"{ECR}/mmrv-backend:1.4.1-broken", False),
        (4, f"{ECR}/mmrv-backend:1.4.0", True),
        (3, f"{ECR}/mmrv-backend:1.3.0", False),
        (2, f"{ECR}/mmrv-backend:1.2.0", False),
        (1, f"{ECR}/mmrv-backend:1.1.0", False),
    ]
)


# --- references -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("127.0.0.1:5000/mmrv-backend:1.4.0", "127.0.0.1:5000", "mmrv-backend", "1.4.0", None),
        (f"{ECR}/team/app@{d(7)}", ECR, "team/app", None, d(7)),
        (f"{ACR}/app:v1@{d(7)}", ACR, "app", "v1", d(7)),
        ("localhost/app", "localhost", "app", None, None),
    ],
)
def test_references_parse(text: str, registry: str, repository: str, tag: str | None, digest: str | None) -> None:
    ref = parse_ref(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)
    assert str(ref) == text


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("mmrv-backend:1.4.0", "needs a registry host"),
        ("app/mmrv-backend:1.4.0", "is not a registry host"),
        ("127.0.0.1:5000/MMRV:1.0", "is not a repository name"),
        ("127.0.0.1:5000/app:-bad", "is not a tag"),
        ("127.0.0.1:5000/app@sha256:abc", "is not a digest"),
        ("127.0.0.1:5000/", "needs a registry host and a repository"),
    ],
)
def test_malformed_references_are_input_errors_naming_them(text: str, says: str) -> None:
    with pytest.raises(InputError) as info:
        parse_ref(text)
    assert text in str(info.value) and says in str(info.value)


def test_ecr_host_is_the_accounts_unless_overridden() -> None:
    assert ecr_registry_host("123456789012", "eu-west-1") == ECR
    assert ecr_registry_host("123456789012", "eu-west-1", "127.0.0.1:4000") == "127.0.0.1:4000"


# --- selection --------------------------------------------------------------------------------


def test_referenced_takes_the_active_and_the_last_n_revisions(spec: Spec) -> None:
    selection = select_images(spec, HISTORY, [BACKEND, WEB], ecr_host=ECR)
    backend = {i.tags: i.selected_by for i in selection.images if i.component == "backend"}
    # active (1.4.0) and the 2 newest others (1.4.1-broken and 1.3.0): not 1.2.0, 1.1.0
    assert backend == {
        ("1.4.0", "latest"): ("mmrv-backend:4 (active)",),
        ("1.4.1-broken",): ("mmrv-backend:5",),
        ("1.3.0",): ("mmrv-backend:3",),
    }
    # the front end runs from no task definition: its newest revisions + 1 images
    web = [i.tags for i in selection.images if i.component == "frontend"]
    assert web == [("2.2.0", "latest"), ("2.1.0",), ("2.0.0",)]
    assert selection.missing == () and selection.skipped == ()


def test_tag_filters_add_images_and_all_takes_everything() -> None:
    picked = select_images(spec_with(revisions=0, tags={"semver": "~1.2.0"}), HISTORY, [BACKEND, WEB], ecr_host=ECR)
    backend = sorted(i.tags[0] for i in picked.images if i.component == "backend")
    assert backend == ["1.2.0", "1.4.0"]
    by_regex = select_images(spec_with(revisions=0, tags={"regex": ["1\\.1\\..*"]}), HISTORY, [BACKEND], ecr_host=ECR)
    assert sorted(i.tags[0] for i in by_regex.images) == ["1.1.0", "1.4.0"]
    everything = select_images(spec_with(select="all"), HISTORY, [BACKEND, WEB], ecr_host=ECR)
    assert len(everything.images) == 8


def test_images_referenced_but_not_in_ecr_are_missing_and_foreign_ones_skipped(spec: Spec) -> None:
    h = history(
        [
            (7, f"{ECR}/mmrv-backend:9.9.9", True),
            (6, "public.ecr.aws/datadog/agent:7", False),
            (5, f"{ECR}/mmrv-backend@{d(5)}", False),
        ]
    )
    selection = select_images(spec, h, [BACKEND], ecr_host=ECR)
    assert selection.missing == ("mmrv-backend:9.9.9 (task definition mmrv-backend:7 (active))",)
    assert selection.skipped == ("public.ecr.aws/datadog/agent:7 (task definition mmrv-backend:6)",)
    assert [i.digest for i in selection.images] == [d(5)]


def test_the_sandbox_registry_host_counts_as_ecr(spec: Spec) -> None:
    h = history([(1, "127.0.0.1:4000/mmrv-backend:1.4.0", True)])
    selection = select_images(spec, h, [BACKEND], ecr_host="127.0.0.1:4000")
    assert [i.tags for i in selection.images] == [("1.4.0", "latest")]


# --- the plan ---------------------------------------------------------------------------------


def src(n: int, tags: tuple[str, ...], repo: str = "mmrv-backend") -> SourceImage:
    return SourceImage(component="backend", repository=repo, digest=d(n), tags=tags, selected_by=("test",))


def blobs(*pairs: tuple[int, int]) -> tuple[BlobRef, ...]:
    return tuple(BlobRef(digest=d(100 + n), size=size) for n, size in pairs)


def test_plan_noop_missing_conflict_and_shared_bytes_counted_once() -> None:
    base, runtime = (1, 1000), (2, 500)
    selection = Selection(
        images=(src(1, ("1.0",)), src(2, ("2.0", "latest")), src(3, ("3.0",)), src(4, ("4.0",), "mmrv-web"))
    )
    observations = [
        # there already, same digest, same tags
        ImageObservation(
            repository="mmrv-backend",
            digest=d(1),
            blobs=blobs(base, (10, 10)),
            target_has_manifest=True,
            target_tags={"1.0": d(1)},
        ),
        # missing; shares the base (in the target already) and the runtime with image 4
        ImageObservation(
            repository="mmrv-backend",
            digest=d(2),
            blobs=blobs(base, runtime, (20, 20)),
            target_tags={"2.0": None, "latest": None},
            target_blob_repos={d(101): ("mmrv-backend",)},
        ),
        # a tag that points elsewhere in ACR: a conflict
        ImageObservation(repository="mmrv-backend", digest=d(3), blobs=blobs((30, 30)), target_tags={"3.0": d(99)}),
        ImageObservation(repository="mmrv-web", digest=d(4), blobs=blobs(base, runtime, (40, 40)), target_tags={}),
    ]
    plan = plan_images("staging", selection, observations, source_registry=ECR, target_registry=ACR)
    kinds = [(i.source.digest, i.kind) for i in plan.items]
    assert kinds == [(d(1), "noop"), (d(2), "create"), (d(3), "blocked"), (d(4), "create")]
    assert plan.unique_bytes == 1000 + 10 + 500 + 20 + 30 + 40
    # the base is in ACR; the runtime moves once (with image 2); blocked image 3 moves nothing
    assert [i.bytes_to_move for i in plan.items] == [0, 520, 0, 40]
    assert plan.bytes_to_move == 560
    assert plan.items[2].conflicts == {"3.0": d(99)}
    assert "conflict: in ACR 3.0 -> sha256:000000000000" in plan.items[2].reason

    rendered = plan.plan
    assert rendered.phase == "images" and rendered.counts() == {
        "create": 2,
        "update": 0,
        "delete": 0,
        "noop": 1,
        "blocked": 1,
    }
    assert rendered.actions[1].resource == f"{ACR}/mmrv-backend@{d(2)}"
    assert rendered.actions[1].desired["source"] == f"{ECR}/mmrv-backend@{d(2)}"
    assert rendered.actions[2].changes[0].field == "tag 3.0"
    markdown = plan.render_markdown()
    assert "| ! blocked |" in markdown and "560 B to move" in markdown


def test_a_present_image_with_a_missing_tag_is_a_create_of_that_tag_only() -> None:
    selection = Selection(images=(src(1, ("1.0", "latest")),))
    obs = ImageObservation(
        repository="mmrv-backend", digest=d(1), blobs=blobs((1, 5)), target_has_manifest=True, target_tags={"1.0": d(1)}
    )
    (item,) = plan_images("staging", selection, [obs], source_registry=ECR, target_registry=ACR).items
    assert item.kind == "create" and item.missing_tags == ("latest",) and item.bytes_to_move == 0


def test_unreadable_sources_and_missing_references_block() -> None:
    selection = Selection(images=(src(1, ("1.0",)),), missing=("mmrv-backend:9.9 (task definition mmrv-backend:7)",))
    obs = ImageObservation(repository="mmrv-backend", digest=d(1), source_error="manifest unknown")
    plan = plan_images("staging", selection, [obs], source_registry=ECR, target_registry=ACR)
    assert [a.kind for a in plan.plan.actions] == ["blocked", "blocked"]
    assert plan.plan.actions[1].resource == f"{ECR}/mmrv-backend:9.9"


# --- the ledger -------------------------------------------------------------------------------


def test_ledger_joins_plan_outcomes_and_verification() -> None:
    selection = Selection(images=(src(1, ("1.0",)), src(2, ("2.0",)), src(3, ("3.0",)), src(4, ("4.0",))))
    observations = [
        ImageObservation(repository="mmrv-backend", digest=d(1), target_has_manifest=True, target_tags={"1.0": d(1)}),
        ImageObservation(repository="mmrv-backend", digest=d(2), blobs=blobs((2, 200))),
        ImageObservation(repository="mmrv-backend", digest=d(3), blobs=blobs((3, 300))),
        ImageObservation(repository="mmrv-backend", digest=d(4), target_tags={"4.0": d(98)}),
    ]
    plan = plan_images("staging", selection, observations, source_registry=ECR, target_registry=ACR)
    outcomes = [
        TransferOutcome(
            repository="mmrv-backend", digest=d(2), target_digest=d(2), tags=("2.0",), bytes_moved=200, strategy="copy"
        ),
        TransferOutcome(repository="mmrv-backend", digest=d(3), strategy="copy", error="corrupt blob"),
    ]
    done = {(o.repository, o.digest): o for o in outcomes}
    targets = verification_targets(plan, done)
    assert targets == [("mmrv-backend", d(1), ["1.0"]), ("mmrv-backend", d(2), ["2.0"])]
    checks = [
        Verification(repository="mmrv-backend", digest=d(1), by_digest=True, tags={"1.0": d(1)}),
        Verification(repository="mmrv-backend", digest=d(2), by_digest=True, tags={"2.0": d(2)}),
    ]
    ledger = build_ledger(plan, "copy", outcomes, checks)
    assert [(e.status, e.verified) for e in ledger.images] == [
        ("present", True),
        ("transferred", True),
        ("failed", False),
        ("blocked", False),
    ]
    assert ledger.bytes_moved == 200 and not ledger.complete
    payload = ledger.to_json_dict()
    assert payload["images"][1] == {
        "source": f"{ECR}/mmrv-backend@{d(2)}",
        "target": f"{ACR}/mmrv-backend@{d(2)}",
        "tags": ["2.0"],
        "bytes_moved": 200,
        "strategy": "copy",
        "status": "transferred",
        "verified": True,
        "note": "",
    }
    assert "| failed |" in ledger.render_markdown()


def test_a_rewritten_digest_is_the_target_in_the_ledger() -> None:
    selection = Selection(images=(src(1, ("1.0",)),))
    obs = ImageObservation(repository="mmrv-backend", digest=d(1), blobs=blobs((1, 10)))
    plan = plan_images("staging", selection, [obs], source_registry=ECR, target_registry=ACR)
    outcome = TransferOutcome(
        repository="mmrv-backend", digest=d(1), target_digest=d(77), tags=("1.0",), strategy="docker"
    )
    (target,) = verification_targets(plan, {("mmrv-backend", d(1)): outcome})
    assert target == ("mmrv-backend", d(77), ["1.0"])
    check = Verification(repository="mmrv-backend", digest=d(77), by_digest=True, tags={"1.0": d(77)})
    (entry,) = build_ledger(plan, "docker", [outcome], [check]).images
    assert entry.target.endswith(d(77)) and entry.verified
