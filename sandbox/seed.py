"""Seed the sandbox with MMRV's AWS estate as it runs today, driven by the migration spec.

`seed_aws(endpoints, spec, seed)` fills moto, the Amplify emulator and the ECR registry with
what the migration will find on AWS:

* ECR: one repository per component (`image_repository`), real images in the registry
  (several releases, `latest`, one release marked broken in its labels), each registered in
  moto with the registry's exact manifest bytes and digest.
* ECS per environment: cluster, task definition family `<service>-<env>` with revisions 1-3
  (revision 3 runs), a Fargate service behind an ALB target group, Application Auto Scaling
  (2-6 tasks, CPU target tracking at 60 %), IAM task and execution roles, a log group, and the
  SQS queue, S3 bucket and DynamoDB table the app keeps using after the move.
* Secrets Manager per environment under `secrets_prefix`: `db` (JSON), `jwt-signing-key`,
  `third-party-api-key`; values drawn from the seeded RNG and never logged.
* Amplify: the Next.js SSR app (WEB_COMPUTE), one branch per environment, env vars, rewrite
  and redirect rules, a custom domain with the spec's front-end names.
* Route 53: the public zone; back-end names as ALIAS A records to the environment's ALB,
  front-end names as CNAMEs (TTL 300) to `<branch>.<appId>.amplifyapp.com`.

Everything is planned first from `random.Random(seed)` (pure, no I/O), then applied. The
same seed gives the same names, values and image digests and, on a fresh sandbox, the same
generated ids (moto's RNG is seeded before the first create; Amplify app ids are derived
from a hash). Applying is get-or-create: seeding the same servers again with the same seed
changes nothing; with another seed it stops with SeedError (the ECR repositories carry the
seed they were filled with). Secret values are created once and never overwritten.

moto differs from AWS here, and the code works around it: `create_service` drops
`deploymentConfiguration` and `healthCheckGracePeriodSeconds` (set again by
`update_service`, which keeps them) and silently replaces an existing service;
`create_load_balancer` makes a second ALB of the same name; `create_target_group` refuses a
duplicate name; no AWS managed IAM policies exist; `put_image` invents a digest unless
given one; `describe_images` reports the config blob's size as `imageSizeInBytes`.

This is the *existing* estate: it carries the owner's tags (Project, Environment), never the
tool's `managed-by: mmrv-migrate`, because the tool must not change what it did not create.
"""

from __future__ import annotations

import json
import logging
import random
import string
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import boto3
import httpx
from botocore.config import Config
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict

from migration.errors import MigrationError
from migration.spec import Environment, Spec
from sandbox.endpoints import SeedEndpoints
from sandbox.oci import BROKEN_LABEL, ImageBuilder, ImageSpec, LayerSpec, RegistryPusher

log = logging.getLogger("sandbox.seed")

SEED_TAG = "mmrv-sandbox/seed"  # on ECR repositories: which seed filled this sandbox
DUMMY_SECRET_KEY = "sandbox"
EXECUTION_POLICY_ACTIONS = [
    "ecr:GetAuthorizationToken",
    "ecr:BatchCheckLayerAvailability",
    "ecr:GetDownloadUrlForLayer",
    "ecr:BatchGetImage",
    "logs:CreateLogStream",
    "logs:PutLogEvents",
]


class SeedError(MigrationError):
    """Seeding cannot go on: the servers disagree with the spec, or hold another seed's estate."""


# --- what was seeded --------------------------------------------------------------------------


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SeededImage(_Frozen):
    repository: str
    tag: str
    digest: str  # the registry's and moto's (checked equal)
    size: int  # compressed bytes: config + layers
    broken: bool


class SeededService(_Frozen):
    environment: str
    cluster: str
    service: str
    task_definition_family: str
    task_definition_arns: list[str]  # revisions 1..3, oldest first; the last one runs
    running_tag: str
    load_balancer_dns: str
    target_group_arn: str
    scalable_target: str  # Application Auto Scaling resource id
    task_role_arn: str
    execution_role_arn: str


class SeededRecord(_Frozen):
    name: str
    type: str
    target: str  # ALIAS target DNS name or CNAME value
    alias: bool


class SeedSummary(_Frozen):
    """What `seed_aws` created or found (names, ids, digests; never a secret value)."""

    seed: int
    account_id: str
    region: str
    duration_seconds: float
    images: list[SeededImage]
    services: list[SeededService]
    amplify_app_id: str
    amplify_default_domain: str
    amplify_branches: dict[str, str]  # environment -> branch
    secrets: list[str]  # names only
    dns_records: list[SeededRecord]
    counts: dict[str, int]

    def digests(self) -> dict[str, dict[str, str]]:
        """repository -> tag -> digest."""
        out: dict[str, dict[str, str]] = {}
        for image in self.images:
            out.setdefault(image.repository, {})[image.tag] = image.digest
        return out


# --- the plan: everything decided from the seed, before any I/O ---------------------------------

# Releases per component, oldest first. The last non-broken one runs and is also `latest`;
# the broken one is newer than what runs: later phases ship it to prove the rollback.
RELEASES: dict[str, tuple[str, ...]] = {
    "backend": ("1.2.0", "1.3.0", "1.4.0", "1.4.1-broken"),
    "frontend": ("2.0.0", "2.1.0", "2.2.0"),
}
RUNTIMES = {
    "backend": ("python-3.12-runtime", "usr/local/lib/python3.12/runtime.bin", ("gunicorn", "mmrv.wsgi:app")),
    "frontend": ("node-20-runtime", "usr/local/lib/node/runtime.bin", ("node", "server.js")),
}
BASE_LAYER = LayerSpec(
    "debian-bookworm-slim", 1_600_000, "usr/lib/x86_64-linux-gnu/base.bin", "ADD rootfs.tar.xz / # debian:bookworm-slim"
)
REVISIONS = 3  # task definition revisions per family; the last one runs


