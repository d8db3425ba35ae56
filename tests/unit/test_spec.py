"""The migration spec: MMRV's real spec loads; every bad input is a SpecError naming the field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migration.errors import SpecError
from migration.spec import Spec, load_spec, parse_spec, validate_spec

SPEC = Path(__file__).resolve().parents[2] / "deployments" / "mmrv.yaml"
BASE: dict[str, Any] = yaml.safe_load(SPEC.read_text())


def problems_of(data: Any) -> list[str]:
    with pytest.raises(SpecError) as info:
        validate_spec(data)
    return info.value.problems


def mutated(path: str, value: Any) -> dict[str, Any]:
    """A copy of MMRV's spec with the value at a dotted path (ints index lists) replaced."""
    data = copy.deepcopy(BASE)
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    node: Any = data
    for part in parents:
        node = node[part]
    node[last] = value
    return data


def test_mmrv_spec_loads_with_staging_first() -> None:
    spec = load_spec(SPEC)
    assert isinstance(spec, Spec)
    assert [e.name for e in spec.environments] == ["staging", "production"]
    assert spec.environment("production").azure.acr.sku == "Premium"
    assert spec.environment("staging").aws.backend is not None
    assert spec.environment("staging").aws.backend.ecs_service == "mmrv-backend"
    assert spec.cutover.weight_steps == [10, 50, 100]
    assert [e.name for e in spec.select("all")] == ["staging", "production"]


def test_unknown_key_names_path_and_allowed_keys() -> None:
    (problem,) = problems_of(mutated("environments.0.azure.acrr", {"name": "x"}))
    assert problem.startswith("environments[0].azure.acrr: unknown key")
    assert "allowed keys: subscription_id, tenant_id, location, resource_group, acr, aks" in problem


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("environments.0.azure.acr.name", "mmrv-acr", "ACR names are 5-50 letters and digits only"),
        ("environments.0.azure.acr.name", "abcd", "ACR names are 5-50"),
        ("environments.0.azure.acr.sku", "Gold", "'Basic', 'Standard' or 'Premium'"),
        ("environments.1.azure.aks.name", "-aks", "AKS names are 1-63"),
        ("environments.0.azure.aks.kubernetes_version", 1.3, "valid string"),
        ("environments.0.azure.aks.kubernetes_version", "latest", "Kubernetes version"),
        ("environments.0.azure.aks.node_pools.0.name", "System_Pool", "node pool names"),
        ("environments.0.azure.key_vault.name", "kv--mmrv", "no consecutive hyphens"),
        ("environments.0.azure.key_vault.name", "1kv", "Key Vault names are 3-24"),
        ("environments.0.azure.subscription_id", "not-a-guid", "GUID"),
        ("environments.0.azure.location", "West Europe", "Azure region name"),
        ("environments.0.azure.resource_group", "rg.", "cannot end with '.'"),
        ("environments.0.dns.records.0.name", "api.other.com", "not inside zone"),
        ("components.backend.port", 70000, "less than or equal to 65535"),
        ("components.backend.health_check_path", "healthz", "starting with '/'"),
        ("components.backend.smoke_checks.0.name", "Health Check", "DNS-1123 label"),
        ("cutover.weight_steps", [50, 10, 100], "increase strictly and end at 100"),
        ("cutover.weight_steps", [10, 50], "end at 100"),
        ("cutover.error_budget", 2.0, "less than or equal to 1"),
        ("approvals.approvers", [], "at least 1 item"),
        ("aws.account_id", 123456789012, "valid string"),
        ("aws.region", "eu_west_1", "AWS region"),
        ("name", "MMRV", "DNS-1123 label"),
        ("environments.1.azure.firewall", {"enabled": True}, "firewall.name is required"),
        ("environments.1.azure.firewall.vnet_address_space", "10.0.0.1/16", "CIDR"),
    ],
)
def test_bad_values_name_the_field_and_what_is_allowed(path: str, value: Any, expected: str) -> None:
    problems = problems_of(mutated(path, value))
    assert len(problems) == 1, problems
    rendered_path = path.split(".")
    first = rendered_path[0]
    assert problems[0].startswith(first), problems
    assert expected in problems[0], problems


def test_production_before_staging_is_rejected() -> None:
    data = copy.deepcopy(BASE)
    data["environments"].reverse()
    (problem,) = problems_of(data)
    assert "staging must come before production" in problem


def test_missing_environment_is_rejected() -> None:
    data = copy.deepcopy(BASE)
    data["environments"] = data["environments"][:1]
    (problem,) = problems_of(data)
    assert "missing: production" in problem


def test_missing_required_field() -> None:
    data = copy.deepcopy(BASE)
    del data["environments"][1]["azure"]["key_vault"]
    assert problems_of(data) == ["environments[1].azure.key_vault: required, but missing"]


