"""The inventory model, its assembly (what is missing) and its rendering. Pure: no server, no Prefect."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from migration.inventory import (
    AmplifyApp,
    AmplifyBranch,
    AmplifyDomain,
    AmplifySubdomain,
    AutoScaling,
    ContainerSummary,
    Dns,
    DnsRecordSet,
    EcrImage,
    EcrRepository,
    EcsService,
    EnvironmentReadings,
    HealthCheck,
    HostedZone,
    IamPolicy,
    IamRole,
    Inventory,
    LoadBalancerRef,
    MissingItem,
    PortMapping,
    Reading,
    RewriteRule,
    ScalableTarget,
    ScalingPolicy,
    SecretInfo,
    SecretReference,
    TargetGroup,
    TaskDefinition,
    TaskDefinitionHistory,
    TaskDefinitionRevision,
    assemble,
    human_size,
    merge_secrets,
    parse_image_reference,
    render_markdown,
    short_digest,
    table_rows,
)

REGISTRY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
D132 = "sha256:" + "1" * 64
D140 = "sha256:" + "4" * 64
SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:mmrv/staging/db-password-AbC123"
KEY_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:mmrv/staging/api-key-XyZ789"
WHEN = datetime(2026, 5, 4, 12, 30, tzinfo=UTC)


# --- image references -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "registry", "repository", "tag", "digest"),
    [
        (f"{REGISTRY}/mmrv-backend:1.4.0", REGISTRY, "mmrv-backend", "1.4.0", None),
        (f"{REGISTRY}/team/mmrv-backend@{D140}", REGISTRY, "team/mmrv-backend", None, D140),
        (f"{REGISTRY}/mmrv-backend:1.4.0@{D140}", REGISTRY, "mmrv-backend", "1.4.0", D140),
        ("127.0.0.1:41003/mmrv-backend:1.4.0", "127.0.0.1:41003", "mmrv-backend", "1.4.0", None),
        ("localhost/mmrv-backend", "localhost", "mmrv-backend", None, None),
        ("localhost:5000/mmrv-backend", "localhost:5000", "mmrv-backend", None, None),
        ("nginx", None, "nginx", None, None),
        ("library/nginx:1.25", None, "library/nginx", "1.25", None),
    ],
)
def test_parse_image_reference(
    ref: str, registry: str | None, repository: str, tag: str | None, digest: str | None
) -> None:
    image = parse_image_reference(ref)
    assert (image.registry, image.repository, image.tag, image.digest) == (registry, repository, tag, digest)
    assert image.raw == ref


def test_short_forms() -> None:
    assert parse_image_reference(f"{REGISTRY}/mmrv-backend:1.4.0").short == "mmrv-backend:1.4.0"
    assert parse_image_reference(f"{REGISTRY}/mmrv-backend@{D140}").short == "mmrv-backend@sha256:444444444444"
    assert short_digest(D140) == "sha256:444444444444"
    assert human_size(None) == "-"
    assert human_size(512) == "512 B"
    assert human_size(31_457_280) == "30.0 MiB"
    assert human_size(3 * 1024**3) == "3.0 GiB"


def test_secret_reference_strips_json_key_and_arn_suffix() -> None:
    ref = SecretReference(name="API_KEY", value_from=f"{KEY_ARN}:apikey::", source="secretsmanager")
    assert ref.secret_arn == KEY_ARN
    assert ref.secret_name == "mmrv/staging/api-key"
    plain = SecretReference(name="DB_PASSWORD", value_from=SECRET_ARN, source="secretsmanager")
    assert plain.secret_arn == SECRET_ARN
    assert plain.secret_name == "mmrv/staging/db-password"
    ssm = SecretReference(name="FLAG", value_from="/mmrv/staging/flag", source="ssm")
    assert ssm.secret_arn is None
    assert ssm.secret_name == "/mmrv/staging/flag"


# --- a realistic set of readings ---------------------------------------------------------


def _task_definition(revision: int, tag: str) -> TaskDefinition:
    return TaskDefinition(
        arn=f"arn:aws:ecs:eu-west-1:123456789012:task-definition/mmrv-backend-staging:{revision}",
        family="mmrv-backend-staging",
        revision=revision,
        status="ACTIVE",
        cpu="512",
        memory="1024",
        network_mode="awsvpc",
        task_role_arn="arn:aws:iam::123456789012:role/mmrv-staging-task",
        execution_role_arn="arn:aws:iam::123456789012:role/mmrv-staging-execution",
        containers=[
            ContainerSummary(
                name="backend",
                image=parse_image_reference(f"{REGISTRY}/mmrv-backend:{tag}"),
                cpu=512,
                memory=1024,
                ports=[PortMapping(container_port=8080)],
                environment_names=["APP_ENV", "LOG_LEVEL"],
                secrets=[
                    SecretReference(name="DB_PASSWORD", value_from=SECRET_ARN, source="secretsmanager"),
                    SecretReference(name="API_KEY", value_from=f"{KEY_ARN}:apikey::", source="secretsmanager"),
                ],
            )
        ],
    )


def readings(active_tag: str = "1.4.0", missing: list[MissingItem] | None = None) -> EnvironmentReadings:
    active = _task_definition(2, active_tag)
    previous = _task_definition(1, "1.3.2")
    return EnvironmentReadings(
        name="staging",
        ecs_service=Reading(
            value=EcsService(
                cluster="mmrv-staging",
                name="mmrv-backend",
                arn="arn:aws:ecs:eu-west-1:123456789012:service/mmrv-staging/mmrv-backend",
                status="ACTIVE",
                desired_count=2,
                running_count=2,
                launch_type="FARGATE",
                task_definition_arn=active.arn,
                load_balancers=[LoadBalancerRef(target_group_arn="arn:tg", container_name="backend")],
            )
        ),
        task_definitions=Reading(
            value=TaskDefinitionHistory(
                active=active,
                revisions=[
                    TaskDefinitionRevision(
                        arn=active.arn,
                        revision=2,
                        status="ACTIVE",
                        active=True,
                        images=[c.image for c in active.containers],
                    ),
                    TaskDefinitionRevision(
                        arn=previous.arn, revision=1, status="ACTIVE", images=[c.image for c in previous.containers]
                    ),
                ],
            )
        ),
        target_groups=Reading(
            value=[
                TargetGroup(
                    arn="arn:tg",
                    name="mmrv-staging-backend",
                    health_check=HealthCheck(protocol="HTTP", path="/healthz", interval_seconds=15, matcher="200"),
                )
            ]
        ),
        autoscaling=Reading(
            value=AutoScaling(
                targets=[
                    ScalableTarget(
                        resource_id="service/mmrv-staging/mmrv-backend",
                        dimension="ecs:service:DesiredCount",
                        min_capacity=2,
                        max_capacity=6,
                    )
                ],
                policies=[
                    ScalingPolicy(
                        name="cpu60",
                        type="TargetTrackingScaling",
                        metric="ECSServiceAverageCPUUtilization",
                        target_value=60.0,
                    )
                ],
            )
        ),
        iam=Reading(
            value=[
                IamRole(
                    purpose="task",
                    name="mmrv-staging-task",
                    arn="arn:aws:iam::123456789012:role/mmrv-staging-task",
                    policies=[
                        IamPolicy(name="uploads", kind="attached", arn="arn:aws:iam::123456789012:policy/uploads"),
                        IamPolicy(name="sqs-jobs", kind="inline", document={"Version": "2012-10-17"}),
                    ],
                )
            ]
        ),
        amplify_app=Reading(
            value=AmplifyApp(
                app_id="d1abc",
                name="mmrv-web",
                platform="WEB_COMPUTE",
                default_domain="d1abc.amplifyapp.com",
                environment_variable_names=["NEXT_PUBLIC_API_URL"],
                rewrites=[RewriteRule(source="/old", target="/new", status="301")],
                domains=[
                    AmplifyDomain(
                        domain_name="mmrv.example.com",
                        status="AVAILABLE",
                        subdomains=[AmplifySubdomain(prefix="staging", branch="staging")],
                    )
                ],
            )
        ),
        amplify_branch=Reading(
            value=AmplifyBranch(
                name="staging",
                stage="BETA",
                framework="Next.js - SSR",
                environment_variable_names=["NEXT_PUBLIC_ENV"],
                enable_auto_build=True,
            )
        ),
        images=[
            Reading(
                value=EcrRepository(
                    name="mmrv-backend",
                    arn="arn:aws:ecr:eu-west-1:123456789012:repository/mmrv-backend",
                    uri=f"{REGISTRY}/mmrv-backend",
                    component="backend",
                    images=[
                        EcrImage(digest=D140, tags=["1.4.0"], size_bytes=31_457_280, pushed_at=WHEN),
                        EcrImage(digest=D132, tags=["1.3.2", "stable"], size_bytes=30_408_704, pushed_at=WHEN),
                    ],
                )
            ),
            Reading(),  # the front end's repository: not on ECR, not required
        ],
        secrets=Reading(
            value=[
                SecretInfo(name="mmrv/staging/db-password", arn=SECRET_ARN, last_changed_at=WHEN),
                SecretInfo(name="mmrv/staging/unused", arn=SECRET_ARN.replace("db-password", "unused")),
            ]
        ),
        referenced_secrets=Reading(
            value=[
                SecretInfo(name="mmrv/staging/db-password", arn=SECRET_ARN, referenced_by=["backend/DB_PASSWORD"]),
                SecretInfo(name="mmrv/staging/api-key", arn=KEY_ARN, referenced_by=["backend/API_KEY"]),
            ]
        ),
        dns=Reading(
            value=Dns(
                zone=HostedZone(id="Z1", name="mmrv.example.com"),
                records=[
                    DnsRecordSet(
                        name="staging-api.mmrv.example.com",
                        type="CNAME",
                        ttl=60,
                        values=["alb.example.com"],
                        set_identifier="aws",
                        weight=100,
                        component="backend",
                    )
                ],
            ),
            missing=missing or [],
        ),
    )


def inventory(**kwargs: object) -> Inventory:
    return assemble(
        spec_name="mmrv",
        account_id="123456789012",
        region="eu-west-1",
        generated_at=WHEN,
        readings=[readings(**kwargs)],  # type: ignore[arg-type]
    )


DNS_MISSING = MissingItem(
    environment="staging",
    kind="dns-record",
    what="DNS record staging.mmrv.example.com (frontend)",
    where="hosted zone mmrv.example.com (Z1)",
    why="not found",
)


# --- assembly and missing items ------------------------------------------------------------


def test_assemble_places_every_reading() -> None:
    inv = inventory()
    env = inv.environment("staging")
    assert inv.missing == []
    assert env.backend is not None and env.backend.task_definition is not None
    assert env.backend.task_definition.label == "mmrv-backend-staging:2"
    assert [r.revision for r in env.backend.revisions] == [2, 1]
    assert env.backend.target_groups[0].health_check.path == "/healthz"
    assert env.frontend is not None and env.frontend.branch is not None
    assert env.frontend.branch.framework == "Next.js - SSR"
    assert [r.name for r in env.images] == ["mmrv-backend"]
    assert env.autoscaling.targets[0].max_capacity == 6
    assert env.iam[0].name == "mmrv-staging-task"
    assert env.dns.records[0].weight == 100


def test_images_are_marked_with_the_revisions_that_run_them() -> None:
    repo = inventory().environment("staging").images[0]
    by_tag = {tuple(i.tags): i.used_by for i in repo.images}
    assert by_tag == {("1.4.0",): ["mmrv-backend-staging:2 (active)"], ("1.3.2", "stable"): ["mmrv-backend-staging:1"]}


def test_secrets_are_merged_by_arn() -> None:
    secrets = inventory().environment("staging").secrets
    assert [(s.name, s.under_prefix, s.referenced_by) for s in secrets] == [
        ("mmrv/staging/api-key", False, ["backend/API_KEY"]),
        ("mmrv/staging/db-password", True, ["backend/DB_PASSWORD"]),
        ("mmrv/staging/unused", True, []),
    ]
    assert merge_secrets([], []) == []


def test_reported_missing_items_are_collected() -> None:
    inv = inventory(missing=[DNS_MISSING])
    assert inv.missing == [DNS_MISSING]
    assert (
        str(DNS_MISSING)
        == "DNS record staging.mmrv.example.com (frontend) in hosted zone mmrv.example.com (Z1): not found"
    )


def test_an_active_image_tag_absent_from_its_repository_is_missing() -> None:
    inv = inventory(active_tag="1.9.9")
    assert [str(m) for m in inv.missing] == [
        "image mmrv-backend:1.9.9 in ECR repository mmrv-backend: task definition mmrv-backend-staging:2 "
        "(container backend) runs it, but the repository has no such tag or digest"
    ]
    assert inv.missing[0].kind == "ecr-image"


def test_an_absent_service_leaves_the_backend_empty() -> None:
    gone = MissingItem(
        environment="staging",
        kind="ecs-service",
        what="ECS service mmrv-backend",
        where="cluster mmrv-staging",
        why="not found",
    )
    r = readings().model_copy(
        update={"ecs_service": Reading(missing=[gone]), "task_definitions": Reading(), "iam": Reading()}
    )
    inv = assemble(spec_name="mmrv", account_id="123456789012", region="eu-west-1", generated_at=WHEN, readings=[r])
    assert inv.environment("staging").backend is None
    assert [str(m) for m in inv.missing] == ["ECS service mmrv-backend in cluster mmrv-staging: not found"]
    assert "Not found (see Missing)." in render_markdown(inv)


# --- rendering -------------------------------------------------------------------------------


def test_render_markdown_shows_each_section() -> None:
    text = render_markdown(inventory())
    assert text.startswith("# Inventory of mmrv on AWS (account 123456789012, eu-west-1)\n")
    assert "Read 2026-05-04 12:30 UTC. Environments: staging. Missing: nothing." in text
    assert "## Environment: staging" in text
    assert "### Back end: ECS service mmrv-backend (cluster mmrv-staging)" in text
    assert (
        "| backend | mmrv-backend:1.4.0 | 512 | 1024 | 8080/tcp | 2 | "
        "DB_PASSWORD <- mmrv/staging/db-password, API_KEY <- mmrv/staging/api-key |"
    ) in text
    assert "| 2 (active) | ACTIVE | mmrv-backend:1.4.0 | - |" in text
    assert (
        "| mmrv-backend:1.4.0 | sha256:444444444444 | 30.0 MiB | 2026-05-04 12:30 UTC | "
        "mmrv-backend-staging:2 (active) |"
    ) in text
    assert "| mmrv-backend:1.3.2, mmrv-backend:stable | sha256:111111111111 | 29.0 MiB |" in text
    assert "### Front end: Amplify app mmrv-web (d1abc)" in text
    assert "| staging | BETA | Next.js - SSR | NEXT_PUBLIC_ENV | yes |" in text
    assert "| mmrv.example.com | AVAILABLE | staging -> staging |" in text
    assert "| /old | /new | 301 |" in text
    assert "| mmrv/staging/db-password | yes | backend/DB_PASSWORD | 2026-05-04 12:30 UTC |" in text
    assert "| staging-api.mmrv.example.com | CNAME | 60 | aws | 100 | alb.example.com |" in text
    assert "| service/mmrv-staging/mmrv-backend | ecs:service:DesiredCount | 2 | 6 |" in text
    assert "| mmrv-staging-task | task | uploads | sqs-jobs |" in text
    assert text.rstrip().endswith("## Missing\n\nNothing: everything the spec names was found.")


def test_render_markdown_lists_missing_items() -> None:
    text = render_markdown(inventory(missing=[DNS_MISSING]))
    assert "Missing: 1." in text
    assert text.rstrip().endswith(
        "## Missing\n\n- [staging] DNS record staging.mmrv.example.com (frontend) "
        "in hosted zone mmrv.example.com (Z1): not found"
    )


def test_table_cells_escape_pipes() -> None:
    r = readings()
    assert r.amplify_app.value is not None
    app = r.amplify_app.value.model_copy(update={"rewrites": [RewriteRule(source="/a|b", target="/c", status="301")]})
    r = r.model_copy(update={"amplify_app": Reading(value=app)})
    inv = assemble(spec_name="mmrv", account_id="123456789012", region="eu-west-1", generated_at=WHEN, readings=[r])
    assert "| /a\\|b | /c | 301 |" in render_markdown(inv)


def test_table_rows_one_per_resource_and_missing_item() -> None:
    rows = table_rows(inventory(missing=[DNS_MISSING]), "staging")
    kinds = [row["kind"] for row in rows]
    assert kinds == [
        "ecs-service",
        "task-definition",
        "task-definition",
        "target-group",
        "ecr-image",
        "ecr-image",
        "amplify-app",
        "amplify-branch",
        "amplify-domain",
        "secret",
        "secret",
        "secret",
        "dns-zone",
        "dns-record",
        "scalable-target",
        "scaling-policy",
        "iam-role",
        "dns-record",
    ]
    assert rows[-1] == {
        "environment": "staging",
        "kind": "dns-record",
        "name": "DNS record staging.mmrv.example.com (frontend)",
        "detail": "hosted zone mmrv.example.com (Z1): not found",
        "status": "missing",
    }
    assert {row["status"] for row in rows[:-1]} == {"found"}
    assert rows[4]["name"] == "mmrv-backend:1.4.0" and rows[4]["detail"] == "sha256:444444444444, 30.0 MiB"


def test_json_round_trip() -> None:
    inv = inventory(missing=[DNS_MISSING])
    again = Inventory.model_validate_json(inv.model_dump_json())
    assert again == inv
    assert render_markdown(again) == render_markdown(inv)
    readings_again = EnvironmentReadings.model_validate_json(readings().model_dump_json())
    assert readings_again == readings()
