"""Guest physical and linear address width: MAXPHYADDR, reserved bits, and what an access really meets.

What KVM does (arch/x86/kvm; read in 6.12.117 and 6.18.2 unless noted):

* The guest's MAXPHYADDR is CPUID 0x80000008.EAX[7:0] when 0x80000000.EAX
  reaches 0x80000008, else **36** (``cpuid_query_maxphyaddr``).  It is never
  validated.  ``reserved_gpa_bits`` = bits [MAXPHYADDR, 63].
* Those bits are reserved in the guest's paging structures
  (``__reset_rsvds_bits_mask``, clipped to bit 51, or bit 62 with PAE), in CR3
  (``kvm_vcpu_is_legal_cr3``: #GP on MOV CR3, EINVAL on KVM_SET_SREGS in
  long mode), in PAE PDPTEs (``pdptr_rsvd_bits``, checked when CR3 is loaded)
  and in IA32_APIC_BASE.
* With TDP (EPT/NPT) the **CPU** walks the guest's page tables and checks
  them against the **host's** MAXPHYADDR:
  - guest narrower than host: PTE bits between the two widths are not
    reserved, so no #PF(RSVD) where real hardware would raise one, unless
    ``allow_smaller_maxphyaddr`` (kvm_intel only; off by default with EPT;
    SVM sets it to ``!npt_enabled``), which makes KVM intercept #PF and emulate
    the faulting instruction on an EPT violation at an illegal GPA;
  - guest wider than host: PTE bits between the widths raise #PF(RSVD)
    inside the guest with no VM exit, and KVM_SET_USER_MEMORY_REGION refuses
    memslots ending above the host width (``kvm_mmu_max_gfn``; present in
    6.1.192, absent in 5.17-rc5).
* Without TDP (shadow paging; also PVM) KVM walks the guest's tables itself,
  with the guest's width: everything is architecturally faithful, and
  memslots may reach 52 bits whatever the host width.
* With 4-level TDP (no 5-level EPT/NPT) KVM cannot map GPAs at or above 2^48,
  even on a 52-bit host; that is what GuestPhysBits (0x80000008.EAX[23:16],
  reported since 6.10) tells firmware.

:func:`classify` puts it together for a memory layout and PTE probes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cpuidkit.core.addresses import has_la57, linear_width_field
from cpuidkit.core.bits import extract_bits
from cpuidkit.core.hosts import check_vendor
from cpuidkit.core.kernels import DEFAULT_KERNEL, kernel_profile
from cpuidkit.core.table import CpuidTable
from cpuidkit.errors import InputError
from cpuidkit.kvm.runtime import query_maxphyaddr
from cpuidkit.kvm.runtime import reserved_gpa_bits as _r

if TYPE_CHECKING:  # pragma: no cover
    from cpuidkit.core.hosts import HostProfile

__all__ = [
    "PAGING_MODES",
    "OUTCOMES",
    "guest_maxphyaddr",
    "guest_linear_bits",
    "guest_phys_bits_field",
    "reserved_gpa_bits",
    "paging_reserved_bits",
    "cr3_check",
    "apic_base_reserved_bits",
    "smaller_maxphyaddr",
    "usable_gpa_bits",
    "memslot_limit_check",
    "Region",
    "Access",
    "classify",
    "layout_from_dicts",
    "parse_layout_spec",
    "host_has_five_level_tdp",
    "guest_phys_bits_history",
]

PAGING_MODES = ("4-level", "5-level", "pae")
WORKS, RESERVED, MISSED, MMIO, UNMAPPABLE = (
    "works",
    "faults as reserved",
    "silently not faulted",
    "emulated MMIO",
    "unmappable",
)
OUTCOMES = (WORKS, RESERVED, MISSED, MMIO, UNMAPPABLE)
DEFAULT_MAXPHYADDR = 36
U64 = (1 << 64) - 1


def _rsvd(lo: int, hi: int) -> int:
    """``rsvd_bits(lo, hi)``: bits lo..hi set (0 when lo > hi)."""
    if lo > hi:
        return 0
    return ((1 << (hi - lo + 1)) - 1) << lo


def reserved_gpa_bits(maxphyaddr: int) -> int:
    """Bits [MAXPHYADDR, 63] (none when MAXPHYADDR ≥ 64), as ``kvm_vcpu_reserved_gpa_bits_raw``."""

    return _r(maxphyaddr)


# -- what a table says ------------------------------------------------------------------


def guest_maxphyaddr(table: CpuidTable) -> int:
    """KVM's ``cpuid_query_maxphyaddr``: 0x80000008.EAX[7:0] if reachable, else 36."""

    return query_maxphyaddr(table)


