"""The secrets phase's pure part: JSON keys, fingerprints, the plan and the report. Names only, ever."""

from __future__ import annotations

import json
import pickle

import pytest

from migration.errors import PermanentError
from migration.secrets import (
    MAX_VALUE_BYTES,
    ObservedSecret,
    SecretContentError,
    SecretsReport,
    SecretValue,
    VaultSecret,
    check_value,
    dry_run_report,
    extract_json_key,
    fingerprint,
    plan_secrets,
    result_for,
    source_label,
    source_name,
    vault_tags,
)
from migration.translate.model import SecretCopy

DB = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:mmrv/staging/db-Xr4pQz"
JWT = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:mmrv/staging/jwt-signing-key-AbCdEf"
PASSWORD = "correct-horse-battery-staple-42"
DOCUMENT = json.dumps({"host": "db.internal", "port": 5432, "password": PASSWORD, "opts": {"ssl": True}})
MANAGED = {"managed-by": "mmrv-migrate", "source": "secretsmanager:mmrv/staging/db:password"}


def copy(name: str, source: str = DB, json_key: str | None = None, **extra: object) -> SecretCopy:
    return SecretCopy(key_vault_secret=name, source_service="secretsmanager", source=source, json_key=json_key, **extra)


def observed(value: str, vault_value: str | None, tags: dict[str, str] | None = None) -> ObservedSecret:
    vault = (
        None if vault_value is None else VaultSecret(fingerprint(vault_value), dict(MANAGED if tags is None else tags))
    )
    return ObservedSecret(source=fingerprint(value), vault=vault)


# --- values --------------------------------------------------------------------------------------


def test_a_value_never_shows_and_never_pickles() -> None:
    value = SecretValue(PASSWORD)
    assert PASSWORD not in repr(value) and PASSWORD not in str(value) and PASSWORD not in f"{value}"
    assert PASSWORD not in repr([value, {"v": value}])
    with pytest.raises(TypeError, match="never pickled"):
        pickle.dumps(value)
    assert value.reveal() == PASSWORD
    assert value == SecretValue(PASSWORD) and value != SecretValue(PASSWORD + "x")


def test_fingerprints_are_sha256_of_the_utf8_bytes() -> None:
    assert fingerprint("abc") == "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert fingerprint(SecretValue("abc")) == fingerprint("abc")
    assert fingerprint("é") != fingerprint("e")


@pytest.mark.parametrize(
    ("key", "expected"),
    [("password", PASSWORD), ("host", "db.internal"), ("port", "5432"), ("opts", '{"ssl":true}')],
)
def test_a_json_key_is_extracted_as_ecs_injects_it(key: str, expected: str) -> None:
    assert extract_json_key(SecretValue(DOCUMENT), key, source="mmrv/staging/db").reveal() == expected


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        (PASSWORD, "password", "the secret is not a JSON document"),
        (json.dumps([PASSWORD]), "password", "the secret's JSON is a list, not an object"),
        (json.dumps(PASSWORD), "password", "the secret's JSON is a string, not an object"),
        (DOCUMENT, "pasword", "has no key 'pasword' (it has 4 key(s): 'host', 'opts', 'password', 'port')"),
        (json.dumps({"password": None}), "password", "JSON key 'password' is null"),
        ('{"password": "' + PASSWORD + '", ', "password", "not a JSON document"),
    ],
)
def test_a_json_key_error_names_the_secret_and_key_never_the_value(text: str, key: str, expected: str) -> None:
    with pytest.raises(SecretContentError) as info:
        extract_json_key(SecretValue(text), key, source="mmrv/staging/db")
    message = str(info.value)
    assert expected in message and "mmrv/staging/db" in message
    assert PASSWORD not in message and PASSWORD[:8] not in message
    assert info.value.__cause__ is None and info.value.__context__ is None  # no decoder error holding the text
    assert isinstance(info.value, PermanentError)  # retrying will not help


def test_values_key_vault_cannot_hold_are_refused_by_size_not_shown() -> None:
    with pytest.raises(SecretContentError, match="is empty"):
        check_value(SecretValue(""), key_vault_secret="db-password", source="mmrv/staging/db:password")
    big = "x" * (MAX_VALUE_BYTES + 1)
    with pytest.raises(SecretContentError, match=f"is {MAX_VALUE_BYTES + 1} bytes") as info:
        check_value(SecretValue(big), key_vault_secret="db-password", source="mmrv/staging/db")
    assert big not in str(info.value)
    check_value(SecretValue("x" * MAX_VALUE_BYTES), key_vault_secret="db-password", source="mmrv/staging/db")


# --- names ---------------------------------------------------------------------------------------


def test_sources_are_named_without_arn_or_suffix() -> None:
    assert source_name(copy("db-password", json_key="password")) == "mmrv/staging/db"
    assert source_label(copy("db-password", json_key="password")) == "mmrv/staging/db:password"
    assert source_label(copy("jwt", JWT, version_stage="AWSPREVIOUS")) == "mmrv/staging/jwt-signing-key (AWSPREVIOUS)"
    ssm = SecretCopy(key_vault_secret="flag", source_service="ssm", source="/mmrv/staging/flag")
    assert source_name(ssm) == "/mmrv/staging/flag"
    assert vault_tags(copy("db-password", json_key="password"), "mmrv") == {
        "managed-by": "mmrv-migrate",
        "source": "secretsmanager:mmrv/staging/db:password",
        "mmrv-migrate/spec": "mmrv",
    }