@dataclass(frozen=True)
class Release:
    tag: str
    broken: bool
    running: bool
    image: ImageSpec


@dataclass(frozen=True)
class SecretPlan:
    name: str
    description: str
    value: str = field(repr=False)  # never printed, never logged


@dataclass(frozen=True)
class EnvPlan:
    env: Environment
    index: int
    cidr_prefix: str  # "10.20": the environment's VPC is <prefix>.0.0/16
    secrets: tuple[SecretPlan, ...]

    @property
    def name(self) -> str:
        return self.env.name


@dataclass(frozen=True)
class EstatePlan:
    spec: Spec
    seed: int
    releases: dict[str, tuple[Release, ...]]  # repository -> releases
    envs: tuple[EnvPlan, ...]


def plan_estate(spec: Spec, seed: int) -> EstatePlan:
    """Decide every name, value and image of the estate. Pure: same (spec, seed), same plan."""
    rng = random.Random(seed)
    releases = {
        component.image_repository: _plan_releases(spec, name, component.port, rng)
        for name, component in spec.components.items()
    }
    envs = tuple(
        EnvPlan(env, index, f"10.{20 + index}", _plan_secrets(spec, env, rng))
        for index, env in enumerate(spec.environments)
    )
    return EstatePlan(spec, seed, releases, envs)


def _plan_releases(spec: Spec, component: str, port: int, rng: random.Random) -> tuple[Release, ...]:
    tags = RELEASES[component]
    running = [t for t in tags if not t.endswith("-broken")][-1]
    runtime_name, runtime_path, cmd = RUNTIMES[component]
    runtime = LayerSpec(runtime_name, 1_000_000, runtime_path, f"RUN install {runtime_name}")
    repository = spec.components[component].image_repository  # type: ignore[index]
    out = []
    for number, tag in enumerate(tags):
        version = tag.removesuffix("-broken")
        minor = ".".join(version.split(".")[:2])
        deps = LayerSpec(f"{repository}-deps-{minor}", 400_000, f"app/deps-{minor}.bin", "RUN install dependencies")
        app = LayerSpec(f"{repository}-{tag}", rng.randint(150_000, 350_000), "app/release.bin", "COPY . /app")
        broken = tag.endswith("-broken")
        labels = {
            "org.opencontainers.image.title": repository,
            "org.opencontainers.image.version": version,
            "org.opencontainers.image.revision": f"{rng.getrandbits(160):040x}",
            "org.opencontainers.image.source": f"https://github.com/example/{repository}",
            "org.opencontainers.image.created": f"2024-0{1 + number}-15T09:30:00Z",
            "mmrv.sandbox/component": component,
            **({BROKEN_LABEL: "true"} if broken else {}),
        }
        image = ImageSpec(
            layers=(BASE_LAYER, runtime, deps, app),
            labels=labels,
            exposed_ports=(port,),
            env=(f"PORT={port}", f"APP_VERSION={version}"),
            cmd=cmd,
            created=labels["org.opencontainers.image.created"],
        )
        out.append(Release(tag, broken, tag == running, image))
    return tuple(out)


def _plan_secrets(spec: Spec, env: Environment, rng: random.Random) -> tuple[SecretPlan, ...]:
    prefix = env.aws.secrets_prefix or f"{spec.name}/{env.name}/"
    alphabet = string.ascii_letters + string.digits
    db = {
        "engine": "postgres",
        "host": f"{spec.name}-{env.name}.cluster-{_token(rng, 12, string.ascii_lowercase + string.digits)}"
        f".{spec.aws.region}.rds.amazonaws.com",
        "port": 5432,
        "dbname": spec.name,
        "username": f"{spec.name}_app",
        "password": _token(rng, 32, alphabet),
    }
    return (
        SecretPlan(f"{prefix}db", f"{spec.name} {env.name} PostgreSQL credentials", json.dumps(db)),
        SecretPlan(
            f"{prefix}jwt-signing-key", f"{spec.name} {env.name} JWT signing key", f"{rng.getrandbits(256):064x}"
        ),
        SecretPlan(f"{prefix}third-party-api-key", "payments provider API key", "sk_live_" + _token(rng, 40, alphabet)),
    )


def _token(rng: random.Random, length: int, alphabet: str) -> str:
    return "".join(rng.choice(alphabet) for _ in range(length))


# --- clients ------------------------------------------------------------------------------------


class _Clients:
    """boto3 clients on the sandbox's backends (explicit endpoints, dummy keys)."""

    def __init__(self, endpoints: SeedEndpoints) -> None:
        self._endpoints = endpoints
        self._session = boto3.session.Session(
            aws_access_key_id="sandbox", aws_secret_access_key=DUMMY_SECRET_KEY, region_name=endpoints.region
        )
        self._config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=60)
        self._cache: dict[str, Any] = {}

    def __call__(self, service: str) -> Any:
        if service not in self._cache:
            url = self._endpoints.amplify_endpoint if service == "amplify" else self._endpoints.aws_endpoint
            self._cache[service] = self._session.client(service, endpoint_url=url, config=self._config)
        return self._cache[service]


T = TypeVar("T")


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _get_or_create(find: Callable[[], T | None], create: Callable[[], T]) -> T:
    found = find()
    return found if found is not None else create()


@contextmanager
def _ignore(*codes: str) -> Iterator[None]:
    """Swallow the 'already exists' answers that make a create idempotent."""
    try:
        yield
    except ClientError as exc:
        if _error_code(exc) not in codes:
            raise


def _tags(spec: Spec, env: str | None = None) -> dict[str, str]:
    tags = {"Project": spec.name, "Owner": "platform-team"}
    if env:
        tags["Environment"] = env
    return tags


