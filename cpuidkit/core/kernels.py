"""Kernel profiles: what KVM does, by kernel version, read from ``data/kvm-behaviours.csv``.

Each behaviour row holds for a half-open version range ``[since, until)`` and
names the kernel function and file it comes from, and how it was verified.
A :class:`KernelProfile` answers "what is behaviour X in kernel Y" for any
version ``X.Y`` (not only the named profiles in ``data/kernels.toml``), so the
edges of every range can be tested.

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
    "KernelProfile",
    "kernel_profile",
    "parse_version",
    "named_kernels",
    "DEFAULT_KERNEL",
    "MODELLED_KERNELS",
    "OLDEST",
    "NEWEST",
    "modelled_kernel",
    "behaviour_class",
    "behaviour_classes",
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


def parse_version(text: str | tuple[int, int]) -> tuple[int, int]:
    """``"6.18"`` / ``"6.18.44-fc"`` / ``(6, 18)`` → ``(6, 18)``."""
    if isinstance(text, tuple):
        return text
    m = re.match(r"^\s*v?(\d+)\.(\d+)", str(text))
    if not m:
        raise InputError(f"kernel version must look like 6.18, got {text!r}", where="kernel")
    return int(m[1]), int(m[2])


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


def _fmt(v: tuple[int, int]) -> str:
    return f"{v[0]}.{v[1]}"


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
        span = self.range_text if self.range_text.startswith("all") else f"kernels {self.range_text}"
        return f"{where}, {span} (verified: {self.verified})"


@functools.cache
def _behaviours() -> dict[str, tuple[Behaviour, ...]]:
    rows = read_csv("kvm-behaviours.csv")
    out: dict[str, list[Behaviour]] = {}
    src = str(data_path("kvm-behaviours.csv"))
    for n, r in enumerate(rows, start=1):
        where = f"row {n} ({r.get('id')})"
        try:
            since = parse_version(r["since"]) if r["since"] else None
            until = parse_version(r["until"]) if r["until"] else None
        except InputError as e:
            raise InputError(e.detail, source=src, where=where) from None
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
    return {k: tuple(v) for k, v in out.items()}


@functools.cache
def named_kernels() -> dict[str, dict]:
    """The named profiles of ``data/kernels.toml`` (version → name, lts, notes)."""
    doc = tomllib.loads(data_path("kernels.toml").read_text(encoding="utf-8"))
    return dict(doc.get("kernel", {}))


class KernelProfile:
    """The behaviours of one kernel version."""

    def __init__(self, version: str | tuple[int, int] = DEFAULT_KERNEL):
        self.version = parse_version(version)
        self.name = _fmt(self.version)
        self._cache: dict[str, Behaviour] = {}
        self._flags: dict[str, bool] = {}  # flag() and number() answers (the rows never change)
        self._numbers: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"KernelProfile({self.name!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KernelProfile) and other.version == self.version

    def __hash__(self) -> int:
        return hash(self.version)

    def behaviour(self, bid: str) -> Behaviour:
        hit = self._cache.get(bid)
        if hit is not None:
            return hit
        rows = _behaviours().get(bid)
        if not rows:
            raise LookupFailed(f"no behaviour {bid!r} in data/kvm-behaviours.csv")
        for b in rows:
            if b.holds_for(self.version):
                self._cache[bid] = b
                return b
        raise LookupFailed(f"behaviour {bid!r} has no row for kernel {self.name}")

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


@functools.cache
def kernel_profile(version: str | tuple[int, int] = DEFAULT_KERNEL) -> KernelProfile:
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
