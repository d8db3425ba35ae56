"""Input the translation cannot use: every problem at once, one line each, naming the field path."""

from __future__ import annotations

from typing import Any

import pytest

from migration.errors import InputError
from migration.translate import TranslationError, options_from_flags, translate_ecs, unwrap_task_definition
from tests.unit.test_translate_fixtures import container, fixture, options, problems, task


def test_broken_fixture_lists_every_problem_with_its_path() -> None:
    assert problems(fixture("broken-taskdef.json")) == [
        "taskDefinition.memory: 4096 MiB does not go with cpu 256 on Fargate; "
        "allowed with cpu 256: 512, 1024, 2048 (MiB)",
        "taskDefinition.containerDefinitions[0].portMappings[0].containerPort: 70000 is above the maximum 65535",
        'taskDefinition.containerDefinitions[0].healthCheck.command: must start with "CMD" or "CMD-SHELL" '
        "(or be [\"NONE\"]), got 'curl'",
        "taskDefinition.containerDefinitions[1].cpu: must be a whole number, got a string 'lots'",
        "taskDefinition.containerDefinitions[0].dependsOn[0].containerName: "
        "no container named 'migrations' in the task",
    ]


def test_translation_error_is_an_input_error_with_a_header() -> None:
    with pytest.raises(TranslationError) as info:
        translate_ecs(fixture("broken-taskdef.json"), None, options())
    assert isinstance(info.value, InputError) and info.value.exit_code == 2
    lines = str(info.value).splitlines()
    assert lines[0] == "ECS task definition mmrv-broken: cannot translate, 5 problems"
    assert all(line.startswith("  - taskDefinition.") for line in lines[1:])


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "(top level): expected a JSON object, got list"),
        ({"family": "x"}, "(top level): not an ECS task definition"),
        ({"taskDefinition": "x"}, "taskDefinition: must be an object"),
    ],
)
def test_not_a_task_definition(doc: Any, message: str) -> None:
    with pytest.raises(TranslationError) as info:
        unwrap_task_definition(doc)
    assert info.value.problems[0].startswith(message)


@pytest.mark.parametrize(
    ("td", "expected"),
    [
        (task(containerDefinitions=[]), ["taskDefinition.containerDefinitions: needs at least one container"]),
        (
            task(containerDefinitions={"name": "x"}),
            ["taskDefinition.containerDefinitions: must be a list, got an object"],
        ),
        (task(containerDefinitions=["x"]), ["taskDefinition.containerDefinitions[0]: must be an object, got a string"]),
        (
            task(container(essential="yes", portMappings=[{"containerPort": "http"}])),
            [
                "taskDefinition.containerDefinitions[0].essential: must be true or false, got a string 'yes'",
                "taskDefinition.containerDefinitions[0].portMappings[0].containerPort: must be a whole number, "
                "got a string 'http'",
            ],
        ),
        (
            task(container(environment=[["A", "1"]], secrets={"A": "x"})),
            [
                "taskDefinition.containerDefinitions[0].environment[0]: must be an object, got a list",
                "taskDefinition.containerDefinitions[0].secrets: must be a list, got an object",
            ],
        ),
        (
            task(container(), container()),
            ["taskDefinition.containerDefinitions[1].name: 'app' is used by another container too"],
        ),
        (task({"image": "x"}), ["taskDefinition.containerDefinitions[0].name: required, but missing"]),
        (
            task(container(portMappings=[{"containerPort": 80, "protocol": "sctp"}])),
            [
                "taskDefinition.containerDefinitions[0].portMappings[0].protocol: "
                "'sctp' is not allowed; allowed: tcp, udp"
            ],
        ),
    ],
)
def test_wrong_shapes_name_the_field(td: dict[str, Any], expected: list[str]) -> None:
    assert problems(td) == expected


def test_problems_in_task_and_service_come_together() -> None:
    svc = {"serviceName": "x", "desiredCount": -1, "deploymentConfiguration": {"maximumPercent": 50}}
    assert problems(task(cpu="300"), svc) == [
        "taskDefinition.cpu: 300 CPU units is not a Fargate task size; allowed: 256 (0.25 vCPU), 512 (0.5 vCPU), "
        "1024 (1 vCPU), 2048 (2 vCPU), 4096 (4 vCPU), 8192 (8 vCPU), 16384 (16 vCPU)",
        "service.desiredCount: -1 is below the minimum 0",
        "service.deploymentConfiguration.maximumPercent: 50 is below the minimum 100",
    ]


def flags(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "namespace": None, "app": "mmrv", "component": "backend", "image_map": [], "keep_tags": False, "acr": None,
        "key_vault": None, "tenant_id": None, "client_id": None, "secret_map": [], "json_keys": "split",
        "env_files": "configmap", "ingress_hosts": [], "ingress_class": None, "tls_secret": None,
        "health_check": None, "autoscaling": None, "aws_role_arn": None, "aws_region": None, "rollout_deadline": 600,
    }  # fmt: skip
    values.update(overrides)
    return values


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"image_map": ["no-equals-sign"]}, "--image-map 'no-equals-sign': write FROM=TO"),
        ({"image_map": ["a:1=registry/a:1"]}, "--image-map (a:1): 'registry/a:1' is not pinned by digest"),
        ({"key_vault": "kv-mmrv"}, "--key-vault and --tenant-id go together"),
        ({"key_vault": "kv--x", "tenant_id": "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"}, "--key-vault/--tenant-id (name)"),
        ({"client_id": "not-a-guid"}, "--client-id: 'not-a-guid' is not allowed: a GUID"),
        ({"component": "Back_End"}, "--component: 'Back_End' is not allowed: a DNS-1123 label"),
        ({"json_keys": "some"}, "--json-keys: Input should be 'split' or 'whole'"),
        ({"aws_role_arn": "role/x"}, "--aws-role-arn: 'role/x' is not an IAM role ARN"),
        ({"secret_map": ["a=bad name"]}, "--secret-map: a='bad name': not a Key Vault secret name"),
        ({"rollout_deadline": 5}, "--rollout-deadline: Input should be greater than or equal to 30"),
    ],
)
def test_bad_flags_name_the_flag(overrides: dict[str, Any], expected: str) -> None:
    with pytest.raises(TranslationError) as info:
        options_from_flags(**flags(**overrides))
    assert any(p.startswith(expected) for p in info.value.problems), info.value.problems


def test_options_check_labels() -> None:
    with pytest.raises(ValueError, match="not a label value"):
        options(labels={"team": "platform team"})
    with pytest.raises(ValueError, match="not a label key"):
        options(labels={"bad key": "x"})
    with pytest.raises(ValueError, match="not a label value"):
        options(environment="staging/eu")
    assert options(labels={"example.com/team": "platform"}).labels == {"example.com/team": "platform"}


def test_good_flags() -> None:
    opts = options_from_flags(
        **flags(
            namespace="apps",
            image_map=["a:1=registry/a@sha256:" + "f" * 64],
            key_vault="kv-mmrv",
            tenant_id="0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
            ingress_hosts=["api.example.com"],
            ingress_class="nginx",
        )
    )
    assert (opts.namespace, opts.expose, opts.images) == ("apps", "Ingress", {"a:1": "registry/a@sha256:" + "f" * 64})
    assert opts.ingress is not None and opts.ingress.class_name == "nginx"
    assert options_from_flags(**flags()).namespace == "mmrv"
