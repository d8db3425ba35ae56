"""The spec's per-component `secrets` section: strict validation, and how it reaches the translation."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from migration.errors import SpecError
from migration.spec import validate_spec
from migration.translate import TranslateOptions, options_for, translate_ecs

ROOT = Path(__file__).resolve().parents[2]
BASE: dict[str, Any] = yaml.safe_load((ROOT / "deployments" / "mmrv.yaml").read_text())
TASKDEF = json.loads((ROOT / "tests" / "fixtures" / "ecs" / "mmrv-backend-taskdef.json").read_text())


def with_secrets(section: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    data["components"]["backend"]["secrets"] = section
    return data


def keeping_tags(options: TranslateOptions) -> TranslateOptions:
    return options.model_copy(update={"keep_tags": True})  # no image map needed for names


def problems_of(section: Any) -> list[str]:
    with pytest.raises(SpecError) as info:
        validate_spec(with_secrets(section))
    return info.value.problems


def test_defaults_split_and_no_names() -> None:
    spec = validate_spec(copy.deepcopy(BASE))
    assert spec.components["backend"].secrets.names == {}
    assert spec.components["backend"].secrets.json_keys == "split"


def test_a_valid_section_loads() -> None:
    section = {
        "names": {
            "mmrv/staging/db": "db",
            "mmrv/staging/jwt-signing-key-bT7kLm": "jwt-key",
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:mmrv/staging/third-party-api-key-Qw3eRt": "api-key",
            "/mmrv/staging/flag": "Flag-1",
        },
        "json_keys": "whole",
    }
    secrets = validate_spec(with_secrets(section)).components["backend"].secrets
    assert secrets.names["mmrv/staging/db"] == "db" and secrets.json_keys == "whole"


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        (
            {"names": {"mmrv/staging/db": "db_password"}},
            "components.backend.secrets.names['mmrv/staging/db']: 'db_password' is not allowed: "
            "Key Vault secret names are 1-127 letters, digits and '-'",
        ),
        (
            {"names": {"mmrv/staging/db": "x" * 128}},
            "is not allowed: Key Vault secret names are 1-127 letters, digits and '-'",
        ),
        (
            {"names": {"mmrv/staging/db": ""}},
            "components.backend.secrets.names['mmrv/staging/db']: '' is not allowed: Key Vault secret names are 1-127",
        ),
        (
            {"names": {"has space": "ok"}},
            "components.backend.secrets.names['has space']: 'has space' is not allowed: a Secrets Manager secret name "
            "(with or without its 6-character suffix) or ARN, or an SSM parameter name or ARN",
        ),
        (
            {"json_keys": "both"},
            "components.backend.secrets.json_keys: Input should be 'split' or 'whole' (got 'both')",
        ),
        (
            {"namez": {}},
            "components.backend.secrets.namez: unknown key; allowed keys: names, json_keys",
        ),
        (
            {"names": ["mmrv/staging/db"]},
            "components.backend.secrets.names: Input should be a valid dictionary (got ['mmrv/staging/db'])",
        ),
        (
            {"names": {"mmrv/staging/db": 7}},
            "components.backend.secrets.names['mmrv/staging/db']: Input should be a valid string (got 7)",
        ),
        ("split", "components.backend.secrets: Input should be a valid dictionary or instance of ComponentSecrets"),
    ],
)
def test_bad_secrets_section_names_the_field_and_what_is_allowed(section: Any, expected: str) -> None:
    (problem,) = problems_of(section)
    assert problem.startswith(expected) or expected in problem, problem


def test_options_for_carries_the_spec_names_and_mode_into_the_translation() -> None:
    section = {"names": {"mmrv/staging/db": "db", "mmrv/staging/jwt-signing-key": "jwt-key"}}
    spec = validate_spec(with_secrets(section))
    options = options_for(spec, "staging", "backend")
    assert options.secret_names == section["names"] and options.json_key_secrets == "split"
    names = [c.key_vault_secret for c in translate_ecs(TASKDEF, None, keeping_tags(options)).secrets]
    assert names == ["db-host", "db-password", "db-username", "jwt-key", "mmrv-staging-third-party-api-key"]

    # the caller's names win over the spec's
    override = options_for(spec, "staging", "backend", secret_names={"mmrv/staging/db": "pg"})
    assert override.secret_names["mmrv/staging/db"] == "pg"

    whole = validate_spec(with_secrets({**section, "json_keys": "whole"}))
    copies = translate_ecs(TASKDEF, None, keeping_tags(options_for(whole, "staging", "backend"))).secrets
    db = [c for c in copies if c.key_vault_secret == "db"]
    assert len(db) == 1 and db[0].json_key is None  # one copy of the whole JSON document
