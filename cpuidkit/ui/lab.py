"""The state a notebook explores, and KVM's answer for it, without any widget.

A :class:`Lab` holds what a VMM would hand KVM: the CPUID table, the kernel
version, the vendor module, the host, and the vCPU state written after
KVM_SET_CPUID2 (CR4, XCR0, IA32_XSS, IA32_APIC_BASE, IA32_MISC_ENABLE, quirks,
HLT exits, "has run").  Every change re-asks the core (:func:`cpuidkit.check`)
and tells the listeners *what* changed, so a widget redraws only its part.

Every value is checked by the rules of the API and the command line
(:mod:`cpuidkit.ui._inputs`), and the new configuration is evaluated *before*
it replaces the old one: a bad value or a configuration the core cannot
evaluate raises a ``CpuidkitError`` and changes nothing.

The widgets in :mod:`cpuidkit.ui.widgets` are thin views of a Lab.  Each view
attaches itself (:meth:`Lab.attach`) with two functions: what it must show for a
configuration (``content(view)``) and what it shows now (``shown()``).
:meth:`Lab.expected` evaluates the configuration afresh and says what every
attached view must show; tests compare.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from cpuidkit.core.addresses import LINEAR_WIDTH, MAXPHYADDR
from cpuidkit.core.bits import FieldRef, check_u32, extract_bits
from cpuidkit.core.catalog import Field, catalog
from cpuidkit.core.hosts import HostProfile
from cpuidkit.core.kernels import DEFAULT_KERNEL
from cpuidkit.core.sources import load, save
from cpuidkit.core.table import CpuidTable
from cpuidkit.errors import CpuidkitError, InputError
from cpuidkit.kvm.check import Outcome, VcpuSetup, check
from cpuidkit.kvm.ownership import Ownership
from cpuidkit.ui import _inputs

__all__ = ["Lab", "LabView", "Expected", "Panel", "BitInfo", "DEFAULT_HOST", "load_table_or_keep"]

DEFAULT_HOST = "sapphire-rapids"

Listener = Callable[["Lab", set], None]


@dataclass(frozen=True)
class BitInfo:
    """One bit of a register as a grid shows it."""

    bit: int
    requested: int  # what userspace set (0/1)
    stored: int | None  # what KVM_GET_CPUID2 returns (None: no such entry stored)
    owner: str  # passthrough / runtime / vendor / not-virtualized / unnamed
    field: Field | None
    driver: str | None

    @property
    def tooltip(self) -> str:
        if self.field is None:
            return f"bit {self.bit}: no named field ({self.owner})"
        f = self.field
        text = f"bit {self.bit}: {f.name} ({f.leaf:#x}.{f.subleaf_text}.{f.register}[{f.bits}]) · {self.owner}"
        if self.driver:
            text += f" ← {self.driver}"
        if f.description:
            text += f" · {f.description}"
        return text


@functools.cache
def _static_owner(leaf: int, subleaf: int, register: str, bit: int) -> tuple[str, Field | None]:
    """Owner class of a position from the catalog alone (used when KVM refused the table)."""
    f = catalog().at(leaf, subleaf, register, bit)
    if f is None:
        return "unnamed", None
    return ("runtime" if f.owner == "runtime" else "passthrough"), f


@dataclass(frozen=True, eq=False)
class LabView:
    """One configuration (table, kernel, vendor, host, vCPU state) and KVM's answer for it: everything a
    view of a Lab shows is computed from one of these.  Immutable; :meth:`evaluate` makes one."""

    table: CpuidTable
    kernel: str
    vendor: str
    host: HostProfile
    state: VcpuSetup
    outcome: Outcome
    _owners: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    _verdict: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def evaluate(cls, table: CpuidTable, kernel: str, vendor: str, host: HostProfile, state: VcpuSetup) -> LabView:
        """The configuration with a fresh ``check()`` (raises, changing nothing, if the core cannot answer)."""
        return cls(
            table, kernel, vendor, host, state, check(table, kernel=kernel, vendor=vendor, host=host, state=state)
        )

    def config(self) -> tuple:
        """What was configured (the host by identity), for comparisons."""
        return (self.table, self.kernel, self.vendor, id(self.host), self.state)

    @property
    def accepted(self) -> bool:
        return self.outcome.accepted

    @property
    def linear_width(self) -> int | None:
        return self.table.get_field(LINEAR_WIDTH)

    @property
    def maxphyaddr(self) -> int | None:
        return self.table.get_field(MAXPHYADDR)

    def _owner_index(self) -> dict[tuple[int, int, str], list[Ownership]]:
        if not self._owners and self.outcome.fields:
            for o in self.outcome.fields:
                self._owners.setdefault((o.field.leaf, o.subleaf, o.field.register), []).append(o)
        return self._owners

    def bits(self, leaf: int, subleaf: int, register: str) -> list[BitInfo]:
        """The 32 bits of one register: requested value, stored value, owner and field (bit 0 first)."""
        req_e = self.table.get(leaf, subleaf)
        requested = req_e.reg(register) if req_e is not None else 0
        st_e = self.outcome.stored.get(leaf, subleaf) if self.outcome.accepted else None
        stored = st_e.reg(register) if st_e is not None else None
        owned = self._owner_index().get((leaf, subleaf, register), [])
        out = []
        for bit in range(32):
            own = next((o for o in owned if o.field.lo <= bit <= o.field.hi), None)
            fld: Field | None
            if own is not None:
                owner, fld, driver = own.owner, own.field, own.driver
            else:
                owner, fld = _static_owner(leaf, subleaf, register, bit)
                if fld is not None and self.outcome.accepted:
                    owner = "passthrough"
                driver = None
            out.append(
                BitInfo(bit, requested >> bit & 1, None if stored is None else stored >> bit & 1, owner, fld, driver)
            )
        return out

    def field_rows(self, scope: str | tuple[int, int] | None = None) -> list[dict]:
        """Rows for the field table: one per named field of the stored table (see :meth:`Lab.field_rows`)."""
        rows = []
        for o in self.outcome.fields:
            f = o.field
            if isinstance(scope, tuple) and (f.leaf, o.subleaf) != scope:
                continue
            if scope == "owned" and o.owner == "passthrough":
                continue
            e = self.table.get(f.leaf, o.subleaf)
            requested = None if e is None else extract_bits(e.reg(f.register), f.hi, f.lo)
            rows.append(
                {
                    "field": f.name,
                    "leaf": f"{f.leaf:#x}",
                    "subleaf": o.subleaf,
                    "register": f.register,
                    "bits": f.bits,
                    "set": requested,
                    "stored": o.value,
                    "owner": o.owner,
                    "driver": o.driver or "",
                }
            )
        return rows

    def verdict(self) -> dict:
        """The verdict panel's content: verdict, errno, rule, explanation, source, state errors (a new dict
        each call; the outcome's is built once per view)."""
        if not self._verdict:
            d = self.outcome.as_dict()
            self._verdict.update(
                (k, d[k])
                for k in (
                    "verdict",
                    "errno",
                    "rule",
                    "explanation",
                    "source",
                    "kernel",
                    "vendor",
                    "host",
                    "state_errors",
                )
            )
        return dict(self._verdict)