def guest_linear_bits(table: CpuidTable) -> int:
    """The linear-address width a table advertises: 0x80000008.EAX[15:8], else 57 with LA57, else 48."""
    width = linear_width_field(table)
    if width:
        return width
    return 57 if has_la57(table) else 48


def guest_phys_bits_field(table: CpuidTable) -> int:
    """0x80000008.EAX[23:16] (GuestPhysBits; 0 when absent or unset)."""
    e = table.get(0x80000008)
    return 0 if e is None else extract_bits(e.eax, 23, 16)


# -- reserved bits ----------------------------------------------------------------------


def paging_reserved_bits(
    maxphyaddr: int, mode: str = "4-level", *, nx: bool = True, gbpages: bool = True, amd: bool = False
) -> dict[str, int]:
    """Reserved bits of each paging-structure entry for this MAXPHYADDR (KVM's ``__reset_rsvds_bits_mask``).

    ``nx`` is EFER.NX (bit 63 is reserved without it), ``gbpages`` CPUID
    PDPE1GB (bit 7 of a PDPTE, i.e. a 1 GiB page, is reserved without it), and
    ``amd`` adds bit 8 of PML4Es and PML5Es (KVM's AMD-only rule; its comment
    names PDPTEs too, but the mask is applied to the top levels only).  In 4- and 5-level
    paging only bits below 52 can be MAXPHYADDR-reserved; with PAE bits up to 62.
    """
    _check_mode(mode)
    pa = reserved_gpa_bits(maxphyaddr)
    high = pa & (_rsvd(0, 62) if mode == "pae" else _rsvd(0, 51))
    if not nx:
        high |= _rsvd(63, 63)
    if mode == "pae":
        return {
            "PDPTE (PAE; checked at MOV CR3, #GP)": _rsvd(63, 63) | high | _rsvd(5, 8) | _rsvd(1, 2),
            "PDE": high,
            "PDE (2 MiB page)": high | _rsvd(13, 20),
            "PTE": high,
        }
    nonleaf8 = _rsvd(8, 8) if amd else 0
    gb = 0 if gbpages else _rsvd(7, 7)
    out = {}
    if mode == "5-level":
        out["PML5E"] = high | nonleaf8 | _rsvd(7, 7)
    out.update(
        {
            "PML4E": high | nonleaf8 | _rsvd(7, 7),
            "PDPTE": high | gb,
            "PDPTE (1 GiB page)": high | gb | _rsvd(13, 29),
            "PDE": high,
            "PDE (2 MiB page)": high | _rsvd(13, 20),
            "PTE": high,
        }
    )
    return out


def cr3_check(
    cr3: int, maxphyaddr: int, *, long_mode: bool = True, pcide: bool = False, lam: bool = False
) -> str | None:
    """Why KVM refuses this CR3 (MOV CR3 → #GP; KVM_SET_SREGS → EINVAL in long mode), or None.

    ``kvm_set_cr3`` strips bit 63 (no-flush) when CR4.PCIDE=1, ``kvm_vcpu_is_legal_cr3``
    ignores the LAM bits 61/62 when the guest has LAM, then every bit at or
    above MAXPHYADDR must be 0.  Outside long mode a 32-bit CR3 never has such bits.
    Under TDP a guest MOV CR3 is usually not intercepted: the CPU then checks
    against the host's width instead (see :func:`classify`).
    """
    if not 0 <= cr3 <= U64:
        raise InputError(f"CR3 must be a 64-bit value, got {cr3:#x}")
    value = cr3
    if pcide:
        value &= ~(1 << 63)
    if lam:
        value &= ~((1 << 61) | (1 << 62))
    if not long_mode:
        value &= 0xFFFFFFFF
    bad = value & reserved_gpa_bits(maxphyaddr)
    if bad:
        return f"CR3 {cr3:#x} has bits {bad:#x} at or above MAXPHYADDR {maxphyaddr}"
    return None


def apic_base_reserved_bits(maxphyaddr: int, *, x2apic: bool = True) -> int:
    """IA32_APIC_BASE bits a write may not set: GPA bits ≥ MAXPHYADDR, bits 0-7 and 9, EXTD without X2APIC."""
    return (reserved_gpa_bits(maxphyaddr) | 0x2FF | (0 if x2apic else 1 << 10)) & U64


