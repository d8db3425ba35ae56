"""OCI image generation and push, and the seeded AWS estate, on real servers.

moto (`python -m moto.server`), a Distribution registry (`docker-registry serve`) with an
htpasswd user AWS, and the Amplify emulator run as processes for this module.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import yaml

from migration.spec import Spec, load_spec
from sandbox.endpoints import SeedEndpoints
from sandbox.oci import BROKEN_LABEL, ImageBuilder, ImageSpec, LayerSpec, RegistryPusher
from sandbox.seed import SeedError, SeedSummary, seed_aws
from tests.sandbox.test_amplify import ACCOUNT, REGION, Server, free_port, start_amplify, start_server

pytestmark = pytest.mark.sandbox

SPEC_PATH = Path(__file__).resolve().parents[2] / "deployments" / "mmrv.yaml"
REGISTRY_USER = "AWS"
REGISTRY_PASSWORD = f"{ACCOUNT}-auth-token"
SEED = 11


# --- servers --------------------------------------------------------------------------------------


def start_moto(home: Path) -> Server:
    port = free_port()
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    return start_server(argv, f"http://127.0.0.1:{port}", home / "moto.log", env={"MOTO_ACCOUNT_ID": ACCOUNT})


def start_registry(home: Path) -> Server:
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.skip("docker-registry (Debian package docker-registry) is not installed")
    port = free_port()
    htpasswd = home / "htpasswd"
    line = subprocess.run(
        ["htpasswd", "-niB", "-C", "5", REGISTRY_USER],
        input=REGISTRY_PASSWORD.encode(),
        capture_output=True,
        check=True,
    )
    htpasswd.write_bytes(line.stdout)
    config = {
        "version": "0.1",
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(home / "data")}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": "test-only", "relativeurls": True},
        "auth": {"htpasswd": {"realm": "sandbox-ecr", "path": str(htpasswd)}},
    }
    (home / "config.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    argv = [binary, "serve", str(home / "config.yml")]
    return start_server(argv, f"http://127.0.0.1:{port}", home / "registry.log", "/v2/")


@dataclass
class Sandbox:
    moto: Server
    registry: Server
    amplify: Server

    @property
    def endpoints(self) -> SeedEndpoints:
        return SeedEndpoints(
            aws_endpoint=self.moto.url,
            amplify_endpoint=self.amplify.url,
            ecr_registry_url=self.registry.url,
            ecr_registry_user=REGISTRY_USER,
            ecr_registry_password=REGISTRY_PASSWORD,
            region=REGION,
            account_id=ACCOUNT,
        )

    def client(self, service: str) -> Any:
        url = self.amplify.url if service == "amplify" else self.moto.url
        return boto3.client(
            service, endpoint_url=url, region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x"
        )

    def pusher(self) -> RegistryPusher:
        return RegistryPusher(self.registry.url, REGISTRY_USER, REGISTRY_PASSWORD)

    def stop(self) -> None:
        for server in (self.amplify, self.registry, self.moto):
            server.stop()


def start_sandbox(home: Path) -> Sandbox:
    started: list[Server] = []
    try:
        for name, start in (("moto", start_moto), ("registry", start_registry)):
            (home / name).mkdir()
            started.append(start(home / name))
        started.append(start_amplify(home / "amplify.json", home / "amplify.log"))
    except BaseException:
        for server in started:
            server.stop()
        raise
    return Sandbox(*started)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    running = start_sandbox(tmp_path_factory.mktemp("sandbox"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def spec() -> Spec:
    return load_spec(SPEC_PATH)


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@dataclass
class Seeded:
    summary: SeedSummary
    log: list[str]


@pytest.fixture(scope="module")
def seeded(sandbox: Sandbox, spec: Spec) -> Seeded:
    capture = _Capture()
    loggers = [logging.getLogger(name) for name in ("sandbox", "httpx")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(capture)
        logger.setLevel(logging.DEBUG)
    try:
        summary = seed_aws(sandbox.endpoints, spec, SEED)
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(capture)
            logger.setLevel(level)
    return Seeded(summary, capture.lines)


# --- OCI: deterministic images --------------------------------------------------------------------

BASE = LayerSpec("test-base", 300_000, "usr/lib/base.bin", "ADD base")
RUNTIME = LayerSpec("test-runtime", 200_000, "usr/lib/runtime.bin", "RUN runtime")


def _image(app: str, labels: dict[str, str] | None = None) -> ImageSpec:
    return ImageSpec(
        layers=(BASE, RUNTIME, LayerSpec(app, 50_000, "app/app.bin", "COPY . /app")),
        labels={"org.opencontainers.image.version": app, **(labels or {})},
        exposed_ports=(8080,),
    )


def test_same_seed_same_digests_other_seed_others(tmp_path: Path) -> None:
    one = ImageBuilder(1, tmp_path / "a").build(_image("app-1"))
    again = ImageBuilder(1, tmp_path / "b").build(_image("app-1"))
    other = ImageBuilder(2, tmp_path / "c").build(_image("app-1"))
    assert one.manifest == again.manifest and one.digest == again.digest
    assert [b.path.read_bytes() for b in one.blobs] == [b.path.read_bytes() for b in again.blobs]
    assert other.digest != one.digest
    assert {b.digest for b in other.layers}.isdisjoint(b.digest for b in one.layers)


def test_layers_are_reproducible_gzipped_tars(tmp_path: Path) -> None:
    image = ImageBuilder(5, tmp_path).build(_image("app-5", {BROKEN_LABEL: "true"}))
    config = json.loads(image.config.path.read_bytes())
    assert (config["architecture"], config["os"]) == ("amd64", "linux")
    assert config["config"]["ExposedPorts"] == {"8080/tcp": {}}
    assert config["config"]["Labels"][BROKEN_LABEL] == "true"
    for layer, diff_id in zip(image.layers, config["rootfs"]["diff_ids"], strict=True):
        data = layer.path.read_bytes()
        assert hashlib.sha256(data).hexdigest() == layer.digest.removeprefix("sha256:")
        assert data[3] == 0 and data[4:8] == b"\0\0\0\0"  # gzip: no file name, mtime 0
        tar_bytes = gzip.decompress(data)
        assert "sha256:" + hashlib.sha256(tar_bytes).hexdigest() == diff_id == layer.diff_id
        with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
            assert all(m.mtime == 0 and m.uid == 0 for m in tar.getmembers())
    manifest = json.loads(image.manifest)
    assert manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert manifest["config"]["digest"] == image.config.digest
    assert image.digest == "sha256:" + hashlib.sha256(image.manifest).hexdigest()


def test_push_matches_the_registry_and_mounts_shared_layers(sandbox: Sandbox, tmp_path: Path) -> None:
    builder = ImageBuilder(21, tmp_path)
    first, second = builder.build(_image("app-a")), builder.build(_image("app-b"))
    uploads: list[str] = []

    def count_uploads(request: httpx.Request) -> None:
        if request.method == "PUT" and "/blobs/uploads/" in request.url.path:
            uploads.append(request.url.path)

    with sandbox.pusher() as pusher:
        pusher.client.event_hooks["request"].append(count_uploads)
        pushed = pusher.push("oci-test/one", first, ["1.0", "latest"])
        assert pushed.count("uploaded") == 4 and len(uploads) == 4
        # same repository, shared base and runtime: only the new app layer and config travel
        again = pusher.push("oci-test/one", second, ["1.1"])
        assert (again.count("exists"), again.count("uploaded")) == (2, 2)
        # another repository: the shared layers are mounted across, not uploaded again
        other = pusher.push("oci-test/two", first, ["1.0"])
        assert (other.count("mounted"), other.count("uploaded")) == (4, 0)
        assert len(uploads) == 6

        body, registry_digest = pusher.get_manifest("oci-test/two", "1.0")
        assert body == first.manifest and registry_digest == first.digest
        assert pusher.blob_sha256("oci-test/two", _base_digest(first)) == (_base_digest(first), first.layers[0].size)
        # what a registry would refuse: nothing is served from a repository it was never put in
        assert not pusher.blob_exists("oci-test/three", _base_digest(first))


def _base_digest(image: Any) -> str:
    return str(image.layers[0].digest)


# --- the seeded estate ---------------------------------------------------------------------------


def test_seed_matches_the_spec_ecs(sandbox: Sandbox, seeded: Seeded, spec: Spec) -> None:
    ecs, elb = sandbox.client("ecs"), sandbox.client("elbv2")
    for env in spec.environments:
        source = env.aws.backend
        assert source is not None
        service = ecs.describe_services(cluster=source.ecs_cluster, services=[source.ecs_service])["services"][0]
        assert (service["status"], service["launchType"], service["desiredCount"]) == ("ACTIVE", "FARGATE", 2)
        assert service["deploymentConfiguration"]["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
        assert service["taskDefinition"].endswith(f"task-definition/mmrv-backend-{env.name}:3")
        target_group = elb.describe_target_groups(TargetGroupArns=[service["loadBalancers"][0]["targetGroupArn"]])
        assert target_group["TargetGroups"][0]["HealthCheckPath"] == "/healthz"
        assert service["loadBalancers"][0]["containerPort"] == 8080


def test_task_definition_revisions(sandbox: Sandbox, seeded: Seeded, spec: Spec) -> None:
    ecs, secrets = sandbox.client("ecs"), sandbox.client("secretsmanager")
    for env in spec.environments:
        family = f"mmrv-backend-{env.name}"
        arns = ecs.list_task_definitions(familyPrefix=family, sort="ASC")["taskDefinitionArns"]
        assert [a.rsplit(":", 1)[1] for a in arns] == ["1", "2", "3"]
        images = [
            ecs.describe_task_definition(taskDefinition=a)["taskDefinition"]["containerDefinitions"][0]["image"]
            for a in arns
        ]
        assert [i.rsplit(":", 1)[1] for i in images] == ["1.2.0", "1.3.0", "1.4.0"]
        assert images[0].startswith(f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/mmrv-backend:")
        task = ecs.describe_task_definition(taskDefinition=arns[-1])["taskDefinition"]
        assert (task["networkMode"], task["requiresCompatibilities"]) == ("awsvpc", ["FARGATE"])
        assert task["cpu"] in ("512", "1024") and task["memory"] in ("1024", "2048")
        assert task["taskRoleArn"].endswith(f"role/{family}-task")
        container = task["containerDefinitions"][0]
        assert container["healthCheck"]["command"][0] == "CMD-SHELL"
        assert container["logConfiguration"]["logDriver"] == "awslogs"
        env_vars = {e["name"]: e["value"] for e in container["environment"]}
        assert env_vars["QUEUE_URL"].endswith(f"/{ACCOUNT}/mmrv-{env.name}-jobs")
        db_arn = secrets.describe_secret(SecretId=f"{env.aws.secrets_prefix}db")["ARN"]
        by_name = {s["name"]: s["valueFrom"] for s in container["secrets"]}
        assert by_name["DB_PASSWORD"] == f"{db_arn}:password::"  # a JSON-key reference
        assert by_name["JWT_SIGNING_KEY"].startswith(f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:")


def test_ecr_digests_in_moto_equal_the_registry(sandbox: Sandbox, seeded: Seeded) -> None:
    ecr = sandbox.client("ecr")
    digests = seeded.summary.digests()
    assert set(digests) == {"mmrv-backend", "mmrv-web"}
    assert set(digests["mmrv-backend"]) == {"1.2.0", "1.3.0", "1.4.0", "1.4.1-broken", "latest"}
    assert digests["mmrv-backend"]["latest"] == digests["mmrv-backend"]["1.4.0"]
    with sandbox.pusher() as pusher:
        for repository, tags in digests.items():
            details = ecr.describe_images(repositoryName=repository)["imageDetails"]
            in_moto = {tag: d for d in details for tag in d.get("imageTags", [])}
            for tag, digest in tags.items():
                assert in_moto[tag]["imageDigest"] == digest and in_moto[tag]["imageSizeInBytes"] > 0
                body, registry_digest = pusher.get_manifest(repository, tag)
                assert registry_digest == digest == "sha256:" + hashlib.sha256(body).hexdigest()
        manifest = json.loads(pusher.get_manifest("mmrv-backend", "1.4.1-broken")[0])
        config_digest = manifest["config"]["digest"]
        config = json.loads(pusher.client.get(f"/v2/mmrv-backend/blobs/{config_digest}").content)
        assert config["config"]["Labels"][BROKEN_LABEL] == "true"
        # the Debian base layer is one blob in both repositories
        web = json.loads(pusher.get_manifest("mmrv-web", "latest")[0])
        assert manifest["layers"][0]["digest"] == web["layers"][0]["digest"]
    sizes = [i.size for i in seeded.summary.images]
    assert all(2_500_000 < s < 5_000_000 for s in sizes)  # a few MB each


def test_amplify_app_and_branches(sandbox: Sandbox, seeded: Seeded) -> None:
    amplify = sandbox.client("amplify")
    apps = [a for a in amplify.list_apps()["apps"] if a["name"] == "mmrv-web"]
    assert len(apps) == 1
    app = apps[0]
    assert app["appId"] == seeded.summary.amplify_app_id
    assert app["platform"] == "WEB_COMPUTE" and "NEXT_PUBLIC_API_URL" in app["environmentVariables"]
    assert app["productionBranch"]["branchName"] == "main"
    assert any(rule["status"] == "200" for rule in app["customRules"])  # the rewrite
    for name, stage in (("staging", "BETA"), ("main", "PRODUCTION")):
        branch = amplify.get_branch(appId=app["appId"], branchName=name)["branch"]
        assert (branch["framework"], branch["stage"]) == ("Next.js - SSR", stage)
        assert branch["environmentVariables"]["NEXT_PUBLIC_API_URL"].startswith("https://")
    domain = amplify.get_domain_association(appId=app["appId"], domainName="mmrv.example.com")["domainAssociation"]
    assert {(s["subDomainSetting"]["prefix"], s["subDomainSetting"]["branchName"]) for s in domain["subDomains"]} == {
        ("staging", "staging"),
        ("www", "main"),
    }


def test_route53_records(sandbox: Sandbox, seeded: Seeded, spec: Spec) -> None:
    r53, elb = sandbox.client("route53"), sandbox.client("elbv2")
    zone = r53.list_hosted_zones_by_name(DNSName="mmrv.example.com")["HostedZones"][0]
    records = {
        r["Name"].rstrip("."): r for r in r53.list_resource_record_sets(HostedZoneId=zone["Id"])["ResourceRecordSets"]
    }
    app_domain = f"{seeded.summary.amplify_app_id}.amplifyapp.com"
    for env in spec.environments:
        alb = elb.describe_load_balancers(Names=[f"mmrv-{env.name}-alb"])["LoadBalancers"][0]
        branch = env.aws.frontend.amplify_branch if env.aws.frontend else None
        for record in env.dns.records:
            found = records[record.name]
            if record.component == "backend":
                assert found["Type"] == "A" and found["AliasTarget"]["DNSName"].rstrip(".") == alb["DNSName"]
            else:
                assert (found["Type"], found["TTL"]) == ("CNAME", 300)
                assert found["ResourceRecords"] == [{"Value": f"{branch}.{app_domain}"}]


def test_autoscaling_and_iam(sandbox: Sandbox, seeded: Seeded, spec: Spec) -> None:
    scaling, iam = sandbox.client("application-autoscaling"), sandbox.client("iam")
    for env in spec.environments:
        resource = f"service/mmrv-{env.name}/mmrv-backend"
        targets = scaling.describe_scalable_targets(ServiceNamespace="ecs", ResourceIds=[resource])["ScalableTargets"]
        assert [(t["MinCapacity"], t["MaxCapacity"]) for t in targets] == [(2, 6)]
        policy = scaling.describe_scaling_policies(ServiceNamespace="ecs", ResourceId=resource)["ScalingPolicies"][0]
        tracking = policy["TargetTrackingScalingPolicyConfiguration"]
        assert tracking["TargetValue"] == 60.0
        assert tracking["PredefinedMetricSpecification"]["PredefinedMetricType"] == "ECSServiceAverageCPUUtilization"

        role = iam.get_role(RoleName=f"mmrv-backend-{env.name}-task")["Role"]
        trust = role["AssumeRolePolicyDocument"]
        trust = json.loads(trust) if isinstance(trust, str) else trust
        assert trust["Statement"][0]["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
        policy_doc = iam.get_role_policy(RoleName=role["RoleName"], PolicyName="app-data-access")["PolicyDocument"]
        actions = json.dumps(policy_doc)
        assert all(a in actions for a in ("sqs:SendMessage", "s3:GetObject", "dynamodb:GetItem"))
        attached = iam.list_attached_role_policies(RoleName=f"mmrv-backend-{env.name}-execution")["AttachedPolicies"]
        assert [p["PolicyName"] for p in attached] == [f"mmrv-backend-{env.name}-task-execution"]


def test_secrets_exist_and_are_never_logged(sandbox: Sandbox, seeded: Seeded, spec: Spec) -> None:
    sm = sandbox.client("secretsmanager")
    values = []
    for env in spec.environments:
        prefix = env.aws.secrets_prefix
        for name in ("db", "jwt-signing-key", "third-party-api-key"):
            values.append(sm.get_secret_value(SecretId=f"{prefix}{name}")["SecretString"])
        db = json.loads(values[-3])
        assert {"username", "password", "host"} <= set(db)
        values.append(db["password"])
    assert seeded.log, "the seed logs its progress"
    text = "\n".join(seeded.log) + seeded.summary.model_dump_json()
    assert not [v for v in values if v in text]


def test_seeding_again_is_idempotent(sandbox: Sandbox, seeded: Seeded, spec: Spec) -> None:
    again = seed_aws(sandbox.endpoints, spec, SEED)
    assert again.digests() == seeded.summary.digests()
    assert again.amplify_app_id == seeded.summary.amplify_app_id
    assert [s.task_definition_arns for s in again.services] == [s.task_definition_arns for s in seeded.summary.services]
    assert again.counts["blobs_uploaded"] == 0 and again.counts["bytes_uploaded"] == 0
    assert len(sandbox.client("elbv2").describe_load_balancers()["LoadBalancers"]) == 2
    with pytest.raises(SeedError, match="seeded with seed '11', not 12"):
        seed_aws(sandbox.endpoints, spec, SEED + 1)


def test_a_fresh_sandbox_gets_the_same_estate(seeded: Seeded, spec: Spec, tmp_path: Path) -> None:
    other = start_sandbox(tmp_path)
    try:
        fresh = seed_aws(other.endpoints, spec, SEED)
    finally:
        other.stop()
    first = seeded.summary.model_dump(exclude={"duration_seconds"})
    assert fresh.model_dump(exclude={"duration_seconds"}) == first


def test_seed_duration_is_reported(seeded: Seeded) -> None:
    assert 0 < seeded.summary.duration_seconds < 60
    assert seeded.summary.counts["blobs_mounted"] >= 1  # the Debian base crossed repositories by mount


def test_registry_needs_credentials(sandbox: Sandbox) -> None:
    assert httpx.get(f"{sandbox.registry.url}/v2/").status_code == 401