def test_every_problem_is_reported_at_once() -> None:
    data = mutated("environments.0.azure.acr.name", "x")
    data["components"]["backend"]["prot"] = 1
    data["environments"][1]["azure"]["aks"]["kubernetes_version"] = "v1"
    assert len(problems_of(data)) == 3


def test_yaml_syntax_error_names_line() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec("name: mmrv\ncomponents: [\n")
    assert "line 3" in info.value.problems[0] and "not valid YAML" in info.value.problems[0]


def test_missing_file_and_non_mapping() -> None:
    with pytest.raises(SpecError, match="file not found"):
        load_spec("/nonexistent/spec.yaml")
    with pytest.raises(SpecError, match="must be a mapping"):
        parse_spec("- a\n- b\n")


def test_unknown_environment_lookup_lists_allowed() -> None:
    spec = load_spec(SPEC)
    with pytest.raises(SpecError, match="allowed: staging, production"):
        spec.environment("qa")


def test_spec_is_immutable() -> None:
    spec = load_spec(SPEC)
    with pytest.raises(Exception, match="frozen"):
        spec.name = "other"  # type: ignore[misc]


# --- generated bad input: never anything but SpecError ------------------------------------

json_leaves = (
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats(allow_nan=True) | st.text(max_size=30)
)
json_values = st.recursive(
    json_leaves,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, child in node.items():
            out += _paths(child, (*prefix, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            out += _paths(child, (*prefix, index))
    return out


ALL_PATHS = _paths(BASE)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(ALL_PATHS), value=json_values, delete=st.booleans())
def test_generated_mutations_raise_only_spec_errors(path: tuple[Any, ...], value: Any, delete: bool) -> None:
    data = copy.deepcopy(BASE)
    node: Any = data
    for part in path[:-1]:
        node = node[part]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    try:
        validate_spec(data)
    except SpecError as exc:
        assert exc.problems, "a SpecError always carries at least one problem"
        for problem in exc.problems:
            assert ":" in problem and "\n" not in problem


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200))
def test_arbitrary_text_raises_only_spec_errors(text: str) -> None:
    try:
        parse_spec(text)
    except SpecError:
        pass


# --- images (issue 4) -----------------------------------------------------------------------


def test_images_section_defaults() -> None:
    spec = load_spec(SPEC)
    assert spec.images.strategy == "import"
    assert spec.images.select == "referenced"
    assert spec.images.revisions == 2
    assert spec.images.tags.regex == [] and spec.images.tags.semver is None
    assert spec.images.allow_digest_change is False
    assert spec.images.fallback_to_copy is True
    assert spec.images.parallelism == 4


def test_images_section_accepts_filters_and_strategy() -> None:
    data = copy.deepcopy(BASE)
    data["images"] = {
        "strategy": "copy",
        "revisions": 0,
        "select": "all",
        "tags": {"regex": [r"1\.4\..*", "stable"], "semver": ">=1.3.0 <2.0.0"},
        "allow_digest_change": True,
        "parallelism": 8,
    }
    images = validate_spec(data).images
    assert (images.strategy, images.revisions, images.select, images.parallelism) == ("copy", 0, "all", 8)
    assert images.tags.regex == [r"1\.4\..*", "stable"] and images.tags.semver == ">=1.3.0 <2.0.0"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"strategy": "rsync"}, "images.strategy: Input should be 'import', 'copy' or 'docker' (got 'rsync')"),
        ({"revisions": -1}, "images.revisions: Input should be greater than or equal to 0"),
        ({"parallelism": 0}, "images.parallelism: Input should be greater than or equal to 1"),
        ({"tags": {"regex": ["1.4.("]}}, "images.tags.regex[0]: '1.4.(' is not a regular expression"),
        ({"tags": {"semver": ">=1.x"}}, "images.tags.semver: '1.x' is not a version"),
        ({"tags": {"semvar": "^1"}}, "images.tags.semvar: unknown key; allowed keys: regex, semver"),
        ({"select": "some"}, "images.select: Input should be 'referenced' or 'all' (got 'some')"),
    ],
)
def test_bad_images_section_names_the_field(value: dict[str, Any], expected: str) -> None:
    data = copy.deepcopy(BASE)
    data["images"] = value
    (problem,) = problems_of(data)
    assert problem.startswith(expected), problem


def test_odd_keys_are_quoted_so_each_problem_stays_on_one_line() -> None:
    data = mutated("components.frontend.smoke_checks", [{"\n": None}])
    problems = problems_of(data)
    assert "components.frontend.smoke_checks[0]['\\n']: unknown key" in problems[-1]
    assert all("\n" not in p for p in problems)