# -- what the host can do -------------------------------------------------------------------


def smaller_maxphyaddr(vendor: str, *, tdp: bool = True, module_param: bool = False) -> dict:
    """Whether a guest MAXPHYADDR below the host's is emulated faithfully (``allow_smaller_maxphyaddr``).

    VMX: the kvm_intel module parameter (read-only after load, default off with
    EPT), forced on without EPT.  SVM: ``!npt_enabled``, not tunable.  PVM:
    shadow paging (the live kernel here reports KVM_CAP_SMALLER_MAXPHYADDR=1).
    """
    check_vendor(vendor)
    if not tdp or vendor == "pvm":
        return {
            "available": True,
            "mechanism": "shadow paging",
            "cost": "none beyond shadow paging itself: KVM walks the guest's page tables with the guest's width",
            "source": "arch/x86/kvm/mmu/mmu.c reset_guest_rsvds_bits_mask()",
        }
    if vendor == "svm":
        return {
            "available": False,
            "mechanism": "none with NPT",
            "cost": "not available: with NPT the CPU sets Accessed bits before the #NPF, so KVM cannot emulate "
            "the reserved-bit fault; guest PTE bits between the widths are silently not reserved",
            "source": "arch/x86/kvm/svm/svm.c svm_hardware_setup(): allow_smaller_maxphyaddr = !npt_enabled",
        }
    if module_param:
        return {
            "available": True,
            "mechanism": "kvm_intel.allow_smaller_maxphyaddr=1 with EPT",
            "cost": "KVM intercepts #PF (vmx_need_pf_intercept) and, on an EPT violation at a GPA illegal for "
            "the guest, emulates the instruction to inject #PF(RSVD) (handle_ept_violation); "
            "instructions KVM cannot emulate end in an emulation-failure exit; from 6.18 IBT and SHSTK "
            "are not offered to guests while the parameter is on",
            "source": "arch/x86/kvm/vmx/vmx.c, vmx.h; KVM_CAP_SMALLER_MAXPHYADDR (cap 185, since 5.9)",
        }
    return {
        "available": False,
        "mechanism": "kvm_intel.allow_smaller_maxphyaddr=0 (the default with EPT)",
        "cost": "guest PTE bits between the guest and host widths are not reserved: no #PF(RSVD) where real "
        "hardware would raise one; load kvm_intel with allow_smaller_maxphyaddr=1 to fix it at the "
        "price of #PF interception and instruction emulation",
        "source": "arch/x86/kvm/vmx/vmx.c module_param(allow_smaller_maxphyaddr)",
    }


def usable_gpa_bits(host_bits: int, *, tdp: bool = True, five_level_tdp: bool = True) -> int:
    """The widest GPA KVM can map: the host width under TDP (at most 48 with 4-level TDP); 52 without TDP."""
    if not tdp:
        return 52
    return host_bits if five_level_tdp else min(host_bits, 48)


def host_has_five_level_tdp(host: HostProfile) -> bool:
    """Our proxy for 5-level EPT/NPT: CPUID LA57 on the host.

    The real answer is a VMX capability MSR (IA32_VMX_EPT_VPID_CAP bit 7) on
    Intel and the host kernel's own paging mode on AMD (``get_npt_level``);
    CPUs without LA57 (e.g. Sierra Forest) have no 5-level EPT.
    """
    return has_la57(host.cpuid)


def memslot_limit_check(kernel: str | tuple[int, int] | None) -> str:
    """Whether KVM_SET_USER_MEMORY_REGION refuses memslots above the host width in this kernel.

    ``"refused"`` (6.1 and later), ``"accepted"`` (5.17 and earlier: the slot is
    created but cannot be mapped) or ``"unknown"`` (5.18-6.0, not read).
    """

    return kernel_profile(kernel or DEFAULT_KERNEL).value("memslot_above_host_width")


def guest_phys_bits_history(kernel: str | None = None) -> dict:
    """What KVM does with GuestPhysBits (0x80000008.EAX[23:16]) in ``kernel`` (from the kernel profile)."""

    k = kernel_profile(kernel or DEFAULT_KERNEL)
    rep, con = k.behaviour("guest_phys_bits_reported"), k.behaviour("guest_phys_bits_consumed")
    return {
        "kernel": k.name,
        "reported_in_supported_cpuid": rep.value == "true",
        "reported": rep.summary,
        "consumed": con.value,
        "consumed_summary": con.summary,
        "source": f"{rep.source}; {con.source}",
    }


