"""Kernel profiles: what KVM does, by kernel version, read from ``data/kvm-behaviours.csv``.

Each behaviour row holds for a half-open version range ``[since, until)`` and
names the kernel function and file it comes from, and how it was verified.
A :class:`KernelProfile` answers "what is behaviour X in kernel Y" for any
version ``X.Y`` (not only the named profiles in ``data/kernels.toml``), so the
edges of every range can be tested.

Stable (X.Y.Z) releases: a row whose ``since`` or ``until`` names a point release
(``6.18.0``, ``5.10.23``) is a *stable row*: it says what releases of a stable
line do where a backport (or its absence) makes them differ from the X.Y
profile.  X.Y profiles never use them; a profile asked for a point release
(``kernel_profile("6.18.1")``) does, and :meth:`KernelProfile.stable_notes`
says so in words (for an X.Y profile: which of its point releases differ).

Each id also carries a ``review`` class (the same on all its rows): how the
design review treats a change of the behaviour between modelled kernels
(:func:`behaviour_class`; the names are documented in the CSV's header and
interpreted by :mod:`cpuidkit.analysis.review.notes`).
"""

from __future__ import annotations

import functools
import re
import tomllib
from dataclasses import dataclass

from cpuidkit._files import data_path, read_csv
from cpuidkit.errors import InputError, LookupFailed

__all__ = [
    "Behaviour",
    "StableRow",
    "KernelProfile",
    "kernel_profile",
    "parse_version",
    "parse_release",
    "named_kernels",
    "DEFAULT_KERNEL",
    "MODELLED_KERNELS",
    "OLDEST",
    "NEWEST",
    "modelled_kernel",
    "behaviour_class",
    "behaviour_classes",
    "stable_rows",
]


def _modelled() -> tuple[str, tuple[str, ...]]:
    doc = tomllib.loads(data_path("kernels.toml").read_text(encoding="utf-8"))
    m = doc.get("modelled", {})
    releases = tuple(m.get("releases", ()))
    if not releases or m.get("default") not in releases:
        raise InputError("[modelled] needs releases and a default among them", source=str(data_path("kernels.toml")))
    return m["default"], releases


# The modelled versions, from data/kernels.toml: every X.Y from OLDEST to NEWEST, in order.
DEFAULT_KERNEL, MODELLED_KERNELS = _modelled()
OLDEST, NEWEST = (
    tuple(int(x) for x in MODELLED_KERNELS[0].split(".")),
    tuple(int(x) for x in MODELLED_KERNELS[-1].split(".")),
)


_VERSION = re.compile(r"^\s*v?(\d+)\.(\d+)(?:\.(\d+))?")


def parse_version(text: str | tuple[int, ...]) -> tuple[int, int]:
    """``"6.18"`` / ``"6.18.44-fc"`` / ``(6, 18)`` → ``(6, 18)``."""
    if isinstance(text, tuple):
        return (text[0], text[1])
    m = _VERSION.match(str(text))
    if not m:
        raise InputError(f"kernel version must look like 6.18, got {text!r}", where="kernel")
    return int(m[1]), int(m[2])


def parse_release(text: str | tuple[int, ...]) -> tuple[int, int, int] | None:
    """The point release a version names: ``"6.18.1"`` / ``"6.1.192-3"`` → ``(6, 18, 1)`` / ``(6, 1, 192)``;
    ``None`` for a bare ``X.Y`` (``"6.18"``: the profile of the series, not a point release)."""
    if isinstance(text, tuple):
        return (text[0], text[1], text[2]) if len(text) > 2 else None
    m = _VERSION.match(str(text))
    if not m:
        raise InputError(f"kernel version must look like 6.18 or 6.18.1, got {text!r}", where="kernel")
    return None if m[3] is None else (int(m[1]), int(m[2]), int(m[3]))


_RELEASE = re.compile(r"^v?(\d+)\.(\d+)(?:\.\d+)?(?:[-+~][\w.+~-]*)?$")


