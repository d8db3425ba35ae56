"""The AWS gateway: the only module that imports boto3 and botocore.

Reads MMRV's estate (ECS, ECR, Amplify, Secrets Manager metadata, Route 53, Application
Auto Scaling, IAM, ELBv2) and returns plain pydantic data from `migration.inventory`,
never boto3 objects. Verbs follow the Azure SDK conventions: `get_` raises NotFoundError
when the thing is missing, `list_` returns an empty list.

Every SDK failure leaves as a `migration.errors.CloudError` keeping the service name and
HTTP status:

- TransientError: HTTP 429 and 5xx, throttling codes, request timeouts, connection
  refused/reset/closed (also mid-TLS-handshake), connect and read timeouts. botocore's standard retry mode
  (`max_attempts`) already retried these; Prefect retries the task on top.
- NotFoundError: HTTP 404 and the services' not-found codes (`ClusterNotFoundException`,
  `RepositoryNotFoundException`, `NoSuchEntity`, `TargetGroupNotFound`, ...).
- PermanentError: any other 4xx (validation, access denied), bad parameters caught by
  botocore before sending, missing credentials or region, an untrusted TLS certificate.

Secret values are read by one verb each, for the secrets phase that copies them to Key Vault
(`get_secret_value`, `get_parameter_value`): they come back as `SecretValue` (hidden from
repr, never pickled), their errors never carry a value, and botocore's debug log of their
response bodies is dropped. Everything else uses metadata only (`list_secrets`,
`describe_secret`), and environment variables are reduced to their names.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    SSLError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from migration.clouds.registry import BasicLogin
from migration.errors import CloudError, NotFoundError, PermanentError, TransientError
from migration.inventory import (
    AliasTarget,
    AmplifyApp,
    AmplifyBranch,
    AmplifyDomain,
    AmplifySubdomain,
    ContainerSummary,
    DnsRecordSet,
    EcrImage,
    EcrRepository,
    EcsService,
    HealthCheck,
    HostedZone,
    IamPolicy,
    IamRole,
    LoadBalancerRef,
    PortMapping,
    RewriteRule,
    ScalableTarget,
    ScalingPolicy,
    SecretInfo,
    SecretReference,
    TargetGroup,
    TaskDefinition,
    parse_image_reference,
)
from migration.secrets import SecretValue
from migration.settings import AwsSettings

# botocore's own lists (botocore.retries.standard), less LimitExceededException, which is
# a quota (permanent) in ECS, IAM and Application Auto Scaling; real throttling there is 429.
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)
TRANSIENT_CODES = frozenset(
    {"RequestTimeout", "RequestTimeoutException", "InternalError", "InternalFailure", "ServiceUnavailable"}
)


def _is_not_found_code(code: str) -> bool:
    return (
        code.endswith(("NotFoundException", "NotFound", "NotFoundFault"))
        or code.startswith("NoSuch")
        or code in {"ResourceNotFound", "NotFound"}
    )


def classify(service: str, exc: Exception) -> CloudError:
    """Turn a botocore failure into TransientError, NotFoundError or PermanentError."""
    if isinstance(exc, CloudError):
        return exc
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "Unknown")
        message = str(error.get("Message") or error.get("message") or "").strip()
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        operation = getattr(exc, "operation_name", "") or "request"
        text = f"{operation} failed: {message or code} [{code}]"
        if code in THROTTLING_CODES or status == 429:
            return TransientError(service, f"{operation} throttled: {message or code} [{code}]", status)
        if code in TRANSIENT_CODES or (isinstance(status, int) and status >= 500):
            return TransientError(service, text, status)
        if status == 404 or _is_not_found_code(code):
            return NotFoundError(service, text, status)
        return PermanentError(service, text, status)
    if isinstance(exc, SSLError):
        if _is_certificate_problem(exc):
            return PermanentError(service, f"TLS certificate not trusted: {exc}")
        # EOF or reset during the handshake: the connection was lost, not refused on principle
        return TransientError(service, f"TLS connection lost: {exc}")
    if isinstance(exc, BotoConnectionError | HTTPClientError):
        # EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError ...
        return TransientError(service, f"cannot reach the endpoint: {exc}")
    if isinstance(exc, BotoCoreError):
        # ParamValidationError, NoCredentialsError, NoRegionError, ...: retrying will not help
        return PermanentError(service, f"{type(exc).__name__}: {exc}")
    return PermanentError(service, f"unexpected {type(exc).__name__}: {exc}")


def _is_certificate_problem(exc: SSLError) -> bool:
    """A certificate that does not verify (permanent), as opposed to a connection lost mid-handshake."""
    err: BaseException | None = exc.kwargs.get("error")
    for _ in range(8):
        if err is None:
            break
        if isinstance(err, ssl.SSLCertVerificationError):
            return True
        nxt = err.__cause__ or err.__context__
        if nxt is None and err.args and isinstance(err.args[0], BaseException):
            nxt = err.args[0]
        err = nxt
    return "CERTIFICATE_VERIFY_FAILED" in str(exc) or "certificate verify failed" in str(exc)


@contextmanager
def aws_errors(service: str) -> Iterator[None]:
    """Re-raise any botocore failure inside the block as a classified CloudError."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise classify(service, exc) from exc