# -- the classification ------------------------------------------------------------------------


@dataclass(frozen=True)
class Region:
    """A piece of the guest's physical memory map.

    ``kind``: ``"ram"``, ``"bar64"`` (a 64-bit PCI BAR) or ``"hole"`` (nothing
    there).  ``memslot``: whether the VMM backs it with a KVM memslot (RAM
    always; a BAR only for assigned or shared-memory devices; an emulated
    device's BAR has none, so its accesses exit to the VMM as MMIO).
    """

    name: str
    start: int
    size: int
    kind: str = "ram"
    memslot: bool | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("ram", "bar64", "hole"):
            raise InputError(f"region {self.name!r}: kind must be ram, bar64 or hole, got {self.kind!r}")
        if self.start < 0 or self.size <= 0 or self.start + self.size > 1 << 64:
            raise InputError(f"region {self.name!r}: start {self.start:#x} size {self.size:#x} is not a 64-bit range")

    @property
    def end(self) -> int:
        return self.start + self.size

    @property
    def backed(self) -> bool:
        if self.memslot is not None:
            return self.memslot
        return self.kind == "ram"


@dataclass(frozen=True)
class Access:
    """What an access meets (see :func:`classify`)."""

    target: str  # region name, or "PTE bit N"
    kind: str  # "region" or "pte"
    start: int | None
    end: int | None
    bit: int | None  # highest address bit involved
    outcome: str  # one of OUTCOMES
    faithful: bool  # the same as on real hardware with the guest's MAXPHYADDR
    memslot: str | None  # "ok", "refused", "accepted (unusable)", "unknown", "none" (MMIO) or None for PTE probes
    explanation: str

    def as_dict(self) -> dict:
        return {
            "target": self.target,
            "kind": self.kind,
            "start": self.start,
            "end": self.end,
            "bit": self.bit,
            "outcome": self.outcome,
            "faithful": self.faithful,
            "memslot": self.memslot,
            "explanation": self.explanation,
        }


def _check_mode(mode: str) -> None:
    if mode not in PAGING_MODES:
        raise InputError(f"paging mode must be one of {', '.join(PAGING_MODES)}, got {mode!r}")


@dataclass
class _Ctx:
    guest: int
    host: int
    mode: str
    tdp: bool
    vendor: str
    smaller: dict
    usable: int
    memslot_rule: str
    notes: list[str] = field(default_factory=list)


def _bit_outcome(c: _Ctx, k: int) -> tuple[str, bool, str]:
    """Outcome of a translation whose guest paging entry has address bit ``k`` set (k < 52, or PAE k ≤ 62)."""
    G, H = c.guest, c.host
    if not c.tdp:
        if k >= G:
            return (
                RESERVED,
                True,
                (
                    f"bit {k} ≥ guest MAXPHYADDR {G}: KVM walks the guest page tables itself "
                    "(shadow paging) and injects #PF(RSVD), as hardware would"
                ),
            )
        return WORKS, True, f"bit {k} < guest MAXPHYADDR {G}: an ordinary address bit (shadow paging maps it)"
    if k >= H:
        if k >= G:
            return (
                RESERVED,
                True,
                (
                    f"bit {k} ≥ both widths (guest {G}, host {H}): the CPU raises #PF(RSVD), "
                    "as real hardware with the guest's width would"
                ),
            )
        return (
            RESERVED,
            False,
            (
                f"bit {k} is an address bit for the guest (MAXPHYADDR {G}) but ≥ the host's "
                f"{H}: the CPU walks the guest's page tables against the host width and raises "
                "#PF(RSVD) inside the guest, with no VM exit -- a fault real hardware would not give"
            ),
        )
    if k >= G:
        if c.smaller["available"]:
            return (
                RESERVED,
                True,
                (
                    f"bit {k} ≥ guest MAXPHYADDR {G} but < host {H}: the CPU does not fault; with "
                    "allow_smaller_maxphyaddr KVM intercepts the EPT violation at the illegal GPA "
                    "and emulates the instruction to inject #PF(RSVD) (slow; an instruction KVM "
                    "cannot emulate ends in an emulation-failure exit)"
                ),
            )
        return (
            MISSED,
            False,
            (
                f"bit {k} ≥ guest MAXPHYADDR {G} but < host {H}: real hardware would raise "
                f"#PF(RSVD); under {'NPT' if c.vendor == 'svm' else 'EPT'} without "
                "allow_smaller_maxphyaddr the CPU does not, and the access goes on to a GPA that "
                "has no memslot, so it becomes an MMIO exit to the VMM"
            ),
        )
    if k >= c.usable:
        return (
            UNMAPPABLE,
            False,
            (
                f"bit {k} is legal for guest and host, but KVM cannot map GPAs at or above "
                f"2^{c.usable} with 4-level TDP; the vCPU keeps faulting (guests hung this way on "
                "52-bit hosts without 5-level EPT before firmware honoured GuestPhysBits; "
                "the exact symptom is UNVERIFIED here)"
            ),
        )
    return WORKS, True, f"bit {k} < both widths (guest {G}, host {H}): an ordinary address bit"