def modelled_kernel(text: str) -> str:
    """A kernel version as users meet it (``6.12``, ``6.1.170``, ``6.18.44-fc-v1147``) → its modelled ``X.Y``.

    Anything else is an :class:`InputError` listing the modelled kernels: a version outside them is not
    answered as if it were modelled."""
    m = _RELEASE.match(str(text).strip())
    if not m:
        raise InputError(f"kernel version must look like 6.12 or 6.1.170, got {str(text)[:40]!r}", where="kernel")
    version = f"{int(m[1])}.{int(m[2])}"
    if version not in MODELLED_KERNELS:
        raise InputError(
            f"kernel {version} is not modelled; modelled kernels: {', '.join(MODELLED_KERNELS)}", where="kernel"
        )
    return version


def _fmt(v: tuple[int, ...]) -> str:
    return ".".join(str(x) for x in v)


@dataclass(frozen=True, slots=True)
class Behaviour:
    id: str
    value: str
    since: tuple[int, int] | None
    until: tuple[int, int] | None
    function: str
    file: str
    verified: str
    evidence: str
    summary: str
    review: str = ""  # the design review's class of the id (same on every row of the id)
    stable_range: str = ""  # set when a stable row replaced the series row: the point releases it covers

    def holds_for(self, v: tuple[int, int]) -> bool:
        return (self.since is None or v >= self.since) and (self.until is None or v < self.until)

    @property
    def range_text(self) -> str:
        """``"all modelled kernels"``, ``"5.17 and later"``, ``"before 6.14"`` or ``"5.17 to 6.13"``."""
        if self.since is None and self.until is None:
            return "all modelled kernels"
        if self.until is None:
            assert self.since is not None  # both None returned above
            return f"{_fmt(self.since)} and later"
        last = (self.until[0], self.until[1] - 1) if self.until[1] > 0 else None
        if self.since is None:
            return f"before {_fmt(self.until)}"
        if last is not None and last == self.since:
            return f"{_fmt(self.since)} only"
        return (
            f"{_fmt(self.since)} to {_fmt(last)}"
            if last is not None
            else f"{_fmt(self.since)} to before {_fmt(self.until)}"
        )

    @property
    def source(self) -> str:
        """``"arch/x86/kvm/cpuid.c kvm_set_cpuid(), kernels 5.17 and later (verified: source)"``"""
        where = " ".join(p for p in (self.file, f"{self.function}()" if self.function else "") if p)
        if self.stable_range:
            span = f"releases {self.stable_range}"
        else:
            span = self.range_text if self.range_text.startswith("all") else f"kernels {self.range_text}"
        return f"{where}, {span} (verified: {self.verified})"


@dataclass(frozen=True, slots=True)
class StableRow:
    """What point releases ``[since, until)`` of a stable line do where they differ from their X.Y profile."""

    id: str
    value: str
    since: tuple[int, int, int]
    until: tuple[int, ...]  # (X, Y, Z) or the next series (X, Y)
    function: str
    file: str
    verified: str
    evidence: str
    summary: str

    def holds_for(self, release: tuple[int, int, int]) -> bool:
        return self.since <= release < (self.until if len(self.until) > 2 else (*self.until, 0))

    @property
    def range_text(self) -> str:
        """``"6.18.0 to 6.18.2"`` or ``"5.10.23 and later 5.10.y"``."""
        if len(self.until) > 2 and self.until[:2] == self.since[:2] and self.until[2] > 0:
            return f"{_fmt(self.since)} to {_fmt((*self.until[:2], self.until[2] - 1))}"
        return f"{_fmt(self.since)} and later {_fmt(self.since[:2])}.y"


def _bound(text: str) -> tuple[int, ...] | None:
    """A ``since``/``until`` cell: ``""`` → None, ``"6.18"`` → (6, 18), ``"6.18.3"`` → (6, 18, 3)."""
    if not text:
        return None
    release = parse_release(text)
    return release if release is not None else parse_version(text)