def _kv(tags: dict[str, str], key: str = "Key", value: str = "Value") -> list[dict[str, str]]:
    return [{key: k, value: v} for k, v in tags.items()]


# --- the entry point ----------------------------------------------------------------------------


def seed_aws(endpoints: SeedEndpoints, spec: Spec, seed: int, workdir: Path | None = None) -> SeedSummary:
    """Create MMRV's AWS estate on the sandbox; idempotent for the same seed. See the module doc."""
    began = time.monotonic()
    _check_endpoints(endpoints, spec)
    plan = plan_estate(spec, seed)
    aws = _Clients(endpoints)
    _check_account(aws, spec)
    if not aws("ecr").describe_repositories()["repositories"]:
        # only on a fresh moto: re-seeding a used one would replay ids it already handed out
        _seed_moto_random(endpoints.aws_endpoint, seed)
    counts: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="mmrv-seed-") as scratch:
        images = _seed_images(aws, endpoints, plan, workdir or Path(scratch), counts)
    services: list[SeededService] = []
    secrets: list[str] = []
    albs: dict[str, Alb] = {}
    for env_plan in plan.envs:
        secret_arns = _seed_secrets(aws, plan, env_plan)
        secrets.extend(s.name for s in env_plan.secrets)
        service, alb = _seed_backend(aws, plan, env_plan, secret_arns)
        services.append(service)
        albs[env_plan.name] = alb
    app, branches = _seed_amplify(aws, plan)
    records = _seed_dns(aws, plan, albs, app)
    counts.update(
        services=len(services),
        task_definitions=sum(len(s.task_definition_arns) for s in services),
        secrets=len(secrets),
        dns_records=len(records),
        amplify_branches=len(branches),
    )
    summary = SeedSummary(
        seed=seed,
        account_id=spec.aws.account_id,
        region=spec.aws.region,
        duration_seconds=round(time.monotonic() - began, 2),
        images=images,
        services=services,
        amplify_app_id=app["appId"],
        amplify_default_domain=app["defaultDomain"],
        amplify_branches=branches,
        secrets=secrets,
        dns_records=records,
        counts=counts,
    )
    log.info("seeded %s (seed %d) in %.1f s: %s", spec.name, seed, summary.duration_seconds, counts)
    return summary


def _check_endpoints(endpoints: SeedEndpoints, spec: Spec) -> None:
    if (endpoints.account_id, endpoints.region) != (spec.aws.account_id, spec.aws.region):
        raise SeedError(
            f"the seed endpoints are for account {endpoints.account_id} in {endpoints.region}, "
            f"the spec says {spec.aws.account_id} in {spec.aws.region}"
        )


def _seed_moto_random(aws_endpoint: str, seed: int) -> None:
    """Seed moto's own RNG so the ids it generates (VPCs, secret suffixes ...) repeat too."""
    try:
        response = httpx.post(f"{aws_endpoint.rstrip('/')}/moto-api/seed", params={"a": seed}, timeout=10)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        log.warning("could not seed moto's RNG (%s): generated ids will differ between sandboxes", exc)


def _check_account(aws: _Clients, spec: Spec) -> None:
    account = aws("sts").get_caller_identity()["Account"]
    if account != spec.aws.account_id:
        raise SeedError(
            f"moto answers as account {account} but the spec says {spec.aws.account_id}: "
            f"start moto with MOTO_ACCOUNT_ID={spec.aws.account_id}"
        )


# --- ECR ----------------------------------------------------------------------------------------


def _seed_images(
    aws: _Clients, endpoints: SeedEndpoints, plan: EstatePlan, workdir: Path, counts: dict[str, int]
) -> list[SeededImage]:
    builder = ImageBuilder(plan.seed, workdir)
    images: list[SeededImage] = []
    with RegistryPusher(
        endpoints.ecr_registry_url, endpoints.ecr_registry_user, endpoints.ecr_registry_password
    ) as pusher:
        for repository, releases in plan.releases.items():
            _ensure_repository(aws, plan, repository)
            for release in releases:
                built = builder.build(release.image)
                tags = [release.tag, "latest"] if release.running else [release.tag]
                result = pusher.push(repository, built, tags)
                for action in ("uploaded", "mounted", "exists"):
                    counts[f"blobs_{action}"] = counts.get(f"blobs_{action}", 0) + result.count(action)
                for tag in tags:
                    _register_in_moto(aws, repository, tag, built.manifest, built.media_type, built.digest)
                    images.append(
                        SeededImage(
                            repository=repository, tag=tag, digest=built.digest, size=built.size, broken=release.broken
                        )
                    )
            _verify_moto_digests(aws, repository, [i for i in images if i.repository == repository])
        counts["bytes_uploaded"] = pusher.bytes_uploaded
    counts.update(ecr_repositories=len(plan.releases), ecr_tags=len(images), ecr_images=len({i.digest for i in images}))
    return images


def _ensure_repository(aws: _Clients, plan: EstatePlan, repository: str) -> None:
    ecr = aws("ecr")
    tags = {**_tags(plan.spec), SEED_TAG: str(plan.seed)}
    try:
        arn = ecr.create_repository(
            repositoryName=repository,
            imageTagMutability="MUTABLE",
            imageScanningConfiguration={"scanOnPush": True},
            encryptionConfiguration={"encryptionType": "AES256"},
            tags=_kv(tags),
        )["repository"]["repositoryArn"]
        log.info("created ECR repository %s", repository)
    except ClientError as exc:
        if _error_code(exc) != "RepositoryAlreadyExistsException":
            raise
        arn = ecr.describe_repositories(repositoryNames=[repository])["repositories"][0]["repositoryArn"]
    found = {t["Key"]: t["Value"] for t in ecr.list_tags_for_resource(resourceArn=arn).get("tags", [])}
    if found.get(SEED_TAG) != str(plan.seed):
        raise SeedError(
            f"ECR repository {repository} was seeded with seed {found.get(SEED_TAG)!r}, not {plan.seed}: "
            "seed a fresh sandbox (mmrv-migrate sandbox down, remove its state, up again)"
        )