def _pte_probe(c: _Ctx, k: int) -> Access:
    if c.mode == "pae":
        limit = 62
    else:
        limit = 63
    if not 12 <= k <= limit:
        raise InputError(f"PTE address bit must be 12..{limit} in {c.mode} paging, got {k}")
    if k >= 52:
        if c.mode == "pae":
            out, faithful, why = (
                RESERVED,
                True,
                (
                    f"bit {k}: with PAE, bits 52-62 are always reserved "
                    "(MAXPHYADDR ≤ 52 on every CPU): #PF(RSVD) everywhere"
                ),
            )
        elif k == 63:
            out, faithful, why = WORKS, True, "bit 63 is XD (execute-disable), not an address bit"
        else:
            out, faithful, why = (
                WORKS,
                True,
                (
                    f"bit {k}: in {c.mode} paging bits 52-62 are ignored by address "
                    "translation (software-available, or protection keys in 59-62)"
                ),
            )
        return Access(f"PTE bit {k}", "pte", None, None, k, out, faithful, None, why)
    out, faithful, why = _bit_outcome(c, k)
    return Access(f"PTE bit {k}", "pte", None, None, k, out, faithful, None, why)


def _bands(c: _Ctx) -> list[int]:
    pts = {c.guest, c.usable} | ({c.host} if c.tdp else set())
    return sorted(1 << b for b in pts if 0 < b < 64)


def _region_parts(c: _Ctx, r: Region) -> Iterable[tuple[int, int]]:
    cuts = [p for p in _bands(c) if r.start < p < r.end]
    edges = [r.start, *cuts, r.end]
    return zip(edges, edges[1:])


def _region_access(c: _Ctx, r: Region, lo: int, hi: int) -> Access:
    k = (hi - 1).bit_length() - 1  # highest address bit used in this part (same band throughout)
    name = r.name if (lo, hi) == (r.start, r.end) else f"{r.name} [{lo:#x}, {hi:#x})"
    # the memslot, if the VMM creates one for this part
    if not r.backed:
        slot = "none"
    elif c.tdp and hi > 1 << c.host:
        slot = {"refused": "refused", "accepted": "accepted (unusable)", "unknown": "unknown"}[c.memslot_rule]
    elif hi > 1 << 52:
        slot = "refused"
    else:
        slot = "ok"
    out, faithful, why = _bit_outcome(c, max(k, 12))
    if out == WORKS:
        if not r.backed:
            out = MMIO
            what = "an emulated device's BAR" if r.kind == "bar64" else "no memory"
            why = f"{why}; {what} there and no memslot: KVM exits to the VMM (KVM_EXIT_MMIO) on each access"
    elif out == MISSED and r.backed and slot == "ok":
        why = (
            f"{why.split(', so it becomes')[0]}; here it lands in this {r.kind} region although the guest "
            f"placed it above its own MAXPHYADDR {c.guest} (a layout real hardware could never reach)"
        )
    if slot == "refused":
        why += (
            "; KVM_SET_USER_MEMORY_REGION refuses a memslot ending above "
            f"2^{c.host if c.tdp else 52} (EINVAL), so the VMM cannot back this part"
        )
    elif slot == "accepted (unusable)":
        why += f"; this kernel still creates a memslot above 2^{c.host}, but it can never be mapped"
    elif slot == "unknown":
        why += "; whether this kernel refuses a memslot above the host width is not known here (5.18-6.0)"
    if k >= c.guest and out != MISSED:
        why += f" (the region lies above the guest's own MAXPHYADDR {c.guest})"
    return Access(name, "region", lo, hi, k, out, faithful, slot, why)


