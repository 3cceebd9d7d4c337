"""Which of the model's answers a real kernel has confirmed, from ``data/kernel-runs.csv``.

The model answers for every modelled kernel and every vendor module, but only some
(kernel series, vendor module) pairs have been run against a real kernel: Debian's 6.1 and
6.12 with upstream kvm_amd in the kernel lab, this machine's 6.18 with kvm_pvm through
/dev/kvm.  Everything else is read from the kernel source only.  Each surface that shows a
model answer (the Lab widgets' verdict panel, ``cpuidkit check``, ``cpuidkit review``, the
review report) asks :func:`confirmation` and shows its :attr:`Confirmation.badge`, so the
rule lives in one place and the table in ``data/`` says which pairs ran::

    confirmation("6.1", "svm").badge      # "confirmed on a real kernel: 6.1/svm, Debian 6.1.192-3 in the kernel lab …"
    confirmation("6.12", "vmx").status    # "source": vmx was never run (the CSV says why)

A run's row names the exact build, what was compared and the agreement figures;
``tools/update_kernel_runs.py`` rewrites the rows from ``bench/results.json``.  A run where
the model disagreed on any case is ``"disagreed"``, never ``"confirmed"``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from cpuidkit._files import data_path, read_csv
from cpuidkit.core.kernels import parse_version
from cpuidkit.errors import InputError

__all__ = ["KernelRun", "Confirmation", "kernel_runs", "confirmation", "BACKENDS", "STATUSES"]

BACKENDS = ("lab", "live")  # a run: the kernel lab (QEMU) or this machine's /dev/kvm; "none" rows say why not
STATUSES = ("confirmed", "disagreed", "source")
_CSV = "kernel-runs.csv"


@dataclass(frozen=True)
class KernelRun:
    """One (kernel series, vendor module) pair the model was run against: a row of ``data/kernel-runs.csv``."""

    series: str  # X.Y
    vendor: str
    backend: str  # "lab" or "live"
    build: str  # the exact kernel, short: "Debian 6.1.192-3", or uname -r
    package: str  # the Debian package, or what the machine's kernel is
    cases: int  # random scenarios
    agreed: int
    scripted: int
    scripted_agreed: int
    compared: str  # what was compared (errno, stored table, state read back)
    tool: str  # how to measure it again
    measured: str  # when (YYYY-MM-DD)

    @property
    def all_agreed(self) -> bool:
        return self.agreed == self.cases and self.scripted_agreed == self.scripted and self.cases + self.scripted > 0

    @property
    def figures(self) -> str:
        """``"10,000/10,000 random and 40/40 scripted scenarios agreed"``."""
        return f"{self.agreed:,}/{self.cases:,} random and {self.scripted_agreed}/{self.scripted} scripted scenarios agreed"


@dataclass(frozen=True)
class Confirmation:
    """Whether a real kernel confirmed the model's answers for one kernel and vendor module.

    ``status``: ``"confirmed"`` (a run of that series and vendor agreed on every case), ``"disagreed"``
    (it ran and the model missed some cases) or ``"source"`` (never run: the rules are read from the
    kernel source only; ``reason`` says why).  ``badge`` is the one short line the surfaces show,
    ``text`` the longer one (what was compared, how to measure it again).
    """

    kernel: str  # X.Y
    vendor: str
    status: str
    run: KernelRun | None
    reason: str
    runs: tuple[str, ...]  # every pair that has run, "6.1/svm (lab)" …

    @property
    def confirmed(self) -> bool:
        return self.status == "confirmed"

    @property
    def pair(self) -> str:
        return f"{self.kernel}/{self.vendor}"

    @property
    def badge(self) -> str:
        r = self.run
        if r is None:
            return f"read from source only: {self.reason}"
        where = "in the kernel lab" if r.backend == "lab" else "through /dev/kvm"
        if self.status == "confirmed":
            return f"confirmed on a real kernel: {self.pair}, {r.build} {where} ({r.agreed + r.scripted_agreed:,} cases agreed)"
        return (
            f"a real kernel DISAGREED: {self.pair}, {r.build} {where} "
            f"({r.agreed + r.scripted_agreed:,} of {r.cases + r.scripted:,} cases agreed)"
        )

    @property
    def short(self) -> str:
        """A table cell: ``"confirmed (Debian 6.1.192-3)"``, ``"DISAGREED (…)"`` or ``"source only"``."""
        if self.run is None:
            return "source only"
        return f"{'confirmed' if self.confirmed else 'DISAGREED'} ({self.run.build})"

    @property
    def text(self) -> str:
        r = self.run
        if r is None:
            return f"{self.badge}. Run against real kernels: {', '.join(self.runs) or 'none'}."
        return (
            f"{self.badge}. Kernel: {r.package}. Compared: {r.compared}; {r.figures} (measured {r.measured} "
            f"with {r.tool}). "
            "Rules the runs never reached are still read from source."
        )

    def as_dict(self) -> dict:
        r = self.run
        return {
            "status": self.status,
            "kernel": self.kernel,
            "vendor": self.vendor,
            "badge": self.badge,
            "build": r.build if r else None,
            "package": r.package if r else None,
            "backend": r.backend if r else None,
            "cases": r.cases if r else None,
            "agreed": r.agreed if r else None,
            "scripted": r.scripted if r else None,
            "scripted_agreed": r.scripted_agreed if r else None,
            "reason": self.reason or None,
        }


def _int(row: dict, key: str, where: str) -> int:
    try:
        n = int(row.get(key) or "")
    except ValueError:
        raise InputError(f"{key} must be a whole number, got {row.get(key)!r}", source=_CSV, where=where) from None
    if n < 0:
        raise InputError(f"{key} must not be negative", source=_CSV, where=where)
    return n


@functools.cache
def _table() -> tuple[tuple[KernelRun, ...], dict[str, str]]:
    """The runs, and per vendor module never run the reason (``"vmx"`` → "no VMX hardware here …")."""
    runs: list[KernelRun] = []
    reasons: dict[str, str] = {}
    src = str(data_path(_CSV))
    for n, row in enumerate(read_csv(_CSV), start=1):
        where = f"row {n}"
        vendor, backend = (row.get("vendor") or "").strip(), (row.get("backend") or "").strip()
        if not vendor:
            raise InputError("vendor is empty", source=src, where=where)
        if backend == "none":
            if not row.get("note"):
                raise InputError(
                    "a 'none' row says in note why the vendor module was never run", source=src, where=where
                )
            reasons[vendor] = row["note"].strip()
            continue
        if backend not in BACKENDS:
            raise InputError(
                f"backend must be one of {', '.join(BACKENDS)} or none, got {backend!r}", source=src, where=where
            )
        series = (row.get("series") or "").strip()
        try:
            major, minor = parse_version(series)
        except InputError:
            raise InputError(f"series must look like 6.12, got {series!r}", source=src, where=where) from None
        run = KernelRun(
            series=f"{major}.{minor}",
            vendor=vendor,
            backend=backend,
            build=(row.get("build") or "").strip(),
            package=(row.get("package") or "").strip(),
            cases=_int(row, "cases", where),
            agreed=_int(row, "agreed", where),
            scripted=_int(row, "scripted", where),
            scripted_agreed=_int(row, "scripted_agreed", where),
            compared=(row.get("compared") or "").strip(),
            tool=(row.get("tool") or "").strip(),
            measured=(row.get("measured") or "").strip(),
        )
        if not run.build or run.agreed > run.cases or run.scripted_agreed > run.scripted:
            raise InputError("a run names its build, and agreed counts cannot exceed cases", source=src, where=where)
        if any((r.series, r.vendor) == (run.series, run.vendor) for r in runs):
            raise InputError(f"{run.series}/{run.vendor} has two rows", source=src, where=where)
        runs.append(run)
    return tuple(runs), reasons


def kernel_runs() -> tuple[KernelRun, ...]:
    """Every (kernel series, vendor module) pair the model has been run against, in the CSV's order."""
    return _table()[0]