def _register_in_moto(aws: _Clients, repository: str, tag: str, manifest: bytes, media_type: str, digest: str) -> None:
    """put_image with the registry's exact manifest and digest (moto would otherwise invent one)."""
    with _ignore("ImageAlreadyExistsException"):
        aws("ecr").put_image(
            repositoryName=repository,
            imageManifest=manifest.decode(),
            imageManifestMediaType=media_type,
            imageTag=tag,
            imageDigest=digest,
        )


def _verify_moto_digests(aws: _Clients, repository: str, images: list[SeededImage]) -> None:
    details = aws("ecr").get_paginator("describe_images").paginate(repositoryName=repository)
    by_tag = {tag: d for page in details for d in page["imageDetails"] for tag in d.get("imageTags", [])}
    for image in images:
        found = by_tag.get(image.tag)
        if found is None or found["imageDigest"] != image.digest or not found.get("imageSizeInBytes"):
            raise SeedError(f"moto's ECR does not hold {repository}:{image.tag} as {image.digest} with a size")


# --- data stores, secrets and IAM ---------------------------------------------------------------


@dataclass(frozen=True)
class _AppResources:
    queue_url: str
    queue_arn: str
    bucket: str
    table: str
    table_arn: str


def _seed_data_stores(aws: _Clients, plan: EstatePlan, env: EnvPlan) -> _AppResources:
    spec, region, account = plan.spec, plan.spec.aws.region, plan.spec.aws.account_id
    queue, bucket = f"{spec.name}-{env.name}-jobs", f"{spec.name}-{env.name}-uploads-{account}"
    table = f"{spec.name}-{env.name}-sessions"
    aws("sqs").create_queue(QueueName=queue, Attributes={"VisibilityTimeout": "60"}, tags=_tags(spec, env.name))
    with _ignore("BucketAlreadyOwnedByYou"):
        aws("s3").create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    with _ignore("ResourceInUseException"):
        aws("dynamodb").create_table(
            TableName=table,
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
            Tags=_kv(_tags(spec, env.name)),
        )
    return _AppResources(
        # the URL the app is configured with on AWS (moto's own answer names moto's host and port)
        queue_url=f"https://sqs.{region}.amazonaws.com/{account}/{queue}",
        queue_arn=f"arn:aws:sqs:{region}:{account}:{queue}",
        bucket=bucket,
        table=table,
        table_arn=f"arn:aws:dynamodb:{region}:{account}:table/{table}",
    )


def _seed_secrets(aws: _Clients, plan: EstatePlan, env: EnvPlan) -> dict[str, str]:
    """Create the environment's secrets; returns name -> full ARN (with moto's random suffix)."""
    sm = aws("secretsmanager")
    arns = {}
    for secret in env.secrets:
        try:
            arns[secret.name] = sm.create_secret(
                Name=secret.name,
                Description=secret.description,
                SecretString=secret.value,
                Tags=_kv(_tags(plan.spec, env.name)),
            )["ARN"]
        except ClientError as exc:
            if _error_code(exc) != "ResourceExistsException":
                raise
            arns[secret.name] = sm.describe_secret(SecretId=secret.name)["ARN"]
    return arns