class _SecretBodyFilter(logging.Filter):
    """Drops botocore's debug line of a response body that holds a secret value (GetSecretValue, GetParameter)."""

    MARKERS = (b'"SecretString"', b'"SecretBinary"', b'"Parameter"', b'"Parameters"')

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("Response body"):
            return True
        body = record.args[0] if isinstance(record.args, tuple) and record.args else b""
        data = body if isinstance(body, bytes) else str(body).encode("utf-8", "replace")
        return not any(marker in data for marker in self.MARKERS)


def _hide_secret_bodies() -> None:
    parsers = logging.getLogger("botocore.parsers")
    if not any(isinstance(f, _SecretBodyFilter) for f in parsers.filters):
        parsers.addFilter(_SecretBodyFilter())


def _names(env: Any) -> list[str]:
    """Names of `[{name, value}]` (ECS) or `{name: value}` (Amplify) env vars: the values are dropped here."""
    if isinstance(env, dict):
        return sorted(env)
    return sorted(str(item.get("name")) for item in env or [] if item.get("name"))


def _role_name(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


class AwsGateway:
    """Read-only access to the AWS services MMRV uses. Build one per task from `AwsSettings()`."""

    def __init__(self, settings: AwsSettings) -> None:
        self.settings = settings
        self._session = boto3.session.Session(region_name=settings.region)
        self._config = Config(
            # total attempts, the initial request included (botocore's `max_attempts` would count retries only)
            retries={"mode": "standard", "total_max_attempts": max(1, settings.max_attempts)},
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            user_agent_extra="mmrv-migrate",
        )
        self._clients: dict[str, Any] = {}

    def _client(self, service: str) -> Any:
        client = self._clients.get(service)
        if client is None:
            with aws_errors(service):
                kwargs: dict[str, Any] = {"config": self._config}
                if self.settings.ca_bundle:
                    kwargs["verify"] = self.settings.ca_bundle
                client = self._session.client(service, **kwargs)  # type: ignore[call-overload]
            self._clients[service] = client
        return client

    def _pages(self, service: str, operation: str, key: str, **kwargs: Any) -> list[Any]:
        with aws_errors(service):
            paginator = self._client(service).get_paginator(operation)
            return [item for page in paginator.paginate(**kwargs) for item in page.get(key, [])]

    def _call(self, service: str, operation: str, **kwargs: Any) -> dict[str, Any]:
        with aws_errors(service):
            method: Callable[..., dict[str, Any]] = getattr(self._client(service), operation)
            return method(**kwargs)

    # --- STS --------------------------------------------------------------------------

    # The documents the translation reads as the AWS CLI prints them (describe-*), unparsed.
    RAW_READS = frozenset(
        {
            ("ecs", "describe_services"),
            ("ecs", "describe_task_definition"),
            ("elbv2", "describe_target_groups"),
            ("application-autoscaling", "describe_scalable_targets"),
            ("application-autoscaling", "describe_scaling_policies"),
        }
    )

    def describe(self, service: str, operation: str, **kwargs: Any) -> dict[str, Any]:
        """One read-only `describe_*` call's response as is (boto3's metadata dropped)."""
        if (service, operation) not in self.RAW_READS:
            raise ValueError(f"{service}.{operation} is not a raw read the tool makes")
        out = dict(self._call(service, operation, **kwargs))
        out.pop("ResponseMetadata", None)
        return out

    def get_caller_account(self) -> str:
        return str(self._call("sts", "get_caller_identity")["Account"])

    # --- ECS --------------------------------------------------------------------------

    def get_ecs_service(self, cluster: str, service: str) -> EcsService:
        try:
            out = self._call("ecs", "describe_services", cluster=cluster, services=[service])
        except NotFoundError as exc:  # ClusterNotFoundException
            raise NotFoundError("ecs", "cluster not found", exc.status) from exc
        found = [s for s in out.get("services", []) if s.get("serviceName") == service]
        if not found:
            raise NotFoundError("ecs", "not found")
        svc = found[0]
        if svc.get("status") == "INACTIVE":
            raise NotFoundError("ecs", "not found (the service is INACTIVE: deleted)")
        return EcsService(
            cluster=cluster,
            name=svc["serviceName"],
            arn=svc["serviceArn"],
            status=svc.get("status", "UNKNOWN"),
            desired_count=svc.get("desiredCount", 0),
            running_count=svc.get("runningCount", 0),
            pending_count=svc.get("pendingCount", 0),
            launch_type=svc.get("launchType"),
            task_definition_arn=svc["taskDefinition"],
            load_balancers=[
                LoadBalancerRef(
                    target_group_arn=lb.get("targetGroupArn"),
                    container_name=lb.get("containerName"),
                    container_port=lb.get("containerPort"),
                )
                for lb in svc.get("loadBalancers", [])
            ],
            created_at=svc.get("createdAt"),
        )

    def get_task_definition(self, task_definition: str) -> TaskDefinition:
        try:
            out = self._call("ecs", "describe_task_definition", taskDefinition=task_definition)
        except PermanentError as exc:
            # ECS answers a missing revision with a generic ClientException
            if "Unable to describe task definition" in str(exc) or isinstance(exc, NotFoundError):
                raise NotFoundError("ecs", "not found", exc.status) from exc
            raise
        td = out["taskDefinition"]
        return TaskDefinition(
            arn=td["taskDefinitionArn"],
            family=td["family"],
            revision=td["revision"],
            status=td.get("status", "UNKNOWN"),
            cpu=td.get("cpu"),
            memory=td.get("memory"),
            network_mode=td.get("networkMode"),
            requires_compatibilities=td.get("requiresCompatibilities", []),
            task_role_arn=td.get("taskRoleArn"),
            execution_role_arn=td.get("executionRoleArn"),
            containers=[self._container(c) for c in td.get("containerDefinitions", [])],
            registered_at=td.get("registeredAt"),
        )

    @staticmethod
    def _container(c: dict[str, Any]) -> ContainerSummary:
        return ContainerSummary(
            name=c["name"],
            image=parse_image_reference(c.get("image", "")),
            cpu=c.get("cpu"),
            memory=c.get("memory"),
            memory_reservation=c.get("memoryReservation"),
            essential=c.get("essential", True),
            ports=[
                PortMapping(container_port=p["containerPort"], protocol=p.get("protocol", "tcp"))
                for p in c.get("portMappings", [])
                if "containerPort" in p
            ],
            environment_names=_names(c.get("environment")),
            secrets=[
                SecretReference(
                    name=s["name"],
                    value_from=s["valueFrom"],
                    source="secretsmanager" if ":secretsmanager:" in s["valueFrom"] else "ssm",
                )
                for s in c.get("secrets", [])
            ],
        )

    def list_task_definition_revisions(self, family: str, status: str = "ACTIVE") -> list[str]:
        """ARNs of the family's revisions, newest first (exact family: the API filters by prefix)."""
        arns = self._pages(
            "ecs", "list_task_definitions", "taskDefinitionArns", familyPrefix=family, status=status, sort="DESC"
        )
        return [a for a in arns if a.rsplit("/", 1)[-1].rsplit(":", 1)[0] == family]

    # --- ECR --------------------------------------------------------------------------

    def get_repository(self, name: str) -> EcrRepository:
        try:
            out = self._call("ecr", "describe_repositories", repositoryNames=[name])
        except NotFoundError as exc:
            raise NotFoundError("ecr", "not found", exc.status) from exc
        repo = out["repositories"][0]
        return EcrRepository(
            name=repo["repositoryName"],
            arn=repo["repositoryArn"],
            uri=repo["repositoryUri"],
            created_at=repo.get("createdAt"),
        )

    def list_images(self, repository: str) -> list[EcrImage]:
        details = self._pages("ecr", "describe_images", "imageDetails", repositoryName=repository)
        images = [
            EcrImage(
                digest=d["imageDigest"],
                tags=sorted(d.get("imageTags", [])),
                size_bytes=d.get("imageSizeInBytes"),
                pushed_at=d.get("imagePushedAt"),
                media_type=d.get("imageManifestMediaType"),
            )
            for d in details
        ]
        return sorted(images, key=lambda i: (i.pushed_at is not None, i.pushed_at, i.digest), reverse=True)

    def get_registry_login(self) -> BasicLogin:
        """The ECR registry's basic credentials (`AWS` and a 12-hour token) from `get_authorization_token`.

        The password is a secret: it goes into registry requests and ACR import bodies,
        never into a message, a log line or a Prefect result.
        """
        out = self._call("ecr", "get_authorization_token")
        data = (out.get("authorizationData") or [{}])[0]
        try:
            decoded = base64.b64decode(data.get("authorizationToken") or "", validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        user, sep, password = decoded.partition(":")
        if not sep or not user:
            raise PermanentError("ecr", "get_authorization_token returned no usable token")
        return BasicLogin(username=user, password=password, expires_at=data.get("expiresAt"))

    # --- Amplify ----------------------------------------------------------------------

    def get_amplify_app(self, name: str) -> AmplifyApp:
        """The app called `name` (Amplify identifies apps by id; the spec names them)."""
        apps = [a for a in self._pages("amplify", "list_apps", "apps") if a.get("name") == name]
        if not apps:
            raise NotFoundError("amplify", "not found")
        if len(apps) > 1:
            ids = ", ".join(sorted(a["appId"] for a in apps))
            raise PermanentError("amplify", f"{len(apps)} apps are named {name} ({ids}): rename all but one")
        app = apps[0]
        domains = self._pages("amplify", "list_domain_associations", "domainAssociations", appId=app["appId"])
        production = app.get("productionBranch") or {}
        return AmplifyApp(
            app_id=app["appId"],
            name=app["name"],
            arn=app.get("appArn"),
            platform=app.get("platform"),
            repository=app.get("repository"),
            default_domain=app.get("defaultDomain"),
            production_branch=production.get("branchName"),
            environment_variable_names=_names(app.get("environmentVariables") or {}),
            rewrites=[
                RewriteRule(
                    source=r["source"], target=r["target"], status=r.get("status"), condition=r.get("condition")
                )
                for r in app.get("customRules", [])
            ],
            domains=[
                AmplifyDomain(
                    domain_name=d["domainName"],
                    status=d.get("domainStatus"),
                    subdomains=[
                        AmplifySubdomain(
                            prefix=s.get("subDomainSetting", {}).get("prefix", ""),
                            branch=s.get("subDomainSetting", {}).get("branchName", ""),
                            verified=s.get("verified"),
                            dns_record=s.get("dnsRecord"),
                        )
                        for s in d.get("subDomains", [])
                    ],
                )
                for d in domains
            ],
        )

    def get_amplify_branch(self, app_id: str, branch: str) -> AmplifyBranch:
        try:
            b = self._call("amplify", "get_branch", appId=app_id, branchName=branch)["branch"]
        except NotFoundError as exc:
            raise NotFoundError("amplify", "not found", exc.status) from exc
        return AmplifyBranch(
            name=b["branchName"],
            stage=b.get("stage"),
            framework=b.get("framework"),
            display_name=b.get("displayName"),
            environment_variable_names=_names(b.get("environmentVariables") or {}),
            enable_auto_build=b.get("enableAutoBuild"),
            custom_domains=b.get("customDomains", []),
            active_job_id=b.get("activeJobId"),
        )

    # --- Secrets Manager (metadata only: never get_secret_value) -----------------------

    @staticmethod
    def _secret(s: dict[str, Any]) -> SecretInfo:
        return SecretInfo(
            name=s["Name"],
            arn=s["ARN"],
            created_at=s.get("CreatedDate"),
            last_changed_at=s.get("LastChangedDate"),
            rotation_enabled=bool(s.get("RotationEnabled", False)),
            kms_key_id=s.get("KmsKeyId"),
        )

    def list_secrets(self, prefix: str) -> list[SecretInfo]:
        """Secrets whose name starts with `prefix` (the API's name filter, checked again here)."""
        kwargs: dict[str, Any] = {"Filters": [{"Key": "name", "Values": [prefix]}]} if prefix else {}
        found = self._pages("secretsmanager", "list_secrets", "SecretList", **kwargs)
        return sorted((self._secret(s) for s in found if s["Name"].startswith(prefix)), key=lambda s: s.name)

    def get_secret_metadata(self, secret_id: str) -> SecretInfo:
        """describe_secret: name, ARN, dates, rotation. No value."""
        try:
            return self._secret(self._call("secretsmanager", "describe_secret", SecretId=secret_id))
        except NotFoundError as exc:
            raise NotFoundError("secretsmanager", "not found", exc.status) from exc

    def get_secret_value(
        self, secret_id: str, version_stage: str | None = None, version_id: str | None = None
    ) -> SecretValue:
        """The secret's string (AWSCURRENT unless a stage or version id is given), for the copy to Key Vault.

        Errors name the secret, never a value; a binary secret is refused (ECS injects strings only).
        """
        kwargs: dict[str, Any] = {"SecretId": secret_id}
        if version_id:
            kwargs["VersionId"] = version_id
        elif version_stage:
            kwargs["VersionStage"] = version_stage
        out = self._secret_read("secretsmanager", "get_secret_value", secret_id, **kwargs)
        text = out.get("SecretString")
        if not isinstance(text, str):
            raise PermanentError(
                "secretsmanager", f"{secret_id}: holds a binary value (SecretBinary); only string secrets are copied"
            )
        return SecretValue(text)

    def get_parameter_value(self, name: str) -> SecretValue:
        """An SSM parameter's value, decrypted (SecureString), for the copy to Key Vault."""
        out = self._secret_read("ssm", "get_parameter", name, Name=name, WithDecryption=True)
        return SecretValue(str((out.get("Parameter") or {}).get("Value", "")))

    def _secret_read(self, service: str, operation: str, what: str, **kwargs: Any) -> dict[str, Any]:
        _hide_secret_bodies()
        error: CloudError
        try:
            return getattr(self._client(service), operation)(**kwargs)  # type: ignore[no-any-return]
        except (ClientError, BotoCoreError) as exc:
            error = classify(service, exc)
        # raised outside the except block: no chained botocore exception; the message names the secret
        raise type(error)(service, f"{what}: {str(error).removeprefix(service + ': ')}", error.status)

    # --- Route 53 ---------------------------------------------------------------------

    def get_hosted_zone(self, zone: str) -> HostedZone:
        """The hosted zone named `zone`; a public one when there is also a private one."""
        wanted = zone.rstrip(".").lower() + "."
        out = self._call("route53", "list_hosted_zones_by_name", DNSName=wanted, MaxItems="10")
        zones = [z for z in out.get("HostedZones", []) if z["Name"].lower() == wanted]
        if not zones:
            raise NotFoundError("route53", "not found", 404)
        zones.sort(key=lambda z: bool(z.get("Config", {}).get("PrivateZone", False)))
        z = zones[0]
        return HostedZone(
            id=z["Id"].rsplit("/", 1)[-1],
            name=z["Name"].rstrip("."),
            private=bool(z.get("Config", {}).get("PrivateZone", False)),
            record_count=z.get("ResourceRecordSetCount"),
        )

    def list_record_sets(self, zone_id: str, name: str) -> list[DnsRecordSet]:
        """All record sets named `name` (every type and weighted set) in the zone."""
        wanted = name.rstrip(".").lower()
        found: list[DnsRecordSet] = []
        with aws_errors("route53"):
            paginator = self._client("route53").get_paginator("list_resource_record_sets")
            for page in paginator.paginate(HostedZoneId=zone_id, StartRecordName=wanted + "."):
                for rr in page.get("ResourceRecordSets", []):
                    if rr["Name"].rstrip(".").lower().replace("\\052", "*") != wanted:
                        return found  # sorted by name: the records of `name` come first and together
                    alias = rr.get("AliasTarget")
                    found.append(
                        DnsRecordSet(
                            name=wanted,
                            type=rr["Type"],
                            ttl=rr.get("TTL"),
                            values=[v["Value"] for v in rr.get("ResourceRecords", [])],
                            alias_target=AliasTarget(
                                dns_name=alias["DNSName"].rstrip("."),
                                hosted_zone_id=alias["HostedZoneId"],
                                evaluate_target_health=bool(alias.get("EvaluateTargetHealth", False)),
                            )
                            if alias
                            else None,
                            set_identifier=rr.get("SetIdentifier"),
                            weight=rr.get("Weight"),
                        )
                    )
        return found

    # --- Application Auto Scaling -----------------------------------------------------

    def list_scalable_targets(self, resource_id: str, namespace: str = "ecs") -> list[ScalableTarget]:
        targets = self._pages(
            "application-autoscaling",
            "describe_scalable_targets",
            "ScalableTargets",
            ServiceNamespace=namespace,
            ResourceIds=[resource_id],
        )
        return [
            ScalableTarget(
                resource_id=t["ResourceId"],
                dimension=t["ScalableDimension"],
                min_capacity=t["MinCapacity"],
                max_capacity=t["MaxCapacity"],
                suspended=any((t.get("SuspendedState") or {}).values()),
            )
            for t in targets
        ]

    def list_scaling_policies(self, resource_id: str, namespace: str = "ecs") -> list[ScalingPolicy]:
        policies = self._pages(
            "application-autoscaling",
            "describe_scaling_policies",
            "ScalingPolicies",
            ServiceNamespace=namespace,
            ResourceId=resource_id,
        )
        out = []
        for p in policies:
            tracking = p.get("TargetTrackingScalingPolicyConfiguration") or {}
            predefined = (tracking.get("PredefinedMetricSpecification") or {}).get("PredefinedMetricType")
            custom = (tracking.get("CustomizedMetricSpecification") or {}).get("MetricName")
            out.append(
                ScalingPolicy(
                    name=p["PolicyName"],
                    type=p["PolicyType"],
                    dimension=p.get("ScalableDimension"),
                    target_value=tracking.get("TargetValue"),
                    metric=predefined or custom,
                    scale_in_cooldown=tracking.get("ScaleInCooldown"),
                    scale_out_cooldown=tracking.get("ScaleOutCooldown"),
                )
            )
        return out

    # --- IAM --------------------------------------------------------------------------

    def get_role(self, role_arn: str, purpose: str) -> IamRole:
        """The role with its attached (managed) and inline policies and their documents."""
        name = _role_name(role_arn)
        try:
            role = self._call("iam", "get_role", RoleName=name)["Role"]
        except NotFoundError as exc:
            raise NotFoundError("iam", "not found", exc.status) from exc
        policies: list[IamPolicy] = []
        for attached in self._pages("iam", "list_attached_role_policies", "AttachedPolicies", RoleName=name):
            arn = attached["PolicyArn"]
            version = self._call("iam", "get_policy", PolicyArn=arn)["Policy"]["DefaultVersionId"]
            document = self._call("iam", "get_policy_version", PolicyArn=arn, VersionId=version)["PolicyVersion"]
            policies.append(
                IamPolicy(name=attached["PolicyName"], kind="attached", arn=arn, document=_document(document))
            )
        for inline in self._pages("iam", "list_role_policies", "PolicyNames", RoleName=name):
            document = self._call("iam", "get_role_policy", RoleName=name, PolicyName=inline)
            policies.append(IamPolicy(name=inline, kind="inline", document=_document(document, "PolicyDocument")))
        return IamRole(purpose=purpose, name=role["RoleName"], arn=role["Arn"], policies=policies)  # type: ignore[arg-type]

    # --- ELBv2 ------------------------------------------------------------------------

    def get_target_group(self, arn: str) -> TargetGroup:
        try:
            tg = self._call("elbv2", "describe_target_groups", TargetGroupArns=[arn])["TargetGroups"][0]
        except NotFoundError as exc:
            raise NotFoundError("elbv2", "not found", exc.status) from exc
        matcher = tg.get("Matcher") or {}
        return TargetGroup(
            arn=tg["TargetGroupArn"],
            name=tg["TargetGroupName"],
            protocol=tg.get("Protocol"),
            port=tg.get("Port"),
            target_type=tg.get("TargetType"),
            health_check=HealthCheck(
                protocol=tg.get("HealthCheckProtocol"),
                port=tg.get("HealthCheckPort"),
                path=tg.get("HealthCheckPath"),
                interval_seconds=tg.get("HealthCheckIntervalSeconds"),
                timeout_seconds=tg.get("HealthCheckTimeoutSeconds"),
                healthy_threshold=tg.get("HealthyThresholdCount"),
                unhealthy_threshold=tg.get("UnhealthyThresholdCount"),
                matcher=matcher.get("HttpCode") or matcher.get("GrpcCode"),
            ),
        )


def _document(holder: dict[str, Any], key: str = "Document") -> dict[str, Any]:
    """A policy document as a dict (botocore decodes IAM's URL-encoded JSON; be safe if it did not)."""
    document = holder.get(key)
    if isinstance(document, str):
        try:
            return dict(json.loads(unquote(document)))
        except ValueError:
            return {"unparsed": document}
    return dict(document or {})