@functools.cache
def _confirmation(kernel: tuple[int, int], vendor: str) -> Confirmation:
    runs, reasons = _table()
    series = f"{kernel[0]}.{kernel[1]}"
    ran = tuple(f"{r.series}/{r.vendor} ({r.backend})" for r in runs)
    run = next((r for r in runs if (r.series, r.vendor) == (series, vendor)), None)
    if run is not None:
        return Confirmation(series, vendor, "confirmed" if run.all_agreed else "disagreed", run, "", ran)
    if vendor in reasons:
        reason = f"{vendor} never run — {reasons[vendor]}"
    elif any(r.vendor == vendor for r in runs):
        others = ", ".join(r.series for r in runs if r.vendor == vendor)
        reason = f"no {series} kernel run with {vendor} (run: {others})"
    else:
        reason = f"{vendor} never run"
    return Confirmation(series, vendor, "source", None, reason, ran)


def confirmation(kernel: str | tuple[int, ...], vendor: str) -> Confirmation:
    """Whether a real kernel confirmed the model's answers for ``kernel`` (``6.1``, ``6.1.170``) and ``vendor``.

    Keyed by the kernel series: a point release (6.1.170) shares its series' run (the row names the build
    that ran, e.g. 6.1.192-3).  ``vendor`` is the vendor module the answer is for (vmx, svm, pvm).
    """
    return _confirmation(parse_version(kernel), str(vendor))
