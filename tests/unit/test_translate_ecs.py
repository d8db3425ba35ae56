"""MMRV's back end as ECS runs it -> Kubernetes: every manifest valid, every field where it belongs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from migration.platform import PlatformOutputs
from migration.spec import load_spec
from migration.translate import (
    autoscaling_from_aws,
    health_check_from_aws,
    options_for,
    render_files,
    translate_ecs,
)
from tests.unit.test_translate_fixtures import (
    CLIENT_ID,
    ECR,
    TENANT,
    deployment,
    env_of,
    fixture,
    items,
    k8s_container,
    options,
    pinned,
    pod,
    translate,
    validate_all,
)

SPEC = load_spec(Path(__file__).resolve().parents[2] / "deployments" / "mmrv.yaml")


@pytest.fixture(scope="module")
def mmrv() -> Any:
    """The full translation: task definition, service, target group, autoscaling, federated AWS role."""
    result = translate_ecs(
        fixture("mmrv-backend-taskdef.json"),
        fixture("mmrv-backend-service.json"),
        options(
            health_check=health_check_from_aws(fixture("mmrv-backend-target-group.json")),
            autoscaling=autoscaling_from_aws(
                fixture("mmrv-backend-scalable-targets.json"), fixture("mmrv-backend-scaling-policies.json")
            ),
            aws_role_arn="arn:aws:iam::123456789012:role/mmrv-staging-backend-aks",
        ),
    )
    validate_all(result)
    return result


def test_objects_in_apply_order_with_ownership_labels(mmrv: Any) -> None:
    assert mmrv.kinds() == [
        "Namespace",
        "ServiceAccount",
        "SecretProviderClass",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
    ]
    for m in mmrv.manifests:
        labels = m["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "mmrv-migrate"
        assert labels["mmrv-migrate/spec"] == "mmrv"
        assert labels["mmrv-migrate/environment"] == "staging"
        if m["kind"] != "Namespace":
            assert m["metadata"]["namespace"] == "mmrv"
            assert m["metadata"]["name"].startswith("mmrv-backend")
            assert labels["app.kubernetes.io/name"] == "mmrv-backend"
    assert mmrv.source == "mmrv-backend-staging:3 (service mmrv-backend)"


def test_service_account_and_pod_use_workload_identity(mmrv: Any) -> None:
    sa = mmrv.manifest("ServiceAccount")
    assert sa["metadata"]["name"] == "mmrv-backend"
    assert sa["metadata"]["annotations"]["azure.workload.identity/client-id"] == CLIENT_ID
    assert sa["metadata"]["annotations"]["azure.workload.identity/tenant-id"] == TENANT
    template = deployment(mmrv)["spec"]["template"]
    assert template["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    assert template["spec"]["serviceAccountName"] == "mmrv-backend"
    # the selector is a subset of the pod labels, and stable (no version or environment in it)
    selector = deployment(mmrv)["spec"]["selector"]["matchLabels"]
    assert selector == {"app.kubernetes.io/name": "mmrv-backend"}
    assert selector.items() <= template["metadata"]["labels"].items()


def test_image_is_the_acr_reference_pinned_by_digest(mmrv: Any) -> None:
    (c,) = pod(mmrv)["containers"]
    assert c["image"] == pinned("mmrv-backend")
    (rewrite,) = mmrv.images
    assert (rewrite.source, rewrite.target, rewrite.pinned) == (
        f"{ECR}/mmrv-backend:1.4.0",
        pinned("mmrv-backend"),
        True,
    )


def test_environment_and_secrets(mmrv: Any) -> None:
    env = env_of(k8s_container(mmrv, "mmrv-backend"))
    assert env["APP_ENV"] == "staging"
    assert env["PORT"] == "8080"
    assert env["AWS_REGION"] == "eu-west-1"  # the task's own value stays
    ref = {"name": "mmrv-backend-secrets"}
    assert env["DB_PASSWORD"] == {"secretKeyRef": {**ref, "key": "mmrv-staging-db-password"}}
    assert env["DB_HOST"] == {"secretKeyRef": {**ref, "key": "mmrv-staging-db-host"}}
    assert env["JWT_SIGNING_KEY"] == {"secretKeyRef": {**ref, "key": "mmrv-staging-jwt-signing-key"}}
    # the secret sync needs the CSI volume mounted
    mounts = {m["name"]: m for m in k8s_container(mmrv, "mmrv-backend")["volumeMounts"]}
    assert mounts["secrets-store"] == {"name": "secrets-store", "mountPath": "/mnt/secrets-store", "readOnly": True}
    volumes = {v["name"]: v for v in pod(mmrv)["volumes"]}
    assert volumes["secrets-store"]["csi"] == {
        "driver": "secrets-store.csi.k8s.io",
        "readOnly": True,
        "volumeAttributes": {"secretProviderClass": "mmrv-backend-keyvault"},
    }
    spc = mmrv.manifest("SecretProviderClass")
    assert spc["spec"]["parameters"]["keyvaultName"] == "kv-mmrv-staging"
    assert spc["spec"]["parameters"]["clientID"] == CLIENT_ID
    assert spc["spec"]["parameters"]["tenantId"] == TENANT
    assert spc["spec"]["secretObjects"][0]["secretName"] == "mmrv-backend-secrets"
    # what the secrets phase copies: names only, each JSON key its own Key Vault secret
    copies = {s.key_vault_secret: s for s in mmrv.secrets}
    assert set(copies) == {
        "mmrv-staging-db-host",
        "mmrv-staging-db-username",
        "mmrv-staging-db-password",
        "mmrv-staging-jwt-signing-key",
        "mmrv-staging-third-party-api-key",
    }
    db = copies["mmrv-staging-db-password"]
    assert db.source == "arn:aws:secretsmanager:eu-west-1:123456789012:secret:mmrv/staging/db-Xr4pQz"
    assert (db.json_key, db.env) == ("password", ["mmrv-backend/DB_PASSWORD"])
    assert copies["mmrv-staging-jwt-signing-key"].json_key is None


def test_resources_from_the_fargate_task_size(mmrv: Any) -> None:
    # one container with cpu 0 in a 0.5 vCPU / 1 GiB task: all of it, requests = limits (Guaranteed, like Fargate)
    resources = k8s_container(mmrv, "mmrv-backend")["resources"]
    assert resources == {"requests": {"cpu": "500m", "memory": "1024Mi"}, "limits": {"cpu": "500m", "memory": "1024Mi"}}


def test_probes_from_the_container_and_the_target_group(mmrv: Any) -> None:
    c = k8s_container(mmrv, "mmrv-backend")
    shell = ["/bin/sh", "-c", "curl -fsS http://localhost:8080/healthz || exit 1"]
    assert c["livenessProbe"] == {
        "exec": {"command": shell},
        "periodSeconds": 30,
        "timeoutSeconds": 5,
        "failureThreshold": 3,
    }
    # startPeriod 20 s: a startup probe allowing it plus the retries, liveness only after it passed
    assert c["startupProbe"]["exec"]["command"] == shell
    assert c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"] >= 20 + 3 * 10
    # the ALB target group decided who got traffic: its check is the readiness probe
    assert c["readinessProbe"] == {
        "httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"},
        "periodSeconds": 15,
        "timeoutSeconds": 5,
        "successThreshold": 2,
        "failureThreshold": 3,
    }


def test_service_rollout_hpa_pdb_and_network_policy(mmrv: Any) -> None:
    spec = deployment(mmrv)["spec"]
    assert "replicas" not in spec  # the HPA owns the scale; applying again does not reset it
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "100%", "maxUnavailable": "0%"}}
    assert spec["progressDeadlineSeconds"] == 600
    service = mmrv.manifest("Service")
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP", "appProtocol": "http"}
    ]
    hpa = mmrv.manifest("HorizontalPodAutoscaler")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 6)
    assert hpa["metrics"] == [
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}
    ]
    assert hpa["behavior"] == {"scaleDown": {"stabilizationWindowSeconds": 300}}
    assert mmrv.manifest("PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    policy = mmrv.manifest("NetworkPolicy")["spec"]
    assert policy["ingress"] == [{"ports": [{"port": 8080, "protocol": "TCP"}]}]
    assert policy["egress"][0]["ports"] == [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]
    assert policy["egress"][1] == {}  # everything else: the app keeps calling AWS


def test_aws_role_by_federation(mmrv: Any) -> None:
    c = k8s_container(mmrv, "mmrv-backend")
    env = env_of(c)
    assert env["AWS_ROLE_ARN"] == "arn:aws:iam::123456789012:role/mmrv-staging-backend-aks"
    assert env["AWS_WEB_IDENTITY_TOKEN_FILE"] == "/var/run/secrets/sts.amazonaws.com/serviceaccount/token"
    mount = next(m for m in c["volumeMounts"] if m["name"] == "aws-token")
    assert env["AWS_WEB_IDENTITY_TOKEN_FILE"].startswith(mount["mountPath"] + "/")
    volume = next(v for v in pod(mmrv)["volumes"] if v["name"] == "aws-token")
    (source,) = volume["projected"]["sources"]
    assert source["serviceAccountToken"]["audience"] == "sts.amazonaws.com"
    assert source["serviceAccountToken"]["path"] == "token"


def test_report_accounts_for_fields_without_equivalent(mmrv: Any) -> None:
    (logs,) = items(mmrv, "taskDefinition.containerDefinitions[0].logConfiguration")
    assert "awslogs" in logs.ecs and "Container Insights" in logs.outcome
    (ulimits,) = items(mmrv, "taskDefinition.containerDefinitions[0].ulimits")
    assert ulimits.severity == "warning" and "nofile 65536/65536" in ulimits.ecs
    (grace,) = items(mmrv, "service.healthCheckGracePeriodSeconds")
    assert "60 s" in grace.ecs
    (breaker,) = items(mmrv, "service.deploymentConfiguration.deploymentCircuitBreaker")
    assert "progressDeadlineSeconds 600" in breaker.outcome and "rolls back" in breaker.outcome
    assert items(mmrv, "taskDefinition.taskRoleArn")[0].severity == "info"  # federated: nothing to do
    # nothing the translator does not know about
    assert not [i for i in mmrv.report if "does not know" in i.ecs]
    # the report never carries an environment value
    text = json.dumps([i.model_dump() for i in mmrv.report])
    assert "mmrv-staging-uploads" not in text and "staging-api.mmrv.example.com" not in text


def test_unwrapped_inputs_translate_the_same() -> None:
    wrapped = translate_ecs(fixture("mmrv-backend-taskdef.json"), fixture("mmrv-backend-service.json"), options())
    bare = translate_ecs(
        fixture("mmrv-backend-taskdef-unwrapped.json"), fixture("mmrv-backend-service-unwrapped.json"), options()
    )
    assert bare.manifests == wrapped.manifests
    # only the wrapper's AWS tags differ in the report
    assert {i.field for i in wrapped.report} - {i.field for i in bare.report} == {"tags"}


def test_translation_is_deterministic_and_serialisable() -> None:
    first = translate_ecs(fixture("mmrv-backend-taskdef.json"), fixture("mmrv-backend-service.json"), options())
    second = translate_ecs(fixture("mmrv-backend-taskdef.json"), fixture("mmrv-backend-service.json"), options())
    assert render_files(first) == render_files(second)
    assert type(first).model_validate_json(first.model_dump_json()) == first


def test_without_a_service_one_replica_and_the_default_rollout() -> None:
    result = translate(fixture("mmrv-backend-taskdef.json"))
    assert deployment(result)["spec"]["replicas"] == 1
    assert deployment(result)["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": "100%", "maxUnavailable": "0%"}
    assert result.manifest("Service")["spec"]["ports"][0]["port"] == 8080
    (note,) = [i for i in items(result, "service") if "no ECS service given" in i.ecs]
    assert "replicas 1" in note.outcome
    # the task role has no federated role to go to: a person must act
    (role,) = items(result, "taskDefinition.taskRoleArn")
    assert role.severity == "action" and "system:serviceaccount:mmrv:mmrv-backend" in role.outcome


def test_options_for_the_spec_and_the_platform() -> None:
    outputs = PlatformOutputs(
        environment="staging",
        acr_login_server="mmrvstagingacr.azurecr.io",
        workload_client_ids={"backend": CLIENT_ID},
    )
    opts = options_for(SPEC, "staging", "backend", outputs=outputs, images={f"{ECR}/mmrv-backend:1.4.0": pinned("x")})
    assert (opts.namespace, opts.account, opts.name) == ("mmrv", "mmrv-backend", "mmrv-backend")
    assert opts.key_vault is not None and opts.key_vault.name == "kv-mmrv-staging"
    assert opts.workload_client_id == CLIENT_ID
    assert opts.health_check is not None and opts.health_check.path == "/healthz"
    assert opts.aws_region == "eu-west-1"
    result = translate_ecs(fixture("mmrv-backend-taskdef.json"), fixture("mmrv-backend-service.json"), opts)
    validate_all(result)
    readiness = k8s_container(result, "mmrv-backend")["readinessProbe"]
    assert readiness["httpGet"]["path"] == "/healthz"
    assert result.manifest("Service")["metadata"]["annotations"] == {
        "service.beta.kubernetes.io/azure-load-balancer-health-probe-request-path": "/healthz"
    }
    ingress = options_for(SPEC, "production", "backend", outputs=outputs, expose="Ingress")
    assert ingress.ingress is not None and ingress.ingress.hosts == ["api.mmrv.example.com"]