def _parse_rows() -> tuple[dict[str, tuple[Behaviour, ...]], dict[str, tuple[StableRow, ...]]]:
    rows = read_csv("kvm-behaviours.csv")
    out: dict[str, list[Behaviour]] = {}
    stable: dict[str, list[StableRow]] = {}
    src = str(data_path("kvm-behaviours.csv"))
    for n, r in enumerate(rows, start=1):
        where = f"row {n} ({r.get('id')})"
        try:
            lo, hi = _bound(r["since"]), _bound(r["until"])
        except InputError as e:
            raise InputError(e.detail, source=src, where=where) from None
        if (lo is not None and len(lo) > 2) or (hi is not None and len(hi) > 2):
            if lo is None or len(lo) < 3 or hi is None or hi[:2] not in (lo[:2], (lo[0], lo[1] + 1)):
                raise InputError(
                    "a stable row runs from a point release (X.Y.Z) to a later one of the same series, or to "
                    "the next series X.Y+1",
                    source=src,
                    where=where,
                )
            stable.setdefault(r["id"], []).append(
                StableRow(
                    r["id"],
                    r["value"],
                    (lo[0], lo[1], lo[2]),
                    hi,
                    r.get("function", ""),
                    r.get("file", ""),
                    r.get("verified", "unverified"),
                    r.get("evidence", ""),
                    r.get("summary", ""),
                )
            )
            continue
        since = (lo[0], lo[1]) if lo is not None else None
        until = (hi[0], hi[1]) if hi is not None else None
        b = Behaviour(
            r["id"],
            r["value"],
            since,
            until,
            r.get("function", ""),
            r.get("file", ""),
            r.get("verified", "unverified"),
            r.get("evidence", ""),
            r.get("summary", ""),
            r.get("review", ""),
        )
        if not b.review:
            raise InputError("the review column is empty: every behaviour id needs a class", source=src, where=where)
        first = out.get(b.id)
        if first and first[0].review != b.review:
            raise InputError(
                f"review class {b.review!r} differs from {first[0].review!r} on an earlier row of the same id",
                source=src,
                where=where,
            )
        out.setdefault(b.id, []).append(b)
    for bid in stable:
        if bid not in out:
            raise InputError(f"stable rows of {bid!r} but no X.Y row of it", source=src, where=bid)
    return {k: tuple(v) for k, v in out.items()}, {k: tuple(v) for k, v in stable.items()}


@functools.cache
def _behaviours() -> dict[str, tuple[Behaviour, ...]]:
    """The X.Y rows of every id (what profiles of a series use)."""
    return _parse_rows()[0]


@functools.cache
def _stable() -> dict[str, tuple[StableRow, ...]]:
    return _parse_rows()[1]


def stable_rows(bid: str | None = None) -> tuple[StableRow, ...]:
    """The stable (point-release) rows of one id, or of every id."""
    stable = _stable()
    if bid is not None:
        return stable.get(bid, ())
    return tuple(r for rows in stable.values() for r in rows)


@functools.cache
def named_kernels() -> dict[str, dict]:
    """The named profiles of ``data/kernels.toml`` (version → name, lts, notes)."""
    doc = tomllib.loads(data_path("kernels.toml").read_text(encoding="utf-8"))
    return dict(doc.get("kernel", {}))


