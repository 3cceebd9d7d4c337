"""The state a notebook explores, and KVM's answer for it, without any widget.

A :class:`Lab` holds what a VMM would hand KVM: the CPUID table, the kernel
version, the vendor module, the host, and the vCPU state written after
KVM_SET_CPUID2 (CR4, XCR0, IA32_XSS, IA32_APIC_BASE, IA32_MISC_ENABLE, quirks,
HLT exits, "has run").  Every change re-asks the core (:func:`cpuidkit.check`)
and tells the listeners *what* changed, so a widget redraws only its part.

The widgets in :mod:`cpuidkit.ui.widgets` are thin views of a Lab; tests drive
a Lab directly and compare it with ``check()``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from cpuidkit.core.addresses import LINEAR_WIDTH, MAXPHYADDR
from cpuidkit.core.bits import FieldRef, extract_bits
from cpuidkit.core.catalog import Field, catalog
from cpuidkit.core.hosts import HostProfile, check_vendor
from cpuidkit.core.kernels import DEFAULT_KERNEL, parse_version
from cpuidkit.core.sources import load, save
from cpuidkit.core.table import CpuidTable
from cpuidkit.errors import CpuidkitError
from cpuidkit.kvm.check import Outcome, VcpuSetup, check
from cpuidkit.kvm.ownership import Ownership
from cpuidkit.live import resolve_host

__all__ = ["Lab", "BitInfo", "DEFAULT_HOST", "load_table_or_keep"]

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


class Lab:
    """A CPUID table, a kernel, a vendor module, a host and a vCPU state; and KVM's answer."""

    def __init__(
        self,
        host: HostProfile | str | None = DEFAULT_HOST,
        kernel: str = DEFAULT_KERNEL,
        vendor: str = "vmx",
        table: CpuidTable | None = None,
        state: VcpuSetup | None = None,
    ):
        self.host = resolve_host(host)
        self.kernel = kernel
        self.vendor = vendor
        self.table = table if table is not None else self.host.supported_cpuid()
        self.state = state or VcpuSetup()
        self._listeners: list[Listener] = []
        self._owners: dict[tuple[int, int, str], list[Ownership]] | None = None
        self.outcome: Outcome = self._evaluate()

    def __repr__(self) -> str:
        return (
            f"Lab(host={self.host.name!r}, kernel={self.kernel!r}, vendor={self.vendor!r}, "
            f"{len(self.table)} entries, {self.outcome.verdict})"
        )

    # -- the core's answer ---------------------------------------------------------------
    def _evaluate(self) -> Outcome:
        self._owners = None
        return check(self.table, kernel=self.kernel, vendor=self.vendor, host=self.host, state=self.state)

    def expected(self) -> Outcome:
        """A fresh ``check()`` of the current configuration (what every view must agree with)."""
        return check(self.table, kernel=self.kernel, vendor=self.vendor, host=self.host, state=self.state)

    @property
    def accepted(self) -> bool:
        return self.outcome.accepted

    def on_change(self, listener: Listener) -> None:
        """Call ``listener(lab, changed)`` after every change; ``changed`` names what changed
        (``table``, ``kernel``, ``vendor``, ``host``, ``state``, ``outcome``)."""
        self._listeners.append(listener)

    def _changed(self, what: set) -> None:
        before = self.outcome
        self.outcome = self._evaluate()
        if _outcome_key(before) != _outcome_key(self.outcome):
            what = what | {"outcome"}
        for listener in list(self._listeners):
            listener(self, what)

    # -- edits -----------------------------------------------------------------------------
    def update(
        self,
        *,
        table: CpuidTable | None = None,
        kernel: str | None = None,
        vendor: str | None = None,
        host: HostProfile | str | None = None,
        state: VcpuSetup | None = None,
    ) -> None:
        """Change several things at once (one evaluation, one notification).  A bad value raises
        before anything changes."""
        what: set = set()
        new_host = resolve_host(host) if host is not None else None
        if kernel is not None and kernel != self.kernel:
            parse_version(kernel)
            self.kernel = kernel
            what.add("kernel")
        if vendor is not None and vendor != self.vendor:
            check_vendor(vendor)
            self.vendor = vendor
            what.add("vendor")
        if new_host is not None and new_host is not self.host:
            self.host = new_host
            what.add("host")
        if table is not None and table != self.table:
            self.table = table
            what.add("table")
        if state is not None and state != self.state:
            self.state = state
            what.add("state")
        if what:
            self._changed(what)

    def set_table(self, table: CpuidTable) -> None:
        self.update(table=table)

    def set_bit(self, leaf: int, subleaf: int, register: str, bit: int, value: int) -> None:
        self.update(table=self.table.set_field(FieldRef(leaf, subleaf, register, bit, bit), int(bool(value))))

    def set_field(self, spec: str | FieldRef, value: int) -> None:
        self.update(table=self.table.set_field(spec, value))

    def get_field(self, spec: str | FieldRef) -> int | None:
        return self.table.get_field(spec)

    @property
    def linear_width(self) -> int | None:
        return self.table.get_field(LINEAR_WIDTH)

    def set_linear_width(self, bits: int) -> None:
        """0x80000008.EAX[15:8]: KVM accepts only 0, 48 and 57 (``kvm_check_cpuid``)."""
        self.set_field(LINEAR_WIDTH, bits)

    @property
    def maxphyaddr(self) -> int | None:
        return self.table.get_field(MAXPHYADDR)

    def set_maxphyaddr(self, bits: int) -> None:
        """0x80000008.EAX[7:0]: never checked by KVM; ``cpuid_query_maxphyaddr`` reads it."""
        self.set_field(MAXPHYADDR, bits)

    def set_state(self, **changes) -> None:
        """Change the vCPU state (``cr4=…``, ``xcr0=…``, ``hlt_exits_disabled=True`` …)."""
        if "quirks_disabled" in changes:
            changes["quirks_disabled"] = tuple(changes["quirks_disabled"])
        self.update(state=replace(self.state, **changes))

    def run(self) -> None:
        """KVM_RUN: from now on KVM_SET_CPUID2 accepts only the table the vCPU holds (5.17+)."""
        if not self.state.has_run:
            self.update(state=replace(self.state, has_run=True, previous=self.table))

    def reset_vcpu(self) -> None:
        """A new vCPU: reset state, not run."""
        self.update(state=VcpuSetup(xfeature_permission=self.state.xfeature_permission))

    # -- export / import ----------------------------------------------------------------
    def export_json(self, path: str | Path) -> Path:
        """Write the table as KVM JSON, atomically (``cpuidkit.core.sources.save``)."""

        return save(self.table, path, "kvm-json")

    def import_json(self, path: str | Path) -> None:
        """Read a table (KVM JSON or any format ``cpuidkit.load`` knows).  On any error the
        Lab is left exactly as it was, and the error is raised."""

        table = load(path)  # raises InputError before anything changes
        self.update(table=table)

    # -- views for widgets ------------------------------------------------------------------
    def _owner_index(self) -> dict[tuple[int, int, str], list[Ownership]]:
        if self._owners is None:
            idx: dict[tuple[int, int, str], list[Ownership]] = {}
            for o in self.outcome.fields:
                idx.setdefault((o.field.leaf, o.subleaf, o.field.register), []).append(o)
            self._owners = idx
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
        """Rows for the field table: one per named field of the stored table.

        ``scope``: ``(leaf, subleaf)`` for one entry, ``"owned"`` for the fields KVM or the
        vendor module decide, ``None``/``"all"`` for every field."""
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
        """The verdict panel's content: verdict, errno, rule, explanation, source, state errors."""
        d = self.outcome.as_dict()
        return {
            k: d[k]
            for k in ("verdict", "errno", "rule", "explanation", "source", "kernel", "vendor", "host", "state_errors")
        }


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