def classify(
    guest_bits: int,
    host_bits: int,
    mode: str = "4-level",
    layout: Iterable[Region] = (),
    ptes: Iterable[int] = (),
    *,
    tdp: bool = True,
    vendor: str = "vmx",
    allow_smaller_maxphyaddr: bool = False,
    five_level_tdp: bool | None = None,
    kernel: str | None = None,
) -> list[Access]:
    """For each region part and each PTE probe: works, faults as reserved, silently not faulted, or emulated MMIO.

    ``guest_bits``/``host_bits`` are the guest's CPUID MAXPHYADDR and the
    host's; ``mode`` the guest's paging mode; ``layout`` its RAM and 64-bit
    BARs; ``ptes`` address bits to test in a guest paging entry (12..51, and
    52..62 to see the PAE difference).  ``tdp=False`` is shadow paging (PVM
    runs that way).  ``allow_smaller_maxphyaddr`` is the kvm_intel module
    parameter (ignored for svm, where NPT rules it out).  ``five_level_tdp``
    defaults to "the host is wider than 48 bits" (pass False for a 52-bit host
    without 5-level EPT, such as Sierra Forest).  A region that crosses
    2^guest, 2^host or 2^usable is reported in parts, each as if it were its
    own memslot.  ``faithful`` says whether real hardware with the guest's
    MAXPHYADDR would behave the same.
    """
    _check_mode(mode)
    check_vendor(vendor)
    for name, v in (("guest", guest_bits), ("host", host_bits)):
        if not 1 <= v <= 64:
            raise InputError(f"{name} MAXPHYADDR must be 1..64 for this classification, got {v}")
    if vendor == "pvm":
        tdp = False
    if five_level_tdp is None:
        five_level_tdp = host_bits > 48
    smaller = smaller_maxphyaddr(vendor, tdp=tdp, module_param=allow_smaller_maxphyaddr)
    smaller = dict(smaller, available=smaller["available"] and guest_bits < host_bits or not tdp)
    c = _Ctx(
        guest=min(guest_bits, 52),
        host=min(host_bits, 52),
        mode=mode,
        tdp=tdp,
        vendor=vendor,
        smaller=smaller,
        usable=usable_gpa_bits(min(host_bits, 52), tdp=tdp, five_level_tdp=five_level_tdp),
        memslot_rule=memslot_limit_check(kernel),
    )
    out: list[Access] = []
    for r in layout:
        for lo, hi in _region_parts(c, r):
            out.append(_region_access(c, r, lo, hi))
    for k in ptes:
        out.append(_pte_probe(c, int(k)))
    return out


def layout_from_dicts(items: Iterable[dict]) -> list[Region]:
    """Regions from ``[{"name":…, "start":…, "size":…, "kind":…, "memslot":…}]`` (numbers or "0x…" strings)."""
    out = []
    for i, d in enumerate(items):
        if not isinstance(d, dict):
            raise InputError(f"layout entry {i} must be an object")
        try:
            start = int(d["start"], 0) if isinstance(d["start"], str) else int(d["start"])
            size = int(d["size"], 0) if isinstance(d["size"], str) else int(d["size"])
        except (KeyError, ValueError, TypeError, OverflowError):
            raise InputError(f"layout entry {i} needs numeric start and size", where=f"entry {i}") from None
        out.append(Region(str(d.get("name", f"region{i}")), start, size, str(d.get("kind", "ram")), d.get("memslot")))
    return out


def parse_layout_spec(text: str) -> list[Region]:
    """Regions from ``"ram:ram:0:0x80000000,pci64:bar64:0x8000000000000:0x4000000000"`` (NAME:KIND:START:SIZE, …)."""
    out = []
    for i, part in enumerate(p for p in text.split(",") if p.strip()):
        bits = part.strip().split(":")
        if len(bits) != 4:
            raise InputError(f"layout item {i} ({part!r}) must be NAME:KIND:START:SIZE")
        name, kind, start_text, size_text = bits
        try:
            start, size = int(start_text, 0), int(size_text, 0)
        except ValueError:
            raise InputError(f"layout item {i} ({part!r}): START and SIZE must be numbers like 0x80000000") from None
        out.append(Region(name, start, size, kind))  # its own checks name the region (kind, range)
    return out
