"""Semver ranges for the spec's tag filters: npm's meaning for the operators we accept."""

from __future__ import annotations

import pytest

from migration.semver import SemverError, parse_range, parse_version


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1.4.0", (1, 4, 0, ())), ("v2.0.1", (2, 0, 1, ())), ("1.4.1-rc.1", (1, 4, 1, ("rc", "1")))],
)
def test_versions_parse(text: str, expected: tuple[object, ...]) -> None:
    version = parse_version(text)
    assert version is not None
    assert (version.major, version.minor, version.patch, version.pre) == expected


@pytest.mark.parametrize("text", ["latest", "1.4", "01.2.3", "1.2.3.4", "", "sha256-abc"])
def test_non_versions_are_none(text: str) -> None:
    assert parse_version(text) is None


def test_prerelease_sorts_before_its_release_and_numerically() -> None:
    v = parse_version
    assert v("1.4.1-rc.2") < v("1.4.1-rc.10") < v("1.4.1")  # type: ignore[operator]
    assert v("1.4.1-alpha") < v("1.4.1-beta")  # type: ignore[operator]


@pytest.mark.parametrize(
    ("range_text", "matching", "not_matching"),
    [
        (">=1.3.0", ["1.3.0", "1.4.0", "2.0.0"], ["1.2.9", "latest"]),
        (">=1.3.0 <2.0.0", ["1.3.0", "1.9.9"], ["2.0.0", "1.2.0"]),
        ("^1.4", ["1.4.0", "1.9.0"], ["2.0.0", "1.3.9"]),
        ("^0.2.3", ["0.2.3", "0.2.9"], ["0.3.0"]),
        ("~1.4.0", ["1.4.0", "1.4.7"], ["1.5.0"]),
        ("1.4", ["1.4.0", "1.4.1"], ["1.5.0"]),
        ("=1.2.0 || >=2.0.0", ["1.2.0", "2.1.0"], ["1.3.0"]),
        (">1.2", ["1.3.0"], ["1.2.5"]),
        ("<=1.2", ["1.2.9"], ["1.3.0"]),
        ("v1.4.0", ["1.4.0", "v1.4.0"], ["1.4.1"]),
    ],
)
def test_ranges(range_text: str, matching: list[str], not_matching: list[str]) -> None:
    r = parse_range(range_text)
    assert [t for t in matching if not r.matches(t)] == []
    assert [t for t in not_matching if r.matches(t)] == []


def test_prereleases_match_only_when_the_range_names_one_of_the_same_version() -> None:
    assert not parse_range(">=1.4.0").matches("1.4.1-broken")
    assert parse_range(">=1.4.1-a").matches("1.4.1-broken")
    assert not parse_range(">=1.4.1-a").matches("1.5.0-rc.1")


@pytest.mark.parametrize("text", ["", ">=", "1.x", ">=1.2.3 <abc", "~>1.2", ">=1.2-rc.1"])
def test_bad_ranges_say_what_is_allowed(text: str) -> None:
    with pytest.raises(SemverError):
        parse_range(text)