class Panel(Protocol):
    """A view attached to a Lab: what it must show for a configuration, and what it shows now (equal values
    when the view is right; any comparable value, typically a dict of its widgets' visible values)."""

    def content(self, view: LabView) -> Any: ...

    def shown(self) -> Any: ...


@dataclass(frozen=True, eq=False)
class Expected:
    """A fresh evaluation of a Lab's configuration (``view``, with ``outcome``: the core's answer) and, for
    every attached view, what it must show (``panels``: ``(view, content)`` pairs)."""

    view: LabView
    panels: tuple[tuple[Panel, Any], ...]

    @property
    def outcome(self) -> Outcome:
        return self.view.outcome

    def mismatches(self) -> list[str]:
        """The attached views that do not show what they must (class names; empty when all agree)."""
        return [type(p).__name__ for p, want in self.panels if p.shown() != want]


class Lab:
    """A CPUID table, a kernel, a vendor module, a host and a vCPU state; and KVM's answer."""

    def __init__(
        self,
        host: HostProfile | str | None = DEFAULT_HOST,
        kernel: str = DEFAULT_KERNEL,
        vendor: str = "vmx",
        table: CpuidTable | None = None,
        state: VcpuSetup | dict | None = None,
    ):
        h = _inputs.host(host)
        self._view = LabView.evaluate(
            _inputs.table(table) if table is not None else h.supported_cpuid(),
            _inputs.kernel(kernel),
            _inputs.vendor(vendor),
            h,
            _inputs.state(state) if state is not None else VcpuSetup(),
        )
        self._listeners: list[Listener] = []
        self._panels: list[Panel] = []

    def __repr__(self) -> str:
        return (
            f"Lab(host={self.host.name!r}, kernel={self.kernel!r}, vendor={self.vendor!r}, "
            f"{len(self.table)} entries, {self.outcome.verdict})"
        )

    # -- the configuration and the core's answer (read-only: change them with update() & co) ---------
    @property
    def view(self) -> LabView:
        """The current configuration and its outcome (what the views show)."""
        return self._view

    @property
    def table(self) -> CpuidTable:
        return self._view.table

    @property
    def kernel(self) -> str:
        return self._view.kernel

    @property
    def vendor(self) -> str:
        return self._view.vendor

    @property
    def host(self) -> HostProfile:
        return self._view.host

    @property
    def state(self) -> VcpuSetup:
        return self._view.state

    @property
    def outcome(self) -> Outcome:
        return self._view.outcome

    def expected(self) -> Expected:
        """A fresh ``check()`` of the current configuration and what every attached view must show for it
        (``lab.expected().outcome`` is the core's answer; ``lab.expected().mismatches()`` the views that
        disagree)."""
        v = self._view
        fresh = LabView.evaluate(v.table, v.kernel, v.vendor, v.host, v.state)
        return Expected(fresh, tuple((p, p.content(fresh)) for p in self._panels))

    @property
    def accepted(self) -> bool:
        return self.outcome.accepted

    def on_change(self, listener: Listener) -> None:
        """Call ``listener(lab, changed)`` after every change; ``changed`` names what changed
        (``table``, ``kernel``, ``vendor``, ``host``, ``state``, ``outcome``)."""
        self._listeners.append(listener)

    def attach(self, panel: Panel) -> None:
        """Count ``panel`` among the views :meth:`expected` speaks for."""
        self._panels.append(panel)

    def _commit(self, view: LabView, what: set) -> None:
        before = self._view
        self._view = view
        if _outcome_key(before.outcome) != _outcome_key(view.outcome):
            what = what | {"outcome"}
        errors = []
        for listener in list(self._listeners):
            try:
                listener(self, what)
            except Exception as e:  # noqa: BLE001 - every view hears of the change; the first failure is raised after
                errors.append(e)
        if errors:
            raise errors[0]

    # -- edits -----------------------------------------------------------------------------
    def update(
        self,
        *,
        table: CpuidTable | None = None,
        kernel: str | None = None,
        vendor: str | None = None,
        host: HostProfile | str | None = None,
        state: VcpuSetup | dict | None = None,
    ) -> None:
        """Change several things at once (one evaluation, one notification).  Every value is checked as the
        API and the CLI check it, and the new configuration is evaluated before it replaces the old one:
        a bad value raises a ``CpuidkitError`` and nothing changes."""
        cur = self._view
        new: dict[str, Any] = {}
        if kernel is not None and (k := _inputs.kernel(kernel)) != cur.kernel:
            new["kernel"] = k
        if vendor is not None and (v := _inputs.vendor(vendor)) != cur.vendor:
            new["vendor"] = v
        if host is not None and (h := _inputs.host(host)) is not cur.host:
            new["host"] = h
        if table is not None and (t := _inputs.table(table)) != cur.table:
            new["table"] = t
        if state is not None and (s := _inputs.state(state)) != cur.state:
            new["state"] = s
        if not new:
            return
        config = {"table": cur.table, "kernel": cur.kernel, "vendor": cur.vendor, "host": cur.host, "state": cur.state}
        view = LabView.evaluate(**{**config, **new})  # raises before anything changes
        self._commit(view, set(new))

    def set_table(self, table: CpuidTable) -> None:
        self.update(table=_inputs.table(table))

    def set_bit(self, leaf: int, subleaf: int, register: str, bit: int, value: int) -> None:
        """One bit: ``value`` 0 or 1 (the table's rule for a one-bit field)."""
        self.set_field(_inputs.position(leaf, subleaf, register, bit), value)

    def set_field(self, spec: str | FieldRef, value: int) -> None:
        """A named field or a position (``"avx2"``, ``"0x80000008.eax[15:8]"``, a ``FieldRef``): the value
        must fit the field (``CpuidTable.set_field``); a register holds 32 bits."""
        ref = _inputs.field(spec)
        if isinstance(value, int) and not isinstance(value, bool):
            check_u32("value", value)
        self.update(table=self.table.set_field(ref, value))

    def get_field(self, spec: str | FieldRef) -> int | None:
        return self.table.get_field(_inputs.field(spec))

    @property
    def linear_width(self) -> int | None:
        return self._view.linear_width

    def set_linear_width(self, bits: int) -> None:
        """0x80000008.EAX[15:8]: KVM accepts only 0, 48 and 57 (``kvm_check_cpuid``)."""
        self.set_field(LINEAR_WIDTH, bits)

    @property
    def maxphyaddr(self) -> int | None:
        return self._view.maxphyaddr

    def set_maxphyaddr(self, bits: int) -> None:
        """0x80000008.EAX[7:0]: never checked by KVM; ``cpuid_query_maxphyaddr`` reads it."""
        self.set_field(MAXPHYADDR, bits)

    def set_state(self, **changes) -> None:
        """Change the vCPU state (``cr4=…``, ``xcr0=…``, ``hlt_exits_disabled=True`` …), each value checked as
        in a STATE.json (``VcpuSetup.from_dict``)."""
        self.update(state=_inputs.state_with(self.state, changes))

    def run(self) -> None:
        """KVM_RUN: from now on KVM_SET_CPUID2 accepts only the table the vCPU holds (5.17+)."""
        if not self.state.has_run:
            self.update(state=replace(self.state, has_run=True, previous=self.table))

    def reset_vcpu(self) -> None:
        """A new vCPU: reset state, not run."""
        self.update(state=VcpuSetup(xfeature_permission=self.state.xfeature_permission))

    # -- export / import ----------------------------------------------------------------
    def export_json(self, path: str | Path) -> Path:
        """Write the table as KVM JSON, atomically (``cpuidkit.core.sources.save``; only a regular file
        is ever replaced)."""

        return save(self.table, _inputs.path(path), "kvm-json")

    def import_json(self, path: str | Path) -> None:
        """Read a table (KVM JSON or any format ``cpuidkit.load`` knows) through the hardened reader
        (regular files only: a FIFO or a device is refused at once, not read).  On any error the
        Lab is left exactly as it was, and the error is raised."""

        table = load(_inputs.path(path))  # raises InputError before anything changes
        self.update(table=table)

    # -- views for widgets ------------------------------------------------------------------
    def bits(self, leaf: int, subleaf: int, register: str) -> list[BitInfo]:
        """The 32 bits of one register: requested value, stored value, owner and field (bit 0 first)."""
        ref = _inputs.position(leaf, subleaf, register)
        return self._view.bits(ref.leaf, ref.subleaf, ref.register)

    def field_rows(self, scope: str | tuple[int, int] | None = None) -> list[dict]:
        """Rows for the field table: one per named field of the stored table.

        ``scope``: ``(leaf, subleaf)`` for one entry, ``"owned"`` for the fields KVM or the
        vendor module decide, ``None``/``"all"`` for every field."""
        return self._view.field_rows(check_scope(scope))

    def verdict(self) -> dict:
        """The verdict panel's content: verdict, errno, rule, explanation, source, state errors."""
        return self._view.verdict()


def check_scope(scope: object) -> str | tuple[int, int] | None:
    """A field-table scope: ``(leaf, subleaf)``, ``"owned"``, ``"all"`` or None."""
    if scope is None:
        return None
    if isinstance(scope, str) and scope in ("owned", "all"):
        return scope
    if isinstance(scope, tuple) and len(scope) == 2:
        return _inputs.entry(*scope)
    raise InputError(f"scope must be (leaf, subleaf), 'owned', 'all' or None, got {_inputs.kind(scope)}", where="scope")


def _outcome_key(o: Outcome) -> tuple:
    return (
        o.verdict,
        o.errno,
        o.stored,
        tuple((e["step"], e["errno"]) for e in o.state_errors),
        tuple(sorted(o.derived.items())),
    )


def load_table_or_keep(lab: Lab, path: str | Path) -> str:
    """Import for a button: returns a message; the Lab is unchanged on failure."""
    try:
        lab.import_json(path)
    except (CpuidkitError, OSError) as e:
        return f"import failed, nothing changed: {e}"
    return f"imported {len(lab.table)} entries from {path}"