# --- the plan ------------------------------------------------------------------------------------


def test_plan_creates_updates_and_leaves_alone_by_hash() -> None:
    copies = [copy("db-password", json_key="password"), copy("db-host", json_key="host"), copy("jwt", JWT)]
    plan = plan_secrets(
        "staging",
        copies,
        {
            "db-password": observed(PASSWORD, None),
            "db-host": observed("db.internal", "db.internal"),
            "jwt": observed("new-key", "old-key"),
        },
        vault="kv-mmrv-staging",
    )
    assert plan.phase == "secrets" and plan.environment == "staging"
    assert [(a.kind, a.resource) for a in plan.actions] == [
        ("noop", "kv-mmrv-staging/secrets/db-host"),
        ("create", "kv-mmrv-staging/secrets/db-password"),
        ("update", "kv-mmrv-staging/secrets/jwt"),
    ]
    assert all(a.resource_type == "Microsoft.KeyVault/vaults/secrets" for a in plan.actions)
    assert plan.summary() == "secrets [staging]: 1 to create, 1 to update, 0 to delete, 1 unchanged"
    assert "mmrv/staging/db:password" in plan.actions[1].reason


def test_a_secret_missing_from_observed_is_a_create() -> None:
    plan = plan_secrets("staging", [copy("db-password", json_key="password")], {})
    assert [(a.kind, a.resource) for a in plan.actions] == [("create", "db-password")]


def test_the_plan_holds_names_and_the_source_never_a_value_or_a_hash() -> None:
    copies = [copy("db-password", json_key="password"), copy("jwt", JWT)]
    plan = plan_secrets(
        "staging",
        copies,
        {"db-password": observed(PASSWORD, "old"), "jwt": observed("k", None)},
        vault="kv-mmrv-staging",
    )
    dumped = plan.model_dump_json() + json.dumps(plan.to_json_dict()) + plan.render_markdown(include_noop=True)
    for forbidden in (PASSWORD, "old", fingerprint(PASSWORD), fingerprint("old"), fingerprint("k")[7:], "sha256"):
        assert forbidden not in dumped
    assert plan.actions[0].desired == {
        "key_vault_secret": "db-password",
        "source_service": "secretsmanager",
        "source": DB,
        "json_key": "password",
        "version_stage": None,
        "version_id": None,
    }
    assert repr(observed(PASSWORD, "old")).count("sha256") == 0  # fingerprints stay out of reprs too


def test_a_differing_secret_the_tool_does_not_own_is_blocked() -> None:
    plan = plan_secrets("staging", [copy("jwt", JWT)], {"jwt": observed("ours", "theirs", tags={"team": "x"})})
    (action,) = plan.actions
    assert action.kind == "blocked" and "not managed by mmrv-migrate" in action.reason
    assert not plan.is_empty
    dry = dry_run_report("staging", "kv-mmrv-staging", [copy("jwt", JWT)], plan)
    assert [(r.status, r.verified) for r in dry.secrets] == [("blocked", False)]  # the drift check sees it
    same = plan_secrets("staging", [copy("jwt", JWT)], {"jwt": observed("same", "same", tags={})})
    assert same.is_empty  # the same value: nothing to change, whoever owns it


def test_two_sources_for_one_key_vault_name_are_refused_and_duplicates_collapse() -> None:
    with pytest.raises(SecretContentError, match="would hold both mmrv/staging/db:password and mmrv/staging/db:host"):
        plan_secrets("staging", [copy("db", json_key="password"), copy("DB", json_key="host")], {})
    plan = plan_secrets("staging", [copy("db", json_key="password"), copy("db", json_key="password")], {})
    assert len(plan.actions) == 1


# --- the report ----------------------------------------------------------------------------------


def test_report_summary_markdown_and_json_hold_names_only() -> None:
    copies = [copy("db-password", json_key="password"), copy("jwt", JWT)]
    report = SecretsReport(
        environment="staging",
        vault="kv-mmrv-staging",
        secrets=[result_for(copies[0], "created", True), result_for(copies[1], "unchanged", True)],
    )
    assert report.summary() == "secrets [staging]: 1 created, 1 unchanged, 2/2 verified"
    markdown = report.render_markdown()
    assert "| `db-password` | secretsmanager: `mmrv/staging/db` key `password` | created | yes |" in markdown
    assert set(json.loads(report.model_dump_json())["secrets"][0]) == {
        "name",
        "source",
        "source_service",
        "json_key",
        "status",
        "verified",
    }
    assert report.all_verified


def test_dry_run_report_says_what_would_happen() -> None:
    copies = [copy("db-password", json_key="password"), copy("jwt", JWT), copy("db-host", json_key="host")]
    plan = plan_secrets(
        "staging",
        copies,
        {
            "db-password": observed(PASSWORD, None),
            "jwt": observed("a", "b"),
            "db-host": observed("h", "h"),
        },
    )
    report = dry_run_report("staging", "kv-mmrv-staging", copies, plan)
    assert report.dry_run
    assert {r.name: (r.status, r.verified) for r in report.secrets} == {
        "db-password": ("would-create", False),
        "jwt": ("would-update", False),
        "db-host": ("unchanged", True),
    }
    assert report.summary() == "secrets [staging] (dry run): 1 unchanged, 1 would create, 1 would update"
    assert "| `db-password` | secretsmanager: `mmrv/staging/db` key `password` | would-create | - |" in (
        report.render_markdown()
    )