def _policy(statements: list[dict[str, Any]]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def _ensure_role(aws: _Clients, plan: EstatePlan, env: EnvPlan, name: str, description: str) -> str:
    iam = aws("iam")
    trust = _policy(
        [{"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}]
    )
    try:
        return str(
            iam.create_role(
                RoleName=name,
                AssumeRolePolicyDocument=trust,
                Description=description,
                Tags=_kv(_tags(plan.spec, env.name)),
            )["Role"]["Arn"]
        )
    except ClientError as exc:
        if _error_code(exc) != "EntityAlreadyExists":
            raise
        return str(iam.get_role(RoleName=name)["Role"]["Arn"])


def _seed_roles(
    aws: _Clients, plan: EstatePlan, env: EnvPlan, family: str, data: _AppResources, secret_arns: dict[str, str]
) -> tuple[str, str]:
    """Task role (inline policy: the app's SQS, S3, DynamoDB) and execution role (managed + inline)."""
    iam, account = aws("iam"), plan.spec.aws.account_id
    task_role = _ensure_role(aws, plan, env, f"{family}-task", "MMRV back end: what the app itself may call")
    iam.put_role_policy(
        RoleName=f"{family}-task",
        PolicyName="app-data-access",
        PolicyDocument=_policy(
            [
                {
                    "Effect": "Allow",
                    "Action": ["sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"],
                    "Resource": data.queue_arn,
                },
                {
                    "Effect": "Allow",
                    "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                    "Resource": f"arn:aws:s3:::{data.bucket}/*",
                },
                {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{data.bucket}"},
                {
                    "Effect": "Allow",
                    "Action": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query"],
                    "Resource": data.table_arn,
                },
            ]
        ),
    )
    execution_role = _ensure_role(
        aws, plan, env, f"{family}-execution", "MMRV back end: ECS pulls images, reads secrets"
    )
    # a customer managed copy of AmazonECSTaskExecutionRolePolicy: moto loads no AWS managed policies
    policy_arn = f"arn:aws:iam::{account}:policy/{family}-task-execution"
    with _ignore("EntityAlreadyExists"):
        iam.create_policy(
            PolicyName=f"{family}-task-execution",
            PolicyDocument=_policy([{"Effect": "Allow", "Action": EXECUTION_POLICY_ACTIONS, "Resource": "*"}]),
        )
    iam.attach_role_policy(RoleName=f"{family}-execution", PolicyArn=policy_arn)
    iam.put_role_policy(
        RoleName=f"{family}-execution",
        PolicyName="read-secrets",
        PolicyDocument=_policy(
            [{"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": sorted(secret_arns.values())}]
        ),
    )
    return task_role, execution_role


# --- network and load balancer ------------------------------------------------------------------


@dataclass(frozen=True)
class _Network:
    vpc_id: str
    public_subnets: list[str]
    private_subnets: list[str]
    alb_sg: str
    service_sg: str


@dataclass(frozen=True)
class Alb:
    arn: str
    dns_name: str
    hosted_zone_id: str
    target_group_arn: str


def _name_filter(name: str) -> list[dict[str, Any]]:
    return [{"Name": "tag:Name", "Values": [name]}]


def _ensure_vpc(aws: _Clients, plan: EstatePlan, env: EnvPlan) -> str:
    ec2, name = aws("ec2"), f"{plan.spec.name}-{env.name}"

    def find() -> str | None:
        vpcs = ec2.describe_vpcs(Filters=_name_filter(name))["Vpcs"]
        return vpcs[0]["VpcId"] if vpcs else None

    def create() -> str:
        tags = [{"ResourceType": "vpc", "Tags": _kv({**_tags(plan.spec, env.name), "Name": name})}]
        vpc_id = str(ec2.create_vpc(CidrBlock=f"{env.cidr_prefix}.0.0/16", TagSpecifications=tags)["Vpc"]["VpcId"])
        ec2.modify_vpc_attribute(VpcId=vpc_id, EnableDnsHostnames={"Value": True})
        return vpc_id

    return _get_or_create(find, create)


def _ensure_subnet(aws: _Clients, plan: EstatePlan, env: EnvPlan, vpc_id: str, name: str, cidr: str, zone: str) -> str:
    ec2 = aws("ec2")

    def find() -> str | None:
        subnets = ec2.describe_subnets(Filters=[*_name_filter(name), {"Name": "vpc-id", "Values": [vpc_id]}])
        return subnets["Subnets"][0]["SubnetId"] if subnets["Subnets"] else None

    def create() -> str:
        tags = [{"ResourceType": "subnet", "Tags": _kv({**_tags(plan.spec, env.name), "Name": name})}]
        return str(
            ec2.create_subnet(VpcId=vpc_id, CidrBlock=cidr, AvailabilityZone=zone, TagSpecifications=tags)["Subnet"][
                "SubnetId"
            ]
        )

    return _get_or_create(find, create)


def _ensure_security_group(
    aws: _Clients, plan: EstatePlan, env: EnvPlan, vpc_id: str, name: str, ingress: list[dict[str, Any]]
) -> str:
    ec2 = aws("ec2")
    groups = ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [name]}, {"Name": "vpc-id", "Values": [vpc_id]}]
    )["SecurityGroups"]
    if groups:
        return str(groups[0]["GroupId"])
    tags = [{"ResourceType": "security-group", "Tags": _kv({**_tags(plan.spec, env.name), "Name": name})}]
    group_id = str(
        ec2.create_security_group(GroupName=name, Description=name, VpcId=vpc_id, TagSpecifications=tags)["GroupId"]
    )
    ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=ingress)
    return group_id


def _seed_network(aws: _Clients, plan: EstatePlan, env: EnvPlan, port: int) -> _Network:
    vpc_id = _ensure_vpc(aws, plan, env)
    prefix, region, base = env.cidr_prefix, plan.spec.aws.region, f"{plan.spec.name}-{env.name}"
    public, private = [], []
    for number, zone in enumerate(("a", "b")):
        az = f"{region}{zone}"
        public.append(_ensure_subnet(aws, plan, env, vpc_id, f"{base}-public-{az}", f"{prefix}.{number}.0/24", az))
        private.append(
            _ensure_subnet(aws, plan, env, vpc_id, f"{base}-private-{az}", f"{prefix}.{10 + number}.0/24", az)
        )
    web = [{"IpProtocol": "tcp", "FromPort": p, "ToPort": p, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]} for p in (80, 443)]
    alb_sg = _ensure_security_group(aws, plan, env, vpc_id, f"{base}-alb", web)
    from_alb = [{"IpProtocol": "tcp", "FromPort": port, "ToPort": port, "UserIdGroupPairs": [{"GroupId": alb_sg}]}]
    service_sg = _ensure_security_group(aws, plan, env, vpc_id, f"{base}-backend", from_alb)
    return _Network(vpc_id, public, private, alb_sg, service_sg)


def _seed_alb(aws: _Clients, plan: EstatePlan, env: EnvPlan, network: _Network, family: str) -> Alb:
    elb, spec = aws("elbv2"), plan.spec
    backend = spec.components["backend"]
    name = f"{spec.name}-{env.name}-alb"
    # moto creates a second ALB of the same name (AWS would return the first): look first
    try:
        lb = elb.describe_load_balancers(Names=[name])["LoadBalancers"][0]
    except ClientError as exc:
        if _error_code(exc) != "LoadBalancerNotFound":
            raise
        lb = elb.create_load_balancer(
            Name=name,
            Subnets=network.public_subnets,
            SecurityGroups=[network.alb_sg],
            Scheme="internet-facing",
            Type="application",
            IpAddressType="ipv4",
            Tags=_kv(_tags(spec, env.name)),
        )["LoadBalancers"][0]
    try:
        tg = elb.describe_target_groups(Names=[family])["TargetGroups"][0]
    except ClientError as exc:
        if _error_code(exc) != "TargetGroupNotFound":
            raise
        tg = elb.create_target_group(
            Name=family,
            Protocol="HTTP",
            Port=backend.port,
            VpcId=network.vpc_id,
            TargetType="ip",
            HealthCheckProtocol="HTTP",
            HealthCheckPath=backend.health_check_path,
            HealthCheckIntervalSeconds=15,
            HealthyThresholdCount=2,
            UnhealthyThresholdCount=3,
            Matcher={"HttpCode": "200"},
            Tags=_kv(_tags(spec, env.name)),
        )["TargetGroups"][0]
    _seed_listeners(aws, plan, env, lb["LoadBalancerArn"], tg["TargetGroupArn"])
    return Alb(lb["LoadBalancerArn"], lb["DNSName"], lb["CanonicalHostedZoneId"], tg["TargetGroupArn"])


def _seed_listeners(aws: _Clients, plan: EstatePlan, env: EnvPlan, lb_arn: str, tg_arn: str) -> None:
    """HTTPS 443 (ACM certificate for the zone) forwards to the service; HTTP 80 redirects to it."""
    elb = aws("elbv2")
    ports = {x["Port"] for x in elb.describe_listeners(LoadBalancerArn=lb_arn)["Listeners"]}
    if 443 not in ports:
        zone = env.env.dns.zone
        certificate = aws("acm").request_certificate(
            DomainName=zone,
            SubjectAlternativeNames=[f"*.{zone}"],
            ValidationMethod="DNS",
            Tags=_kv(_tags(plan.spec, env.name)),
        )["CertificateArn"]
        elb.create_listener(
            LoadBalancerArn=lb_arn,
            Protocol="HTTPS",
            Port=443,
            Certificates=[{"CertificateArn": certificate}],
            SslPolicy="ELBSecurityPolicy-TLS13-1-2-2021-06",
            DefaultActions=[{"Type": "forward", "TargetGroupArn": tg_arn}],
        )
    if 80 in ports:
        return
    elb.create_listener(
        LoadBalancerArn=lb_arn,
        Protocol="HTTP",
        Port=80,
        DefaultActions=[
            {"Type": "redirect", "RedirectConfig": {"Protocol": "HTTPS", "Port": "443", "StatusCode": "HTTP_301"}}
        ],
    )


# --- ECS ----------------------------------------------------------------------------------------


def _seed_backend(
    aws: _Clients, plan: EstatePlan, env: EnvPlan, secret_arns: dict[str, str]
) -> tuple[SeededService, Alb]:
    spec = plan.spec
    source = env.env.aws.backend
    assert source is not None  # the spec requires a backend source per environment
    family = f"{source.ecs_service}-{env.name}"
    data = _seed_data_stores(aws, plan, env)
    task_role, execution_role = _seed_roles(aws, plan, env, family, data, secret_arns)
    network = _seed_network(aws, plan, env, spec.components["backend"].port)
    alb = _seed_alb(aws, plan, env, network, family)
    with _ignore("ResourceAlreadyExistsException"):
        aws("logs").create_log_group(logGroupName=f"/ecs/{family}", tags=_tags(spec, env.name))
    aws("ecs").create_cluster(  # idempotent in ECS and moto
        clusterName=source.ecs_cluster,
        settings=[{"name": "containerInsights", "value": "enabled"}],
        tags=_kv(_tags(spec, env.name), "key", "value"),
    )
    repository = spec.components["backend"].image_repository
    tags = [r.tag for r in plan.releases[repository] if not r.broken][-REVISIONS:]
    roles = (task_role, execution_role)
    arns = _seed_task_definitions(aws, plan, env, family, tags, roles, data, secret_arns)
    _seed_service(aws, plan, env, family, arns[-1], network, alb)
    resource_id = _seed_autoscaling(aws, source.ecs_cluster, source.ecs_service, family)
    service = SeededService(
        environment=env.name,
        cluster=source.ecs_cluster,
        service=source.ecs_service,
        task_definition_family=family,
        task_definition_arns=arns,
        running_tag=tags[-1],
        load_balancer_dns=alb.dns_name,
        target_group_arn=alb.target_group_arn,
        scalable_target=resource_id,
        task_role_arn=task_role,
        execution_role_arn=execution_role,
    )
    return service, alb


def _record_name(env: Environment, component: str) -> str | None:
    return next((r.name for r in env.dns.records if r.component == component), None)


def _container(
    plan: EstatePlan, env: EnvPlan, family: str, tag: str, data: _AppResources, secret_arns: dict[str, str]
) -> dict[str, Any]:
    spec, backend = plan.spec, plan.spec.components["backend"]
    region, account = spec.aws.region, spec.aws.account_id
    name = env.env.aws.backend.ecs_service  # type: ignore[union-attr]
    db, jwt, api_key = (secret_arns[s.name] for s in env.secrets)
    api, web = _record_name(env.env, "backend"), _record_name(env.env, "frontend")
    environment = {
        "APP_ENV": env.name,
        "PORT": str(backend.port),
        "AWS_REGION": region,
        "QUEUE_URL": data.queue_url,
        "UPLOADS_BUCKET": data.bucket,
        "SESSIONS_TABLE": data.table,
        "LOG_LEVEL": "info",
        **({"PUBLIC_BASE_URL": f"https://{api}"} if api else {}),
        **({"CORS_ALLOWED_ORIGINS": f"https://{web}"} if web else {}),
    }
    return {
        "name": name,
        "image": f"{account}.dkr.ecr.{region}.amazonaws.com/{backend.image_repository}:{tag}",
        "essential": True,
        "portMappings": [{"containerPort": backend.port, "protocol": "tcp", "name": "http", "appProtocol": "http"}],
        "environment": [{"name": k, "value": v} for k, v in environment.items()],
        "secrets": [
            # JSON-key references (`<arn>:<json-key>::`) as well as whole-secret ones
            {"name": "DB_HOST", "valueFrom": f"{db}:host::"},
            {"name": "DB_USERNAME", "valueFrom": f"{db}:username::"},
            {"name": "DB_PASSWORD", "valueFrom": f"{db}:password::"},
            {"name": "JWT_SIGNING_KEY", "valueFrom": jwt},
            {"name": "THIRD_PARTY_API_KEY", "valueFrom": api_key},
        ],
        "healthCheck": {
            "command": ["CMD-SHELL", f"curl -fsS http://localhost:{backend.port}{backend.health_check_path} || exit 1"],
            "interval": 30,
            "timeout": 5,
            "retries": 3,
            "startPeriod": 20,
        },
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {"awslogs-group": f"/ecs/{family}", "awslogs-region": region, "awslogs-stream-prefix": "ecs"},
        },
        "ulimits": [{"name": "nofile", "softLimit": 65536, "hardLimit": 65536}],
    }


def _seed_task_definitions(
    aws: _Clients,
    plan: EstatePlan,
    env: EnvPlan,
    family: str,
    tags: list[str],
    roles: tuple[str, str],
    data: _AppResources,
    secret_arns: dict[str, str],
) -> list[str]:
    """Revisions 1..n, one per release (the newest runs); registers only what is missing."""
    ecs = aws("ecs")
    pages = ecs.get_paginator("list_task_definitions").paginate(familyPrefix=family, sort="ASC")
    existing = [a for p in pages for a in p["taskDefinitionArns"] if a.rsplit("/", 1)[-1].rsplit(":", 1)[0] == family]
    cpu, memory = ("1024", "2048") if env.name == "production" else ("512", "1024")
    for tag in tags[len(existing) :]:
        arn = ecs.register_task_definition(
            family=family,
            taskRoleArn=roles[0],
            executionRoleArn=roles[1],
            networkMode="awsvpc",
            requiresCompatibilities=["FARGATE"],
            cpu=cpu,
            memory=memory,
            runtimePlatform={"cpuArchitecture": "X86_64", "operatingSystemFamily": "LINUX"},
            containerDefinitions=[_container(plan, env, family, tag, data, secret_arns)],
            tags=_kv(_tags(plan.spec, env.name), "key", "value"),
        )["taskDefinition"]["taskDefinitionArn"]
        existing.append(arn)
    return existing[: len(tags)]


def _seed_service(
    aws: _Clients, plan: EstatePlan, env: EnvPlan, family: str, task_definition: str, network: _Network, alb: Alb
) -> None:
    ecs = aws("ecs")
    source = env.env.aws.backend
    assert source is not None
    found = ecs.describe_services(cluster=source.ecs_cluster, services=[source.ecs_service])["services"]
    # moto silently replaces a service created twice (ECS would refuse): create only when absent
    if not any(s["status"] == "ACTIVE" for s in found):
        ecs.create_service(
            cluster=source.ecs_cluster,
            serviceName=source.ecs_service,
            taskDefinition=task_definition,
            desiredCount=2,
            launchType="FARGATE",
            platformVersion="LATEST",
            loadBalancers=[
                {
                    "targetGroupArn": alb.target_group_arn,
                    "containerName": source.ecs_service,
                    "containerPort": plan.spec.components["backend"].port,
                }
            ],
            networkConfiguration={
                "awsvpcConfiguration": {
                    "subnets": network.private_subnets,
                    "securityGroups": [network.service_sg],
                    "assignPublicIp": "DISABLED",
                }
            },
            propagateTags="SERVICE",
            enableECSManagedTags=True,
            tags=_kv(_tags(plan.spec, env.name), "key", "value"),
        )
    # moto's create_service drops these (update_service keeps them); with desiredCount it also
    # reports the tasks as running, as the live service does
    ecs.update_service(
        cluster=source.ecs_cluster,
        service=source.ecs_service,
        desiredCount=2,
        deploymentConfiguration={
            "deploymentCircuitBreaker": {"enable": True, "rollback": True},
            "maximumPercent": 200,
            "minimumHealthyPercent": 100,
        },
        healthCheckGracePeriodSeconds=60,
    )


def _seed_autoscaling(aws: _Clients, cluster: str, service: str, family: str) -> str:
    scaling = aws("application-autoscaling")
    resource_id = f"service/{cluster}/{service}"
    target = {"ServiceNamespace": "ecs", "ResourceId": resource_id, "ScalableDimension": "ecs:service:DesiredCount"}
    scaling.register_scalable_target(**target, MinCapacity=2, MaxCapacity=6)  # an upsert
    scaling.put_scaling_policy(  # an upsert by name
        **target,
        PolicyName=f"{family}-cpu60",
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": 60.0,
            "PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"},
            "ScaleInCooldown": 300,
            "ScaleOutCooldown": 60,
        },
    )
    return resource_id


# --- Amplify ------------------------------------------------------------------------------------


def _seed_amplify(aws: _Clients, plan: EstatePlan) -> tuple[dict[str, Any], dict[str, str]]:
    """The front end's app (one per spec; every environment is a branch of it)."""
    spec = plan.spec
    sources = [(env, env.env.aws.frontend) for env in plan.envs if env.env.aws.frontend]
    names = {source.amplify_app for _, source in sources if source}
    if len(names) != 1:
        raise SeedError(f"the sandbox seeds one Amplify app for all environments; the spec names {sorted(names)}")
    app = _ensure_app(aws, plan, names.pop())
    branches = {}
    for env, source in sources:
        assert source is not None
        _ensure_branch(aws, plan, env, app["appId"], source.amplify_branch)
        branches[env.name] = source.amplify_branch
    _ensure_domain(aws, plan, app["appId"], branches)
    if app["appArn"].split(":")[4] != spec.aws.account_id:
        raise SeedError(
            f"the Amplify emulator answers as account {app['appArn'].split(':')[4]}, the spec says "
            f"{spec.aws.account_id}: start it with --account-id {spec.aws.account_id}"
        )
    return app, branches


def _production_api(plan: EstatePlan) -> str | None:
    production = [e for e in plan.envs if e.name == "production"]
    return _record_name(production[0].env, "backend") if production else None


def _ensure_app(aws: _Clients, plan: EstatePlan, name: str) -> dict[str, Any]:
    amplify, spec = aws("amplify"), plan.spec
    apps = [a for page in amplify.get_paginator("list_apps").paginate() for a in page["apps"] if a["name"] == name]
    if apps:
        return dict(apps[0])
    api = _production_api(plan)
    environment = {"NEXT_TELEMETRY_DISABLED": "1", "NODE_OPTIONS": "--max-old-space-size=2048"}
    if api:
        environment["NEXT_PUBLIC_API_URL"] = f"https://{api}"
    rules = [{"source": "/old-pricing", "target": "/pricing", "status": "301"}]
    if api:  # a rewrite: the browser stays on the front end's name, the request goes to the API
        rules.insert(0, {"source": "/api/v1/<*>", "target": f"https://{api}/v1/<*>", "status": "200"})
    app = amplify.create_app(
        name=name,
        description=f"{spec.name} web front end (Next.js SSR)",
        repository=f"https://github.com/example/{spec.components['frontend'].image_repository}",
        platform="WEB_COMPUTE",
        environmentVariables=environment,
        customRules=rules,
        enableBranchAutoBuild=True,
        tags=_tags(spec),
    )["app"]
    log.info("created Amplify app %s (%s)", name, app["appId"])
    return dict(app)


def _ensure_branch(aws: _Clients, plan: EstatePlan, env: EnvPlan, app_id: str, branch: str) -> None:
    amplify = aws("amplify")
    try:
        amplify.get_branch(appId=app_id, branchName=branch)
        return
    except amplify.exceptions.NotFoundException:
        pass
    api, web = _record_name(env.env, "backend"), _record_name(env.env, "frontend")
    environment = {"NEXT_PUBLIC_ENV": env.name}
    if api:
        environment["NEXT_PUBLIC_API_URL"] = f"https://{api}"
    if web:
        environment["NEXTAUTH_URL"] = f"https://{web}"
    amplify.create_branch(
        appId=app_id,
        branchName=branch,
        description=f"{env.name} front end",
        stage="PRODUCTION" if env.name == "production" else "BETA",
        framework="Next.js - SSR",
        enableAutoBuild=True,
        environmentVariables=environment,
        tags=_tags(plan.spec, env.name),
    )


def _ensure_domain(aws: _Clients, plan: EstatePlan, app_id: str, branches: dict[str, str]) -> None:
    """One domain association per zone; each front-end record becomes a sub-domain of its branch."""
    amplify = aws("amplify")
    settings: dict[str, list[dict[str, str]]] = {}
    for env in plan.envs:
        zone = env.env.dns.zone
        for record in env.env.dns.records:
            if record.component == "frontend" and env.name in branches:
                prefix = record.name.removesuffix(zone).rstrip(".")
                settings.setdefault(zone, []).append({"prefix": prefix, "branchName": branches[env.name]})
    for zone, subdomains in settings.items():
        try:
            amplify.get_domain_association(appId=app_id, domainName=zone)
        except amplify.exceptions.NotFoundException:
            amplify.create_domain_association(appId=app_id, domainName=zone, subDomainSettings=subdomains)


# --- Route 53 -----------------------------------------------------------------------------------


def _ensure_zone(aws: _Clients, plan: EstatePlan, zone: str) -> str:
    r53 = aws("route53")
    found = r53.list_hosted_zones_by_name(DNSName=zone)["HostedZones"]
    for hosted in found:
        if hosted["Name"].rstrip(".") == zone and not hosted.get("Config", {}).get("PrivateZone"):
            return str(hosted["Id"])
    return str(
        r53.create_hosted_zone(
            Name=zone,
            CallerReference=f"{plan.spec.name}-{zone}-{plan.seed}",
            HostedZoneConfig={"Comment": f"{plan.spec.name} public zone", "PrivateZone": False},
        )["HostedZone"]["Id"]
    )


def _seed_dns(aws: _Clients, plan: EstatePlan, albs: dict[str, Alb], app: dict[str, Any]) -> list[SeededRecord]:
    records: list[SeededRecord] = []
    changes: dict[str, list[dict[str, Any]]] = {}
    for env in plan.envs:
        zone_id = _ensure_zone(aws, plan, env.env.dns.zone)
        branch = env.env.aws.frontend.amplify_branch if env.env.aws.frontend else None
        for record in env.env.dns.records:
            if record.component == "backend":
                alb = albs[env.name]
                alias = {"HostedZoneId": alb.hosted_zone_id, "DNSName": alb.dns_name, "EvaluateTargetHealth": True}
                record_set: dict[str, Any] = {"Name": record.name, "Type": "A", "AliasTarget": alias}
                records.append(SeededRecord(name=record.name, type="A", target=alb.dns_name, alias=True))
            elif branch:
                target = f"{branch.replace('/', '-')}.{app['defaultDomain']}"
                record_set = {"Name": record.name, "Type": "CNAME", "TTL": 300, "ResourceRecords": [{"Value": target}]}
                records.append(SeededRecord(name=record.name, type="CNAME", target=target, alias=False))
            else:
                continue
            changes.setdefault(zone_id, []).append({"Action": "UPSERT", "ResourceRecordSet": record_set})
    for zone_id, batch in changes.items():
        aws("route53").change_resource_record_sets(
            HostedZoneId=zone_id, ChangeBatch={"Comment": "mmrv sandbox seed", "Changes": batch}
        )
    return records