class KernelProfile:
    """The behaviours of one kernel version: a series ``X.Y``, or a point release ``X.Y.Z``.

    A point release behaves as its series except where a stable row says otherwise (``overrides``:
    id → the stable row that applies); ``name`` is always the series.
    """

    def __init__(self, version: str | tuple[int, ...] = DEFAULT_KERNEL):
        self.version = parse_version(version)
        self.release = parse_release(version)
        self.name = _fmt(self.version)
        release = self.release
        self.overrides: dict[str, StableRow] = (
            {}
            if release is None
            else {r.id: r for r in stable_rows() if r.since[:2] == self.version and r.holds_for(release)}
        )
        # equal profiles behave alike: a point release without stable rows is its series
        self._key = (self.version, tuple(sorted((bid, r.value) for bid, r in self.overrides.items())))
        self._cache: dict[str, Behaviour] = {}
        self._flags: dict[str, bool] = {}  # flag() and number() answers (the rows never change)
        self._numbers: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"KernelProfile({_fmt(self.release) if self.release else self.name!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KernelProfile) and other._key == self._key

    def __hash__(self) -> int:
        return hash(self._key)

    def behaviour(self, bid: str) -> Behaviour:
        hit = self._cache.get(bid)
        if hit is not None:
            return hit
        rows = _behaviours().get(bid)
        if not rows:
            raise LookupFailed(f"no behaviour {bid!r} in data/kvm-behaviours.csv")
        for b in rows:
            if b.holds_for(self.version):
                stable = self.overrides.get(bid)
                if stable is not None:  # this point release differs from its series
                    b = Behaviour(
                        b.id,
                        stable.value,
                        b.since,
                        b.until,
                        stable.function or b.function,
                        stable.file or b.file,
                        stable.verified,
                        stable.evidence,
                        stable.summary,
                        b.review,
                        stable.range_text,
                    )
                self._cache[bid] = b
                return b
        raise LookupFailed(f"behaviour {bid!r} has no row for kernel {self.name}")

    def stable_notes(self) -> list[str]:
        """Where point releases differ from this profile, in words.

        For a point release: the behaviours in which it differs from its series (they are applied).
        For a series: which of its point releases differ, and how (the profile models the others).
        """
        if self.release is not None:
            return [
                f"{_fmt(self.release)}: {bid} is {r.value!r} (releases {r.range_text}; the {self.name} profile "
                f"has {_series_value(bid, self.version)!r}): {r.summary}"
                for bid, r in sorted(self.overrides.items())
            ]
        return [
            f"{r.range_text}: {r.id} is {r.value!r} where this {self.name} profile has "
            f"{_series_value(r.id, self.version)!r}: {r.summary}"
            for r in sorted(stable_rows(), key=lambda r: (r.id, r.since))
            if r.since[:2] == self.version
        ]

    def value(self, bid: str) -> str:
        hit = self._cache.get(bid)
        return hit.value if hit is not None else self.behaviour(bid).value

    def flag(self, bid: str) -> bool:
        hit = self._flags.get(bid)
        if hit is not None:
            return hit
        v = self.value(bid).strip().lower()
        if v in ("true", "yes", "1"):
            self._flags[bid] = True
            return True
        if v in ("false", "no", "0"):
            self._flags[bid] = False
            return False
        raise InputError(f"behaviour {bid!r} value {v!r} is not true/false", source="kvm-behaviours.csv")

    def number(self, bid: str) -> int:
        hit = self._numbers.get(bid)
        if hit is None:
            hit = self._numbers[bid] = int(self.value(bid), 0)
        return hit

    def source(self, bid: str) -> str:
        return self.behaviour(bid).source

    @property
    def in_modelled_range(self) -> bool:
        return OLDEST <= self.version <= NEWEST


def _series_value(bid: str, version: tuple[int, int]) -> str:
    for b in _behaviours().get(bid, ()):
        if b.holds_for(version):
            return b.value
    return ""


@functools.cache
def kernel_profile(version: str | tuple[int, ...] = DEFAULT_KERNEL) -> KernelProfile:
    return KernelProfile(version)


def all_behaviour_ids() -> list[str]:
    return sorted(_behaviours())


def behaviour_rows(bid: str) -> tuple[Behaviour, ...]:
    return _behaviours().get(bid, ())


def behaviour_class(bid: str) -> str:
    """The ``review`` column of a behaviour id: how the design review treats a change of it."""
    rows = _behaviours().get(bid)
    if not rows:
        raise LookupFailed(f"no behaviour {bid!r} in data/kvm-behaviours.csv")
    return rows[0].review


def behaviour_classes() -> dict[str, str]:
    """Every behaviour id → its ``review`` class."""
    return {bid: rows[0].review for bid, rows in sorted(_behaviours().items())}
