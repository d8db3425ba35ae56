"""Semantic versions and ranges, for the spec's image tag filters (`images.tags.semver`).

A small, strict subset of the npm range grammar, enough to say which release tags to carry:

    range       := set ( "||" set )*          any set matches
    set         := comparator ( " " comparator )*   every comparator matches
    comparator  := [ ">=" | ">" | "<=" | "<" | "=" | "^" | "~" ] version
    version     := [ "v" ] MAJOR [ "." MINOR [ "." PATCH ] ] [ "-" PRERELEASE ]

`^1.2.3` is `>=1.2.3 <2.0.0` (`^0.2.3` is `>=0.2.3 <0.3.0`), `~1.2.3` is `>=1.2.3 <1.3.0`,
a partial version compares as if zero-filled (`>=1.2` is `>=1.2.0`; `=1.2` and a bare `1.2`
mean `~1.2.0`). Tags that are not versions never match. A pre-release tag (`1.4.1-rc.1`,
`1.4.1-broken`) matches only a set in which some comparator names a pre-release of the
same MAJOR.MINOR.PATCH, as npm does: a range over releases does not pick up candidates.
Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

_VERSION = re.compile(
    r"v?(?P<major>0|[1-9]\d*)(?:\.(?P<minor>0|[1-9]\d*)(?:\.(?P<patch>0|[1-9]\d*))?)?"
    r"(?:-(?P<pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
)
_COMPARATOR = re.compile(r"(?P<op>>=|<=|>|<|=|\^|~)?\s*(?P<version>\S+)")


class SemverError(ValueError):
    """A version or a range that does not parse; the message says what is allowed."""


@total_ordering
@dataclass(frozen=True)
class Version:
    major: int
    minor: int
    patch: int
    pre: tuple[str, ...] = ()

    @property
    def core(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)

    def _pre_key(self) -> tuple[tuple[int, int | str], ...]:
        # numeric identifiers sort before alphanumeric ones, numerically
        return tuple((0, int(p)) if p.isdigit() else (1, p) for p in self.pre)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        if self.core != other.core:
            return self.core < other.core
        if not self.pre or not other.pre:
            return bool(self.pre) and not other.pre  # a pre-release sorts before its release
        return self._pre_key() < other._pre_key()

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}" + (f"-{'.'.join(self.pre)}" if self.pre else "")


def parse_version(text: str) -> Version | None:
    """`1.4.0`, `v2.0.1`, `1.4.1-rc.1` -> Version; anything else (`latest`, `1.4`) -> None."""
    m = _VERSION.fullmatch(text)
    if not m or m.group("minor") is None or m.group("patch") is None:
        return None
    return Version(
        int(m["major"]), int(m["minor"]), int(m["patch"]), tuple((m["pre"] or "").split(".")) if m["pre"] else ()
    )


@dataclass(frozen=True)
class _Comparator:
    op: str  # one of >=, >, <=, <
    version: Version

    def matches(self, v: Version) -> bool:
        if self.op == ">=":
            return v >= self.version
        if self.op == ">":
            return v > self.version
        if self.op == "<=":
            return v <= self.version
        return v < self.version


@dataclass(frozen=True)
class Range:
    text: str
    sets: tuple[tuple[_Comparator, ...], ...]

    def matches(self, tag: str) -> bool:
        version = parse_version(tag)
        if version is None:
            return False
        for comparators in self.sets:
            if not all(c.matches(version) for c in comparators):
                continue
            if version.pre and not any(c.version.pre and c.version.core == version.core for c in comparators):
                continue
            return True
        return False


def _partial(text: str) -> tuple[Version, int]:
    """The version (zero-filled) and how many of MAJOR.MINOR.PATCH were given."""
    m = _VERSION.fullmatch(text)
    if not m:
        raise SemverError(f"{text!r} is not a version like 1.4.0, v2.1 or 1.4.1-rc.1")
    given = 1 + (m["minor"] is not None) + (m["patch"] is not None)
    if m["pre"] and given < 3:
        raise SemverError(f"{text!r}: a pre-release needs a full MAJOR.MINOR.PATCH version")
    pre = tuple(m["pre"].split(".")) if m["pre"] else ()
    return Version(int(m["major"]), int(m["minor"] or 0), int(m["patch"] or 0), pre), given


def _bump(v: Version, part: int) -> Version:
    """The first release after every version sharing v's first `part` numbers."""
    if part == 1:
        return Version(v.major + 1, 0, 0)
    if part == 2:
        return Version(v.major, v.minor + 1, 0)
    return Version(v.major, v.minor, v.patch + 1)


def _expand(op: str, text: str) -> list[_Comparator]:
    version, given = _partial(text)
    if op in (">=", ">", "<=", "<"):
        if op == ">" and given < 3:  # >1.2 means >=1.3.0
            return [_Comparator(">=", _bump(version, given))]
        if op == "<=" and given < 3:  # <=1.2 means <1.3.0
            return [_Comparator("<", _bump(version, given))]
        return [_Comparator(op, version)]
    if op == "^":
        # the left-most non-zero number is fixed
        if version.major > 0 or given == 1:
            upper = _bump(version, 1)
        elif version.minor > 0 or given == 2:
            upper = _bump(version, 2)
        else:
            upper = _bump(version, 3)
        return [_Comparator(">=", version), _Comparator("<", upper)]
    if op == "~":
        return [_Comparator(">=", version), _Comparator("<", _bump(version, 2 if given >= 2 else 1))]
    # "=" or bare: exact when complete, else every version with that prefix
    if given == 3:
        return [_Comparator(">=", version), _Comparator("<=", version)]
    return [_Comparator(">=", version), _Comparator("<", _bump(version, given))]


def parse_range(text: str) -> Range:
    """Parse a range (see the module doc). Raises SemverError naming the bad part."""
    if not text.strip():
        raise SemverError("an empty range: write e.g. '>=1.3.0 <2.0.0' or '^1.4'")
    sets = []
    for alternative in text.split("||"):
        tokens = re.findall(r"(?:>=|<=|>|<|=|\^|~)?\s*[^\s<>=^~]+", alternative.strip())
        if not tokens or "".join(tokens).replace(" ", "") != alternative.replace(" ", ""):
            raise SemverError(f"{alternative.strip()!r} is not a range like '>=1.3.0 <2.0.0', '^1.4' or '~1.4.0'")
        comparators: list[_Comparator] = []
        for token in tokens:
            m = _COMPARATOR.fullmatch(token.strip())
            if not m:
                raise SemverError(f"{token!r} is not a comparator like >=1.3.0")
            comparators += _expand(m["op"] or "=", m["version"])
        sets.append(tuple(comparators))
    return Range(text, tuple(sets))
