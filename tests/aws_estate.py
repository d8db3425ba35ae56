"""Real local servers standing in for AWS in the tests, and the seeding of MMRV's estate.

- `MotoServer`: `python -m moto.server` in a subprocess (ECS, ECR, Secrets Manager, Route 53,
  Application Auto Scaling, IAM, ELBv2, STS).
- `AmplifyServer`: a small Amplify REST server (moto has no Amplify) answering the
  operations the inventory and the seeding use, in the shapes botocore deserializes.
  Stand-in until the sandbox's Amplify emulator lands.
- `StatusServer`: answers every request with one fixed status (429, 503 ...) or never
  answers at all, to see how real throttling and timeouts are classified.
- `seed_estate`: MMRV's estate for the spec, through boto3 only (so it works the same
  against the sandbox). Secret values, env var values and Amplify credentials are random
  and recognisable, and returned so tests can scan every output for them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import boto3

from migration.spec import Spec

ACCOUNT_ID = "123456789012"  # moto's default account, the one deployments/mmrv.yaml names
REGION = "eu-west-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


class MotoServer:
    """moto in server mode on a free loopback port; `stop()` ends exactly the process it started."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = open(log_dir / f"moto-{self.port}.log", "wb")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_http(f"{self.url}/moto-api/")
        except OSError:
            self.stop()
            raise

    def stop(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._log.close()


# --- a small Amplify REST server -----------------------------------------------------------


class _AmplifyState:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.apps: dict[str, dict[str, Any]] = {}
        self.branches: dict[str, dict[str, dict[str, Any]]] = {}
        self.domains: dict[str, dict[str, dict[str, Any]]] = {}


class _AmplifyHandler(BaseHTTPRequestHandler):
    state: _AmplifyState
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: dict[str, Any], error_type: str | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if error_type:
            self.send_header("x-amzn-ErrorType", error_type)
        self.end_headers()
        self.wfile.write(data)

    def _not_found(self, what: str) -> None:
        self._send(404, {"message": f"{what} not found"}, "NotFoundException")

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def _parts(self) -> list[str]:
        path = self.path.split("?", 1)[0]
        return [unquote(p) for p in path.strip("/").split("/") if p]

    def do_GET(self) -> None:
        parts = self._parts()
        with self.state.lock:
            if parts == ["apps"]:
                return self._send(200, {"apps": list(self.state.apps.values())})
            if len(parts) >= 2 and parts[0] == "apps" and parts[1] not in self.state.apps:
                return self._not_found(f"app {parts[1]}")
            if len(parts) == 2:
                return self._send(200, {"app": self.state.apps[parts[1]]})
            app_id = parts[1]
            if parts[2:] == ["branches"]:
                return self._send(200, {"branches": list(self.state.branches[app_id].values())})
            if len(parts) == 4 and parts[2] == "branches":
                branch = self.state.branches[app_id].get(parts[3])
                return self._send(200, {"branch": branch}) if branch else self._not_found(f"branch {parts[3]}")
            if parts[2:] == ["domains"]:
                return self._send(200, {"domainAssociations": list(self.state.domains[app_id].values())})
        return self._not_found(self.path)

    def do_POST(self) -> None:
        parts = self._parts()
        body = self._body()
        now = time.time()
        with self.state.lock:
            if parts == ["apps"]:
                app_id = "d" + secrets.token_hex(6)
                app = {
                    "appId": app_id,
                    "appArn": f"arn:aws:amplify:{REGION}:{ACCOUNT_ID}:apps/{app_id}",
                    "name": body["name"],
                    "description": body.get("description", ""),
                    "repository": body.get("repository", ""),
                    "platform": body.get("platform", "WEB"),
                    "createTime": now,
                    "updateTime": now,
                    "environmentVariables": body.get("environmentVariables", {}),
                    "defaultDomain": f"{app_id}.amplifyapp.com",
                    "enableBranchAutoBuild": body.get("enableBranchAutoBuild", False),
                    "enableBasicAuth": body.get("enableBasicAuth", False),
                    "basicAuthCredentials": body.get("basicAuthCredentials"),
                    "customRules": body.get("customRules", []),
                    "buildSpec": body.get("buildSpec", ""),
                }
                self.state.apps[app_id] = app
                self.state.branches[app_id] = {}
                self.state.domains[app_id] = {}
                return self._send(200, {"app": app})
            if len(parts) >= 3 and parts[0] == "apps" and parts[1] in self.state.apps:
                app_id = parts[1]
                if parts[2:] == ["branches"]:
                    branch = {
                        "branchArn": f"{self.state.apps[app_id]['appArn']}/branches/{body['branchName']}",
                        "branchName": body["branchName"],
                        "description": body.get("description", ""),
                        "stage": body.get("stage", "NONE"),
                        "displayName": body.get("displayName", body["branchName"]),
                        "enableNotification": False,
                        "createTime": now,
                        "updateTime": now,
                        "environmentVariables": body.get("environmentVariables", {}),
                        "enableAutoBuild": body.get("enableAutoBuild", True),
                        "customDomains": [],
                        "framework": body.get("framework", ""),
                        "activeJobId": "1",
                        "totalNumberOfJobs": "1",
                        "enableBasicAuth": body.get("enableBasicAuth", False),
                        "basicAuthCredentials": body.get("basicAuthCredentials"),
                        "ttl": "5",
                        "enablePullRequestPreview": False,
                    }
                    self.state.branches[app_id][body["branchName"]] = branch
                    return self._send(200, {"branch": branch})
                if parts[2:] == ["domains"]:
                    domain = {
                        "domainAssociationArn": f"{self.state.apps[app_id]['appArn']}/domains/{body['domainName']}",
                        "domainName": body["domainName"],
                        "enableAutoSubDomain": False,
                        "domainStatus": "AVAILABLE",
                        "statusReason": "",
                        "subDomains": [
                            {
                                "subDomainSetting": s,
                                "verified": True,
                                "dnsRecord": f"{s['prefix']} CNAME {self.state.apps[app_id]['defaultDomain']}",
                            }
                            for s in body.get("subDomainSettings", [])
                        ],
                    }
                    self.state.domains[app_id][body["domainName"]] = domain
                    return self._send(200, {"domainAssociation": domain})
        return self._not_found(self.path)


class AmplifyServer:
    def __init__(self) -> None:
        handler = type("Handler", (_AmplifyHandler,), {"state": _AmplifyState()})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# --- a server answering one fixed status, or never answering --------------------------------


class StatusServer:
    """Every request gets `status` with an AWS JSON error body; `hang=True` never answers (a read timeout)."""

    def __init__(self, status: int = 429, code: str = "ThrottlingException", hang: bool = False) -> None:
        release = self._release = threading.Event()
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                outer.requests += 1
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if hang:
                    release.wait(30)
                    return
                data = json.dumps({"__type": code, "message": f"simulated {status}"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("x-amzn-ErrorType", code)
                self.send_header("Content-Length", str(len(data)))
                if status in (429, 503):
                    self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()


# --- seeding --------------------------------------------------------------------------------


@dataclass
class SeededEnvironment:
    name: str
    family: str
    active_revision: int
    active_tag: str
    secret_names: list[str]  # under the env's prefix
    referenced_secret_names: list[str]  # referenced by the task definition (may be outside the prefix)
    task_role: str
    execution_role: str
    target_group_arn: str
    record_names: list[str]


@dataclass
class SeededEstate:
    aws_endpoint: str
    amplify_endpoint: str
    digests: dict[str, str]  # "mmrv-backend:1.4.0" -> sha256:...
    sizes: dict[str, int]
    environments: dict[str, SeededEnvironment]
    sensitive_values: list[str] = field(default_factory=list)  # must never appear anywhere

    def client_env(self) -> dict[str, str]:
        """Environment variables that point boto3 (and so the tool) at these servers."""
        return {
            "AWS_ENDPOINT_URL": self.aws_endpoint,
            "AWS_ENDPOINT_URL_AMPLIFY": self.amplify_endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
        }


def _sensitive(prefix: str, found: list[str]) -> str:
    value = f"{prefix}-{secrets.token_hex(12)}"
    found.append(value)
    return value


def _manifest(seed: str, layer_size: int) -> tuple[str, str]:
    """A Docker v2 manifest whose digest is its sha256 (what a registry computes)."""
    config = {
        "mediaType": "application/vnd.docker.container.image.v1+json",
        "size": 1400,
        "digest": "sha256:" + hashlib.sha256(f"{seed}-config".encode()).hexdigest(),
    }
    layer = {
        "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "size": layer_size,
        "digest": "sha256:" + hashlib.sha256(f"{seed}-layer".encode()).hexdigest(),
    }
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": config,
            "layers": [layer],
        }
    )
    return body, "sha256:" + hashlib.sha256(body.encode()).hexdigest()


@contextmanager
def _aws_env(aws_endpoint: str, amplify_endpoint: str) -> Iterator[dict[str, str]]:
    env = {
        "AWS_ENDPOINT_URL": aws_endpoint,
        "AWS_ENDPOINT_URL_AMPLIFY": amplify_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield env
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def seed_estate(spec: Spec, aws_endpoint: str, amplify_endpoint: str) -> SeededEstate:
    """MMRV's AWS estate as the spec describes it, both environments, through boto3."""
    sensitive: list[str] = []
    with _aws_env(aws_endpoint, amplify_endpoint):
        session = boto3.session.Session(region_name=spec.aws.region)
        ecr = session.client("ecr")
        ecs = session.client("ecs")
        sm = session.client("secretsmanager")
        iam = session.client("iam")
        ec2 = session.client("ec2")
        elb = session.client("elbv2")
        aas = session.client("application-autoscaling")
        r53 = session.client("route53")
        amplify = session.client("amplify")

        # ECR: the back end's repository with three tagged images (the front end is built by Amplify)
        backend_repo = spec.components["backend"].image_repository
        ecr.create_repository(repositoryName=backend_repo)
        digests: dict[str, str] = {}
        sizes: dict[str, int] = {}
        for i, tag in enumerate(["1.3.2", "1.4.0", "1.5.0-rc1"]):
            body, digest = _manifest(f"{backend_repo}-{tag}", layer_size=30_000_000 + i)
            ecr.put_image(
                repositoryName=backend_repo,
                imageManifest=body,
                imageManifestMediaType="application/vnd.docker.distribution.manifest.v2+json",
                imageTag=tag,
                imageDigest=digest,
            )
            digests[f"{backend_repo}:{tag}"] = digest
        for d in ecr.describe_images(repositoryName=backend_repo)["imageDetails"]:
            for tag in d.get("imageTags", []):
                sizes[f"{backend_repo}:{tag}"] = d["imageSizeInBytes"]
        registry = f"{spec.aws.account_id}.dkr.ecr.{spec.aws.region}.amazonaws.com"

        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        zone = spec.environments[0].dns.zone
        zone_id = r53.create_hosted_zone(Name=zone, CallerReference=secrets.token_hex(8))["HostedZone"]["Id"]

        # Amplify: one app, one branch per environment, a domain association
        app = amplify.create_app(
            name=spec.environments[0].aws.frontend.amplify_app,  # type: ignore[union-attr]
            platform="WEB_COMPUTE",
            repository="https://github.com/example/mmrv-web",
            environmentVariables={
                "NEXT_PUBLIC_API_URL": "https://api.mmrv.example.com",
                "NEXTAUTH_SECRET": _sensitive("amplify-app-env", sensitive),
            },
            enableBasicAuth=True,
            basicAuthCredentials=_sensitive("amplify-basic-auth", sensitive),
            customRules=[
                {"source": "/api/<*>", "target": "https://api.mmrv.example.com/<*>", "status": "200"},
                {"source": "/old", "target": "/new", "status": "301"},
            ],
        )["app"]

        environments: dict[str, SeededEnvironment] = {}
        active_tags = {"staging": "1.4.0", "production": "1.3.2"}
        subdomains = []
        for env in spec.environments:
            name = env.name
            prefix = env.aws.secrets_prefix
            backend = env.aws.backend
            frontend = env.aws.frontend
            assert backend is not None and frontend is not None

            # secrets: two under the prefix, one shared outside it, all referenced by the task definition
            arns = {}
            for short in ("db-password", "api-key"):
                arns[short] = sm.create_secret(
                    Name=f"{prefix}{short}", SecretString=_sensitive(f"{name}-{short}", sensitive)
                )["ARN"]
            shared = f"mmrv/shared/{name}-sentry-dsn"
            arns["sentry"] = sm.create_secret(Name=shared, SecretString=_sensitive("sentry", sensitive))["ARN"]

            # IAM: task role (customer managed + inline policy), execution role
            trust = json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            )
            task_role = f"mmrv-{name}-task"
            exec_role = f"mmrv-{name}-execution"
            task_role_arn = iam.create_role(RoleName=task_role, AssumeRolePolicyDocument=trust)["Role"]["Arn"]
            exec_role_arn = iam.create_role(RoleName=exec_role, AssumeRolePolicyDocument=trust)["Role"]["Arn"]
            s3_policy = iam.create_policy(
                PolicyName=f"mmrv-{name}-uploads",
                PolicyDocument=json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Action": ["s3:GetObject", "s3:PutObject"],
                                "Resource": f"arn:aws:s3:::mmrv-{name}-uploads/*",
                            }
                        ],
                    }
                ),
            )["Policy"]["Arn"]
            iam.attach_role_policy(RoleName=task_role, PolicyArn=s3_policy)
            iam.put_role_policy(
                RoleName=task_role,
                PolicyName="sqs-jobs",
                PolicyDocument=json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [{"Effect": "Allow", "Action": "sqs:*", "Resource": "*"}],
                    }
                ),
            )
            read_secrets = iam.create_policy(
                PolicyName=f"mmrv-{name}-read-secrets",
                PolicyDocument=json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Action": "secretsmanager:GetSecretValue",
                                "Resource": list(arns.values()),
                            }
                        ],
                    }
                ),
            )["Policy"]["Arn"]
            iam.attach_role_policy(RoleName=exec_role, PolicyArn=read_secrets)

            # ECS: task definition revisions (1.3.2, then 1.4.0 for staging), cluster, target group, service
            family = f"{backend_repo}-{name}"
            revisions_tags = ["1.3.2", "1.4.0"] if name == "staging" else ["1.3.2"]
            revision = 0
            for tag in revisions_tags:
                revision = ecs.register_task_definition(
                    family=family,
                    networkMode="awsvpc",
                    requiresCompatibilities=["FARGATE"],
                    cpu="512",
                    memory="1024",
                    taskRoleArn=task_role_arn,
                    executionRoleArn=exec_role_arn,
                    containerDefinitions=[
                        {
                            "name": "backend",
                            "image": f"{registry}/{backend_repo}:{tag}",
                            "cpu": 512,
                            "memory": 1024,
                            "essential": True,
                            "portMappings": [{"containerPort": spec.components["backend"].port, "protocol": "tcp"}],
                            "environment": [
                                {"name": "LOG_LEVEL", "value": "info"},
                                {"name": "APP_ENV", "value": name},
                                {"name": "SESSION_SIGNING_KEY", "value": _sensitive(f"{name}-env", sensitive)},
                            ],
                            "secrets": [
                                {"name": "DB_PASSWORD", "valueFrom": arns["db-password"]},
                                {"name": "API_KEY", "valueFrom": f"{arns['api-key']}:apikey::"},
                                {"name": "SENTRY_DSN", "valueFrom": arns["sentry"]},
                            ],
                        }
                    ],
                )["taskDefinition"]["revision"]
            ecs.create_cluster(clusterName=backend.ecs_cluster)
            tg_arn = elb.create_target_group(
                Name=f"mmrv-{name}-backend",
                Protocol="HTTP",
                Port=spec.components["backend"].port,
                VpcId=vpc,
                TargetType="ip",
                HealthCheckProtocol="HTTP",
                HealthCheckPath=spec.components["backend"].health_check_path,
                HealthCheckIntervalSeconds=15,
                HealthCheckTimeoutSeconds=5,
                HealthyThresholdCount=3,
                UnhealthyThresholdCount=2,
                Matcher={"HttpCode": "200"},
            )["TargetGroups"][0]["TargetGroupArn"]
            ecs.create_service(
                cluster=backend.ecs_cluster,
                serviceName=backend.ecs_service,
                taskDefinition=f"{family}:{revision}",
                desiredCount=2,
                launchType="FARGATE",
                loadBalancers=[
                    {
                        "targetGroupArn": tg_arn,
                        "containerName": "backend",
                        "containerPort": spec.components["backend"].port,
                    }
                ],
            )
            resource_id = f"service/{backend.ecs_cluster}/{backend.ecs_service}"
            aas.register_scalable_target(
                ServiceNamespace="ecs",
                ResourceId=resource_id,
                ScalableDimension="ecs:service:DesiredCount",
                MinCapacity=2,
                MaxCapacity=6 if name == "staging" else 12,
            )
            aas.put_scaling_policy(
                PolicyName=f"mmrv-{name}-cpu",
                ServiceNamespace="ecs",
                ResourceId=resource_id,
                ScalableDimension="ecs:service:DesiredCount",
                PolicyType="TargetTrackingScaling",
                TargetTrackingScalingPolicyConfiguration={
                    "TargetValue": 60.0,
                    "PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"},
                    "ScaleInCooldown": 120,
                    "ScaleOutCooldown": 60,
                },
            )

            # Amplify branch of this environment
            amplify.create_branch(
                appId=app["appId"],
                branchName=frontend.amplify_branch,
                stage="PRODUCTION" if name == "production" else "BETA",
                framework="Next.js - SSR",
                enableAutoBuild=True,
                environmentVariables={
                    "NEXT_PUBLIC_ENV": name,
                    "REVALIDATE_TOKEN": _sensitive(f"{name}-branch-env", sensitive),
                },
            )

            # Route 53: the spec's names; the back end weighted (cutover-ready), the front end a CNAME
            changes = []
            for record in env.dns.records:
                if record.component == "backend":
                    changes.append(
                        {
                            "Action": "CREATE",
                            "ResourceRecordSet": {
                                "Name": record.name,
                                "Type": "CNAME",
                                "SetIdentifier": "aws",
                                "Weight": 100,
                                "TTL": 60,
                                "ResourceRecords": [{"Value": f"mmrv-{name}-alb.{spec.aws.region}.elb.amazonaws.com"}],
                            },
                        }
                    )
                else:
                    prefix_label = record.name.removesuffix("." + zone)
                    subdomains.append({"prefix": prefix_label, "branchName": frontend.amplify_branch})
                    changes.append(
                        {
                            "Action": "CREATE",
                            "ResourceRecordSet": {
                                "Name": record.name,
                                "Type": "CNAME",
                                "TTL": 300,
                                "ResourceRecords": [{"Value": f"{frontend.amplify_branch}.{app['defaultDomain']}"}],
                            },
                        }
                    )
            r53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": changes})

            environments[name] = SeededEnvironment(
                name=name,
                family=family,
                active_revision=revision,
                active_tag=active_tags[name],
                secret_names=sorted(f"{prefix}{s}" for s in ("db-password", "api-key")),
                referenced_secret_names=sorted([f"{prefix}db-password", f"{prefix}api-key", shared]),
                task_role=task_role,
                execution_role=exec_role,
                target_group_arn=tg_arn,
                record_names=[r.name for r in env.dns.records],
            )
        amplify.create_domain_association(appId=app["appId"], domainName=zone, subDomainSettings=subdomains)

    return SeededEstate(
        aws_endpoint=aws_endpoint,
        amplify_endpoint=amplify_endpoint,
        digests=digests,
        sizes=sizes,
        environments=environments,
        sensitive_values=sensitive,
    )


def find_sensitive(text: str, values: list[str]) -> list[str]:
    """The sensitive values that occur in `text` (also as their random part alone)."""
    hits = []
    for value in values:
        token = value.rsplit("-", 1)[-1]
        if value in text or re.search(re.escape(token), text):
            hits.append(value)
    return hits
