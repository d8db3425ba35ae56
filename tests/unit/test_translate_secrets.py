"""ECS secrets -> Key Vault secrets, the SecretProviderClass and the synced Secret; names only, ever."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from migration.translate.secrets import SecretRef, objects_parameter, parse_value_from
from tests.unit.test_translate_fixtures import (
    container,
    env_of,
    items,
    k8s_container,
    problems,
    task,
    translate,
)

SM = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:"
DB = SM + "mmrv/staging/db-Xr4pQz"


def with_secrets(*secrets: tuple[str, str], **extra: Any) -> dict[str, Any]:
    return task(container(secrets=[{"name": n, "valueFrom": v} for n, v in secrets], **extra))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (DB, ("secretsmanager", DB, "mmrv/staging/db", None, None, None)),
        (f"{DB}:password::", ("secretsmanager", DB, "mmrv/staging/db", "password", None, None)),
        (f"{DB}:password:AWSPREVIOUS:", ("secretsmanager", DB, "mmrv/staging/db", "password", "AWSPREVIOUS", None)),
        (f"{DB}::AWSCURRENT:", ("secretsmanager", DB, "mmrv/staging/db", None, "AWSCURRENT", None)),
        (f"{DB}:::0123-abcd", ("secretsmanager", DB, "mmrv/staging/db", None, None, "0123-abcd")),
        (
            "arn:aws:ssm:eu-west-1:123456789012:parameter/mmrv/staging/broker-url",
            (
                "ssm",
                "arn:aws:ssm:eu-west-1:123456789012:parameter/mmrv/staging/broker-url",
                "/mmrv/staging/broker-url",
                None,
                None,
                None,
            ),
        ),
        (
            "arn:aws:ssm:eu-west-1:123456789012:parameter/flat-name",
            ("ssm", "arn:aws:ssm:eu-west-1:123456789012:parameter/flat-name", "flat-name", None, None, None),
        ),
        ("/mmrv/staging/flag", ("ssm", "/mmrv/staging/flag", "/mmrv/staging/flag", None, None, None)),
    ],
)
def test_value_from_references(value: str, expected: tuple[Any, ...]) -> None:
    ref = parse_value_from(value)
    assert isinstance(ref, SecretRef)
    assert (ref.service, ref.source, ref.name, ref.json_key, ref.version_stage, ref.version_id) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("arn:aws:s3:::bucket/key", "not a Secrets Manager or SSM Parameter Store ARN"),
        ("arn:aws:secretsmanager:eu-west-1:123456789012:secret:", "not a Secrets Manager secret ARN"),
        (f"{DB}:key:AWSCURRENT:0123", "both a version stage and a version id"),
        (f"{DB}:a:b:c:d", "too many ':' parts"),
        ("has spaces in it", "neither an ARN nor an SSM parameter name"),
    ],
)
def test_bad_references_name_the_field(value: str, message: str) -> None:
    (problem,) = problems(with_secrets(("X", value)))
    assert problem.startswith("taskDefinition.containerDefinitions[0].secrets[0].valueFrom: ")
    assert message in problem


def test_json_keys_split_into_their_own_key_vault_secrets() -> None:
    result = translate(with_secrets(("DB_USER", f"{DB}:username::"), ("DB_PASSWORD", f"{DB}:password::"), ("DB", DB)))
    env = env_of(k8s_container(result, "app"))
    assert env["DB_USER"]["secretKeyRef"]["key"] == "mmrv-staging-db-username"
    assert env["DB_PASSWORD"]["secretKeyRef"]["key"] == "mmrv-staging-db-password"
    assert env["DB"]["secretKeyRef"]["key"] == "mmrv-staging-db"
    copies = {(s.key_vault_secret, s.json_key) for s in result.secrets}
    assert copies == {
        ("mmrv-staging-db-username", "username"),
        ("mmrv-staging-db-password", "password"),
        ("mmrv-staging-db", None),
    }
    assert {s.source for s in result.secrets} == {DB}


def test_json_keys_whole_read_the_json_document() -> None:
    result = translate(
        with_secrets(("DB_USER", f"{DB}:username::"), ("DB_PASSWORD", f"{DB}:password::")), json_key_secrets="whole"
    )
    env = env_of(k8s_container(result, "app"))
    assert env["DB_USER"]["secretKeyRef"]["key"] == env["DB_PASSWORD"]["secretKeyRef"]["key"] == "mmrv-staging-db"
    (copy,) = result.secrets
    assert (copy.key_vault_secret, copy.json_key, copy.env) == (
        "mmrv-staging-db",
        None,
        ["app/DB_USER", "app/DB_PASSWORD"],
    )
    warnings = [i for i in items(result, "taskDefinition.containerDefinitions[0].secrets") if i.severity == "warning"]
    assert len(warnings) == 2 and all("whole JSON document" in w.outcome for w in warnings)


@pytest.mark.parametrize("key", [DB, "mmrv/staging/db-Xr4pQz", "mmrv/staging/db"])
def test_names_from_the_mapping_by_arn_or_name(key: str) -> None:
    result = translate(with_secrets(("DB_PASSWORD", f"{DB}:password::"), ("DB", DB)), secret_names={key: "db"})
    assert {s.key_vault_secret for s in result.secrets} == {"db", "db-password"}


def test_an_exact_value_from_names_its_own_secret() -> None:
    result = translate(with_secrets(("P", f"{DB}:password::")), secret_names={f"{DB}:password::": "pg-password"})
    assert [s.key_vault_secret for s in result.secrets] == ["pg-password"]
    assert not items(result, "options.secret_names")  # nothing derived


def test_two_sources_on_one_key_vault_name_is_an_error() -> None:
    other = SM + "other/db-Ab12Cd"
    (problem,) = problems(with_secrets(("A", DB), ("B", other)), secret_names={DB: "db", other: "db"})
    assert problem.startswith("taskDefinition.containerDefinitions[0].secrets[1].valueFrom: ")
    assert "would both become Key Vault secret 'db'" in problem


def test_versions_and_ssm_are_reported() -> None:
    result = translate(
        with_secrets(
            ("OLD", f"{DB}:password:AWSPREVIOUS:"),
            ("FLAG", "arn:aws:ssm:eu-west-1:123456789012:parameter/mmrv/flag"),
        )
    )
    (old, ssm) = sorted(result.secrets, key=lambda s: s.source_service)
    assert (old.version_stage, old.key_vault_secret) == ("AWSPREVIOUS", "mmrv-staging-db-password")
    assert (ssm.source_service, ssm.key_vault_secret) == ("ssm", "mmrv-flag")
    texts = [i.ecs for i in items(result, "taskDefinition.containerDefinitions[0].secrets")]
    assert any("version AWSPREVIOUS" in t for t in texts)
    assert any("SSM parameter /mmrv/flag" in t for t in texts)


def test_secret_provider_class_shape() -> None:
    result = translate(with_secrets(("A", DB), ("B", f"{DB}:password::")))
    spc = result.manifest("SecretProviderClass")
    assert spc["metadata"] == {
        "name": "mmrv-backend-keyvault",
        "namespace": "mmrv",
        "labels": result.manifest("Deployment")["metadata"]["labels"],
    }
    objects = [yaml.safe_load(o) for o in yaml.safe_load(spc["spec"]["parameters"]["objects"])["array"]]
    assert objects == [
        {"objectName": "mmrv-staging-db", "objectType": "secret"},
        {"objectName": "mmrv-staging-db-password", "objectType": "secret"},
    ]
    assert spc["spec"]["secretObjects"][0]["data"] == [
        {"objectName": "mmrv-staging-db", "key": "mmrv-staging-db"},
        {"objectName": "mmrv-staging-db-password", "key": "mmrv-staging-db-password"},
    ]


def test_objects_parameter_quotes_names_yaml_would_misread() -> None:
    parsed = [yaml.safe_load(o) for o in yaml.safe_load(objects_parameter(["no", "123", "true"]))["array"]]
    assert [o["objectName"] for o in parsed] == ["no", "123", "true"]


def test_without_key_vault_or_identity_placeholders_and_actions() -> None:
    result = translate(with_secrets(("A", DB)), key_vault=None, workload_client_id=None)
    params = result.manifest("SecretProviderClass")["spec"]["parameters"]
    assert params["keyvaultName"] == "<key-vault-name>"
    assert params["clientID"] == "<workload-identity-client-id>"
    annotations = result.manifest("ServiceAccount")["metadata"]["annotations"]
    assert annotations == {"azure.workload.identity/client-id": "<workload-identity-client-id>"}
    actions = {i.field for i in result.report if i.severity == "action"}
    assert {"options.key_vault", "options.workload_client_id"} <= actions


def test_no_secret_no_provider_class() -> None:
    result = translate(task())
    assert "SecretProviderClass" not in result.kinds()
    assert all(
        v["name"] != "secrets-store"
        for v in result.manifest("Deployment")["spec"]["template"]["spec"].get("volumes", [])
    )
    assert result.secrets == []


def test_secret_values_never_appear() -> None:
    """Only references travel: the translation has no way to see a value, and its outputs hold names only."""
    result = translate(with_secrets(("DB_PASSWORD", f"{DB}:password::")))
    dumped = json.dumps([result.model_dump()])
    assert "secretKeyRef" in dumped and "Xr4pQz" in dumped  # the ARN, yes
    assert '"value": "' not in json.dumps(k8s_container(result, "app")["env"])
