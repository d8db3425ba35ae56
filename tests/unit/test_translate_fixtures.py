"""Shared helpers of the translation tests, and checks that the fixtures look like what the AWS CLI prints."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from migration.translate import (
    KeyVault,
    ReportItem,
    TranslateOptions,
    Translation,
    TranslationError,
    translate_ecs,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ecs"
ECR = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
ACR = "mmrvstagingacr.azurecr.io"
DIGEST = "sha256:" + "0123456789abcdef" * 4
TENANT = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
CLIENT_ID = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
K8S_VERSION = "1.30"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def pinned(repository: str) -> str:
    return f"{ACR}/{repository}@{DIGEST}"


def options(**overrides: Any) -> TranslateOptions:
    """MMRV's backend in staging: every ECR image of the fixtures mapped, Key Vault and identity known."""
    values: dict[str, Any] = {
        "namespace": "mmrv",
        "app": "mmrv",
        "component": "backend",
        "environment": "staging",
        "images": {
            f"{ECR}/mmrv-backend:1.4.0": pinned("mmrv-backend"),
            f"{ECR}/mmrv-worker:2.3.1": pinned("mmrv-worker"),
            f"{ECR}/app:1.0": pinned("app"),
        },
        "key_vault": KeyVault(name="kv-mmrv-staging", tenant_id=TENANT),
        "workload_client_id": CLIENT_ID,
    }
    values.update(overrides)
    return TranslateOptions(**values)


def container(name: str = "app", **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": f"{ECR}/app:1.0", "essential": True, **fields}


def task(*containers: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A Fargate task definition (0.5 vCPU, 1 GiB) as describe-task-definition prints it, unwrapped."""
    return {
        "taskDefinitionArn": "arn:aws:ecs:eu-west-1:123456789012:task-definition/app:1",
        "family": "app",
        "revision": 1,
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "512",
        "memory": "1024",
        "containerDefinitions": list(containers) or [container(portMappings=[{"containerPort": 8080}])],
        **fields,
    }


def translate(td: dict[str, Any], service: dict[str, Any] | None = None, **overrides: Any) -> Translation:
    result = translate_ecs(td, service, options(**overrides))
    validate_all(result)
    return result


def problems(td: Any, service: Any = None, **overrides: Any) -> list[str]:
    with pytest.raises(TranslationError) as info:
        translate_ecs(td, service, options(**overrides))
    return info.value.problems


def validate_all(result: Translation) -> None:
    """Every manifest against the Kubernetes 1.30 schemas (strict: no unknown field); the SPC CRD by hand."""
    for manifest in result.manifests:
        if manifest["kind"] == "SecretProviderClass":
            check_secret_provider_class(manifest)
            continue
        try:
            kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            raise AssertionError(
                f"{manifest['kind']} {manifest['metadata']['name']}: {exc.message} at {where}"
            ) from None
        # what the API server checks beyond the schema, and the emulator too
        assert manifest["metadata"]["name"] == manifest["metadata"]["name"].lower()


def check_secret_provider_class(spc: dict[str, Any]) -> None:
    """secrets-store.csi.x-k8s.io/v1 with the Azure provider and workload identity, checked field by field."""
    assert spc["apiVersion"] == "secrets-store.csi.x-k8s.io/v1"
    assert set(spc) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(spc["spec"]) <= {"provider", "parameters", "secretObjects"}
    assert spc["spec"]["provider"] == "azure"
    params = spc["spec"]["parameters"]
    assert all(isinstance(v, str) for v in params.values()), "the CRD's parameters are a map of strings"
    assert params["usePodIdentity"] == "false"
    assert {"clientID", "keyvaultName", "tenantId", "objects"} <= set(params)
    objects = yaml.safe_load(params["objects"])
    assert set(objects) == {"array"}
    names = []
    for entry in objects["array"]:
        assert isinstance(entry, str), "each object is itself a YAML string"
        item = yaml.safe_load(entry)
        assert set(item) <= {"objectName", "objectType", "objectAlias", "objectVersion"}
        assert item["objectType"] == "secret"
        names.append(item["objectName"])
    assert len(names) == len(set(names))
    for synced in spc["spec"]["secretObjects"]:
        assert set(synced) <= {"secretName", "type", "labels", "annotations", "data"}
        assert synced["type"] == "Opaque"
        for item in synced["data"]:
            assert set(item) == {"objectName", "key"}
            assert item["objectName"] in names


def deployment(result: Translation) -> dict[str, Any]:
    return result.manifest("Deployment")


def pod(result: Translation) -> dict[str, Any]:
    return deployment(result)["spec"]["template"]["spec"]


def k8s_container(result: Translation, name: str) -> dict[str, Any]:
    spec = pod(result)
    for c in spec["containers"] + spec.get("initContainers", []):
        if c["name"] == name:
            return c
    raise KeyError(name)


def env_of(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def items(result: Translation, field: str) -> list[ReportItem]:
    """Report items whose field starts with `field`."""
    return [i for i in result.report if i.field.startswith(field)]


# --- the fixtures themselves ------------------------------------------------------------------------


def test_wrapped_and_unwrapped_fixtures_hold_the_same_objects() -> None:
    assert fixture("mmrv-backend-taskdef.json")["taskDefinition"] == fixture("mmrv-backend-taskdef-unwrapped.json")
    assert fixture("mmrv-backend-service.json")["services"][0] == fixture("mmrv-backend-service-unwrapped.json")


def test_fixtures_reference_each_other_as_aws_does() -> None:
    td = fixture("mmrv-backend-taskdef.json")["taskDefinition"]
    service = fixture("mmrv-backend-service.json")["services"][0]
    group = fixture("mmrv-backend-target-group.json")["TargetGroups"][0]
    target = fixture("mmrv-backend-scalable-targets.json")["ScalableTargets"][0]
    assert service["taskDefinition"] == td["taskDefinitionArn"]
    assert service["loadBalancers"][0]["targetGroupArn"] == group["TargetGroupArn"]
    assert target["ResourceId"] == "service/mmrv-staging/" + service["serviceName"]


def test_helpers_translate_a_minimal_task() -> None:
    result = translate(task())
    assert result.kinds() == [
        "Namespace",
        "ServiceAccount",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "NetworkPolicy",
    ]
    # the fixture helpers never change their inputs
    td = task()
    before = copy.deepcopy(td)
    translate(td)
    assert td == before
