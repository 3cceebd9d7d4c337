"""Predict KVM_GET_SUPPORTED_CPUID: what a kernel's KVM offers on a host, from the host's CPUID.

``predict_supported_cpuid(host_cpuid, kernel, vendor)`` follows the kernel code path:

1. the host kernel's view of the CPU (``boot_cpu_has``): the raw CPUID plus what the kernel synthesizes or
   hides (``data/host-kernel-cpu-features.csv``: speculation-control flags, bug flags, errata, the XSAVE
   features it enables);
2. KVM's capability words (``kvm_set_cpu_caps`` and the vendor hook ``svm_set_cpu_caps``/``vmx_set_cpu_caps``):
   ``data/kvm-supported-cpuid.csv``, ``cap`` rows (which bits each word may offer and how), then ``set``/``clear``
   rows in file order;
3. the leaves ``kvm_dev_ioctl_get_cpuid`` emits: ``get_cpuid_func`` over 0, 0x80000000, 0xC0000000 and the KVM
   leaves, ``__do_cpuid_func``/``do_host_cpuid`` per leaf (the ``leaf`` rows name the version-dependent choices).

The kernel is a version (``"6.12"``, a point release ``"6.1.192"`` — stable backports apply to those — or a
:class:`~cpuidkit.core.kernels.KernelProfile`); the vendor module is ``vmx``, ``svm`` or ``pvm``.  What CPUID cannot
show (module parameters, MSR-only facts, microcode) is a :class:`KvmSetup` with upstream defaults.

This lives in core because :class:`~cpuidkit.core.hosts.HostProfile` answers ``supported_cpuid()`` with it when
nothing was measured; it is data about KVM, like :mod:`cpuidkit.core.kernels`, not a simulation of a vCPU.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, fields, replace
from typing import NamedTuple

from cpuidkit._files import data_path, read_csv
from cpuidkit.core.bits import FLAG_SIGNIFICANT_INDEX
from cpuidkit.core.kernels import NEWEST, OLDEST, KernelProfile, parse_release, parse_version
from cpuidkit.core.table import AMD_VENDORS, CpuidEntry, CpuidTable
from cpuidkit.core.xsave import XFEATURE_MASK_XTILE_CFG, XFEATURE_MASK_XTILE_DATA, compacted_size, components_of
from cpuidkit.core.xsave import standard_size as _standard_size
from cpuidkit.errors import InputError

__all__ = [
    "KvmSetup",
    "SupportedRow",
    "HostKernelRow",
    "predict_supported_cpuid",
    "default_vendor_module",
    "VENDORS",
    "supported_rows",
    "host_kernel_rows",
    "rows_for",
    "leaf_rule",
    "KVM_SIGNATURE",
    "PVM_OWNED_LEAVES",
]

VENDORS = ("vmx", "svm", "pvm")
# "KVMKVMKVM\0\0\0" as EBX, ECX, EDX of 0x40000000
KVM_SIGNATURE = (0x4B4D564B, 0x564B4D56, 0x0000004D)
KVM_CPUID_FEATURES = 0x40000001
KVM_MAX_CPUID_ENTRIES = 256  # arch/x86/include/asm/kvm_host.h: kvm_dev_ioctl_get_cpuid clamps nent to it
# Leaves whose supported values the (out-of-tree, unpublished) pvm module decides itself, or that follow capability
# bits of those leaves: left out when predictions are compared with a pvm kernel (measured, docs/lab.md).
PVM_OWNED_LEAVES = (0x1, 0x7, 0xD, 0x1D, 0x1E, 0x24)
_XSAVE_FPSSE = 0b11
_XFEATURE_MASK_MPX = 0b11 << 3
_CET_ALL = (1 << 11) | (1 << 12)


@dataclass(frozen=True)
class KvmSetup:
    """What decides KVM's answer besides the host CPUID: module parameters and facts CPUID cannot show.

    Defaults are upstream's module defaults on a bare-metal host with current microcode and Debian's kernel
    configuration.  ``None`` means "derive it from the host CPUID" (documented per field).
    """

    tdp: bool = True  # npt=1 / ept=1 with hardware support (pvm: False, shadow paging)
    nested: bool = True  # kvm_amd / kvm_intel nested=1
    enable_pmu: bool = True
    nrips: bool = True
    vls: bool = True
    vgif: bool = True
    vnmi: bool = True
    lbrv: bool = True
    tsc_scaling: bool = True
    sev: bool = False  # needs firmware and ASIDs: off unless told
    sev_es: bool = False
    sgx: bool | None = None  # vmx enable_sgx; None: the host kernel has SGX and SGX_LC
    allow_smaller_maxphyaddr: bool = False
    tsc_aux_msr: bool = True  # MSR_TSC_AUX usable as a user-return MSR
    sched_info: bool = True  # CONFIG_SCHED_INFO (Debian: y)
    mitigations: bool = True  # False: mitigations=off on the host kernel's command line (the lab boots so)
    smt: bool | None = None  # SMT possible; None: leaf 0xB says more than one thread per core, else True
    five_level_tdp: bool | None = None  # None: the host has LA57
    arch_cap_ssb_no: bool = False  # IA32_ARCH_CAPABILITIES.SSB_NO
    eibrs_pbrsb: bool = True  # Intel: X86_BUG_EIBRS_PBRSB (ARCH_CAPABILITIES); AMD is whitelisted
    amd_sbpb_microcode: bool = True
    amd_tsa_microcode: bool = True
    amd_erratum_1386_microcode: bool = False
    tsx_ctrl_off: bool = True  # CONFIG_X86_INTEL_TSX_MODE_OFF on CPUs with TSX_CTRL
    vmx_invpcid: bool = True
    vmx_xsaves: bool = True
    vmx_rdtscp: bool = True
    vmx_waitpkg: bool = True
    vmx_umip_emulation: bool = True
    vmx_mpx: bool = True
    vmx_pt_host_guest: bool = False  # kvm_intel pt_mode=0 (system) by default
    vmx_pebs: bool = False
    vmx_cet: bool = True
    xfeature_perm: int | None = None  # the process's guest XSAVE permission; None: default (no AMX TILEDATA)

    @classmethod
    def for_vendor(cls, vendor: str, **changes) -> KvmSetup:
        """Defaults for a vendor module: pvm uses shadow paging (no TDP), measured on this project's machines."""
        base = cls(tdp=False) if vendor == "pvm" else cls()
        return replace(base, **changes) if changes else base

    def flag(self, name: str) -> bool | None:
        return getattr(self, name, None) if name in _SETUP_FIELDS else None


_SETUP_FIELDS = frozenset(f.name for f in fields(KvmSetup))


# -- the data -----------------------------------------------------------------------------


def _bound(text: str, where: str) -> tuple[int, int] | None | str:
    if not text:
        return None
    if text == "-":
        return "-"
    try:
        return parse_version(text)
    except InputError as e:
        raise InputError(e.detail, source=where) from None


def _stable(text: str, where: str) -> tuple[tuple[int, int, int], ...]:
    out = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        rel = parse_release(part)
        if rel is None:
            raise InputError(f"stable must list point releases X.Y.Z, got {part!r}", source=where)
        out.append(rel)
    return tuple(out)


class _Versioned(NamedTuple):
    since: tuple[int, int] | None | str
    until: tuple[int, int] | None
    stable: tuple[tuple[int, int, int], ...]


def _applies(v: _Versioned, version: tuple[int, int], release: tuple[int, int, int] | None) -> bool:
    """Mainline X.Y in [since, until); a point release also gets the backports listed for its series."""
    if v.since != "-":
        lo = v.since
        if (lo is None or version >= lo) and (v.until is None or version < v.until):  # type: ignore[operator]
            return True
    if release is not None:
        for s in v.stable:
            if s[:2] == version and release >= s:
                return True
    return False


@dataclass(frozen=True)
class SupportedRow:
    """A row of ``data/kvm-supported-cpuid.csv`` (see its header)."""

    part: str
    leaf: int
    subleaf: int
    register: str
    bit: int | None
    name: str
    rule: str
    versions: _Versioned
    vendor: str
    function: str
    file: str
    read_in: str
    verified: str
    note: str
    line: int

    def applies(self, version: tuple[int, int], release: tuple[int, int, int] | None, vendor: str) -> bool:
        return (self.vendor in ("all", vendor)) and _applies(self.versions, version, release)

    @property
    def key(self) -> tuple[int, int, str]:
        return (self.leaf, self.subleaf, self.register)


@dataclass(frozen=True)
class HostKernelRow:
    """A row of ``data/host-kernel-cpu-features.csv`` (see its header)."""

    name: str
    action: str
    leaf: int | None
    subleaf: int
    register: str
    bit: int | None
    condition: str
    versions: _Versioned
    function: str
    file: str
    read_in: str
    verified: str
    note: str
    line: int


def _int(text: str, where: str, what: str) -> int | None:
    if text == "":
        return None
    try:
        return int(text, 0)
    except ValueError:
        raise InputError(f"{what} must be a number, got {text!r}", source=where) from None


def _versioned(r: dict[str, str], where: str, *, until_dash: bool = True) -> _Versioned:
    """A row's since/until/stable columns (``until`` may not be "-" where ``until_dash`` is False)."""
    until = _bound(r["until"], where)
    if until == "-" and not until_dash:
        raise InputError('until cannot be "-"', source=where)
    return _Versioned(_bound(r["since"], where), until, _stable(r["stable"], where))  # type: ignore[arg-type]


def _sources(r: dict[str, str]) -> tuple[str, str, str, str, str]:
    """A row's function, file, read_in, verified and note columns."""
    return (r["function"], r["file"], r["read_in"], r["verified"], r["note"])


_PARTS = ("cap", "set", "clear", "leaf", "pv")
_CAP_RULES = ("F", "SF", "EMULATED", "SYNTH", "PASSTHROUGH", "NEVER")
_REGS = ("eax", "ebx", "ecx", "edx", "")


@functools.cache
def supported_rows() -> tuple[SupportedRow, ...]:
    """Every row of ``data/kvm-supported-cpuid.csv``, checked (bad rows are an :class:`InputError` naming the row)."""
    src = str(data_path("kvm-supported-cpuid.csv"))
    out = []
    for n, r in enumerate(read_csv("kvm-supported-cpuid.csv"), start=1):
        where = f"{src}: data row {n} ({r.get('name')})"
        part = r["part"]
        if part not in _PARTS:
            raise InputError(f"part must be one of {', '.join(_PARTS)}, got {part!r}", source=where)
        if r["register"] not in _REGS:
            raise InputError(f"register must be eax/ebx/ecx/edx, got {r['register']!r}", source=where)
        if part == "cap" and r["rule"] not in _CAP_RULES:
            raise InputError(f"a cap rule is one of {', '.join(_CAP_RULES)}, got {r['rule']!r}", source=where)
        if r["vendor"] not in ("all", *VENDORS):
            raise InputError(f"vendor must be all/vmx/svm/pvm, got {r['vendor']!r}", source=where)
        bit = _int(r["bit"], where, "bit")
        if part in ("cap", "set", "clear", "pv") and (bit is None or not 0 <= bit < 32 or not r["register"]):
            raise InputError("a bit row needs a register and a bit 0..31", source=where)
        versions = _versioned(r, where, until_dash=False)
        if part in ("set", "clear") or (part == "pv" and r["rule"] not in ("", "NEVER")):
            _check_condition(r["rule"], where)
        out.append(
            SupportedRow(
                part,
                _int(r["leaf"], where, "leaf") or 0,
                _int(r["subleaf"], where, "subleaf") or 0,
                r["register"],
                bit,
                r["name"],
                r["rule"],
                versions,
                r["vendor"],
                *_sources(r),
                n,
            )
        )
    return tuple(out)


@functools.cache
def host_kernel_rows() -> tuple[HostKernelRow, ...]:
    """Every row of ``data/host-kernel-cpu-features.csv``, checked."""
    src = str(data_path("host-kernel-cpu-features.csv"))
    out = []
    for n, r in enumerate(read_csv("host-kernel-cpu-features.csv"), start=1):
        where = f"{src}: data row {n} ({r.get('name')})"
        action = r["action"]
        if action not in ("raw", "synthetic", "set", "clear", "xfeature"):
            raise InputError(f"action must be raw/synthetic/set/clear/xfeature, got {action!r}", source=where)
        if action == "raw" and (r["register"] not in _REGS[:4] or _int(r["bit"], where, "bit") is None):
            raise InputError("a raw row needs leaf, subleaf, register and bit", source=where)
        if action != "raw":
            _check_condition(r["condition"], where)
        out.append(
            HostKernelRow(
                r["name"],
                action,
                _int(r["leaf"], where, "leaf"),
                _int(r["subleaf"], where, "subleaf") or 0,
                r["register"],
                _int(r["bit"], where, "bit"),
                r["condition"],
                _versioned(r, where),
                *_sources(r),
                n,
            )
        )
    return tuple(out)


@functools.cache
def _positions() -> dict[str, tuple[int, int, str, int]]:
    """Feature name → raw CPUID position, from both tables (positions do not depend on the version)."""
    pos: dict[str, tuple[int, int, str, int]] = {}
    for row in supported_rows():
        if row.part in ("cap", "set", "clear") and row.bit is not None:
            pos.setdefault(row.name, (row.leaf, row.subleaf, row.register, row.bit))
    for h in host_kernel_rows():
        if h.action == "raw" and h.leaf is not None and h.bit is not None:
            pos[h.name] = (h.leaf, h.subleaf, h.register, h.bit)
    return pos


# -- the condition language -------------------------------------------------------------

_TOKEN = re.compile(r"\s*(?:(\()|(\))|(&)|(\|)|(!)|([A-Za-z_][A-Za-z0-9_]*(?::[0-9A-Za-z_\-/]+)?))")


def _tokens(text: str, where: str) -> list[str]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise InputError(f"cannot read the condition {text!r} at {text[pos:]!r}", source=where)
        out.append(next(g for g in m.groups() if g is not None))
        pos = m.end()
    return out


@functools.cache
def _parse(text: str) -> tuple:
    """The condition as a nested tuple: ("or", ...), ("and", ...), ("not", x) or ("atom", name)."""
    toks = _tokens(text, "condition")
    if not toks:
        return ("true",)
    pos = 0

    def chain(op: str, tag: str, operand):
        """``operand (op operand)*`` as one operand or ``(tag, operand, ...)``."""
        nonlocal pos
        items = [operand()]
        while pos < len(toks) and toks[pos] == op:
            pos += 1
            items.append(operand())
        return items[0] if len(items) == 1 else (tag, *items)

    def expr():
        return chain("|", "or", term)

    def term():
        return chain("&", "and", factor)

    def factor():
        nonlocal pos
        if pos >= len(toks):
            raise InputError(f"the condition {text!r} ends too early", source="condition")
        t = toks[pos]
        pos += 1
        if t == "!":
            return ("not", factor())
        if t == "(":
            inner = expr()
            if pos >= len(toks) or toks[pos] != ")":
                raise InputError(f"unbalanced parentheses in {text!r}", source="condition")
            pos += 1
            return inner
        if t in (")", "&", "|"):
            raise InputError(f"unexpected {t!r} in {text!r}", source="condition")
        return ("atom", t)

    tree = expr()
    if pos != len(toks):
        raise InputError(f"unexpected {toks[pos]!r} in {text!r}", source="condition")
    return tree


def _check_condition(text: str, where: str) -> None:
    try:
        _parse(text)
    except InputError as e:
        raise InputError(e.detail, source=where) from None


def _ranges(spec: str) -> list[tuple[int, int]]:
    out = []
    for part in spec.split("/"):
        lo, _, hi = part.partition("-")
        out.append((int(lo, 16), int(hi or lo, 16)))
    return out


# -- the host and its kernel -------------------------------------------------------------


class _Host:
    """The host CPUID as the host kernel reads it, and the host kernel's feature view (one kernel version)."""

    def __init__(self, table: CpuidTable, version, release, setup: KvmSetup):
        self.table = table
        self.version = version
        self.release = release
        self.setup = setup
        self.vendor = table.vendor or ""
        self._exact: dict[tuple[int, int], CpuidEntry] = {}
        for e in table:
            self._exact.setdefault((e.function, e.index), e)
        e1 = self.entry(1)
        sig = e1.eax if e1 else 0
        base_family = sig >> 8 & 0xF
        self.family = base_family + (sig >> 20 & 0xFF if base_family == 0xF else 0)
        self.model = (sig >> 4 & 0xF) | ((sig >> 16 & 0xF) << 4 if base_family in (0x6, 0xF) else 0)
        self.max_basic = table.max_basic_leaf or 0
        ext = self.entry(0x80000000)
        self.max_ext = ext.eax if ext and ext.eax >= 0x80000000 else 0
        rows: dict[str, list[HostKernelRow]] = {}
        for h in host_kernel_rows():
            if h.action != "raw" and _applies(h.versions, version, release):
                rows.setdefault(h.name, []).append(h)
        self._rows = rows
        self._memo: dict[str, bool] = {}

    # raw CPUID
    def entry(self, function: int, index: int = 0) -> CpuidEntry | None:
        """The CPU's answer for (function, index): the dump's entry with exactly that index (a dump may leave
        out the significant-index flag; KVM's first-match lookup would then answer every subleaf with subleaf 0)."""
        return self._exact.get((function, index))

    def in_range(self, function: int) -> bool:
        if function >= 0x80000000:
            return function <= self.max_ext
        return function <= self.max_basic

    def raw(self, name: str, pos: tuple[int, int, str, int] | None = None) -> bool:
        pos = pos or _positions().get(name)
        if pos is None:
            return False
        leaf, sub, reg, bit = pos
        if not self.in_range(leaf):
            return False
        e = self.entry(leaf, sub)
        return bool(e and e.reg(reg) >> bit & 1)

    def cpuid_instruction(self, leaf: int, sub: int) -> CpuidEntry | None:
        """What the CPUID instruction answers, also for a leaf above the maximum: Intel CPUs (and QEMU's TCG,
        whatever vendor it shows, identified by its "TCGTCGTCGTCG" hypervisor signature) answer an out-of-range
        leaf with the highest basic leaf (same subleaf); AMD CPUs with zeros."""
        if self.in_range(leaf):
            return self.entry(leaf, sub)
        hv = self.entry(0x40000000) if self.has("HYPERVISOR") else None
        tcg = hv is not None and (hv.ebx, hv.ecx, hv.edx) == (0x54474354, 0x43544743, 0x47435447)
        if self.vendor == "GenuineIntel" or tcg:
            return self.entry(self.max_basic, sub)
        return None

    def kernel_keeps(self, name: str) -> bool:
        """False when the host kernel clears a raw feature (a ``clear`` row that holds), else True."""
        rows = self._rows.get(name, [])
        if any(r.action == "synthetic" for r in rows):
            return self.has(name)
        return not any(r.action == "clear" and self.cond(r.condition) for r in rows)

    # the kernel's view
    def has(self, name: str) -> bool:
        hit = self._memo.get(name)
        if hit is not None:
            return hit
        self._memo[name] = False  # a cycle reads as False (the tables have none; a test checks)
        rows = self._rows.get(name, [])
        synth = [r for r in rows if r.action == "synthetic"]
        if synth:
            value = self.cond(synth[-1].condition)
        else:
            value = self.raw(name)
            for r in rows:
                if r.action == "set" and self.cond(r.condition):
                    value = True
                elif r.action == "clear" and self.cond(r.condition):
                    value = False
        self._memo[name] = value
        return value

    def fact(self, name: str) -> bool:
        if ":" in name:
            what, spec = name.split(":", 1)
            value = {"family": self.family, "model": self.model}.get(what)
            if value is None:
                raise InputError(f"unknown fact {name!r} (family:..., model:...)", source="condition")
            return any(lo <= value <= hi for lo, hi in _ranges(spec))
        if name in ("amd", "intel", "hygon", "centaur", "zhaoxin"):
            return (
                self.vendor
                == {
                    "amd": "AuthenticAMD",
                    "intel": "GenuineIntel",
                    "hygon": "HygonGenuine",
                    "centaur": "CentaurHauls",
                    "zhaoxin": "  Shanghai  ",
                }[name]
            )
        if name == "arch_perfmon_leaf":
            e = self.entry(0xA) if self.in_range(0xA) else None
            return bool(e and e.eax & 0xFF and (e.eax >> 8 & 0xFF) > 1)
        if name == "smt":
            if self.setup.smt is not None:
                return self.setup.smt
            e = self.entry(0xB) if self.in_range(0xB) else None
            return bool(e and e.ecx >> 8 & 0xFF == 1 and e.ebx & 0xFFFF > 1)
        flag = self.setup.flag(name)
        if flag is None:
            if name == "sgx":  # vmx enable_sgx: the host kernel's SGX driver runs (SGX with launch control)
                return self.has("SGX") and self.has("SGX_LC")
            raise InputError(f"unknown name {name!r} in a condition", source="condition")
        return bool(flag)

    def cond(self, text: str, caps: dict | None = None, extra: dict | None = None) -> bool:
        return self._eval(_parse(text), caps, extra or {})

    def _eval(self, node, caps, extra) -> bool:
        kind = node[0]
        if kind == "true":
            return True
        if kind == "or":
            return any(self._eval(n, caps, extra) for n in node[1:])
        if kind == "and":
            return all(self._eval(n, caps, extra) for n in node[1:])
        if kind == "not":
            return not self._eval(node[1], caps, extra)
        name = node[1]
        if name.startswith("cap:"):
            if caps is None:
                raise InputError(f"{name} is only meaningful in kvm-supported-cpuid.csv", source="condition")
            pos = _positions()[name[4:]]
            return bool(caps.get(pos[:3], 0) >> pos[3] & 1)
        if name in extra:
            return bool(extra[name])
        if name[0].isupper():
            return self.has(name)
        return self.fact(name)

    # XSAVE as the host kernel enables it
    @functools.cached_property
    def xcr0(self) -> int:
        """The host kernel's XCR0 (fpu_user_cfg.max_features)."""
        if not self.has("XSAVE"):
            return 0
        e = self.entry(0xD, 0) if self.in_range(0xD) else None
        if e is None or (e.eax & _XSAVE_FPSSE) != _XSAVE_FPSSE:
            return 0
        return (e.eax | e.edx << 32) & self._xfeatures(user=True)

    @functools.cached_property
    def xss(self) -> int:
        """The host kernel's IA32_XSS (supervisor states it enables)."""
        if not self.xcr0 or not self.has("XSAVES"):
            return 0
        e = self.entry(0xD, 1)
        return (e.ecx | e.edx << 32) & self._xfeatures(user=False) if e else 0

    def _xfeatures(self, user: bool) -> int:
        mask = _XSAVE_FPSSE if user else 0
        for rows in self._rows.values():
            for r in rows:
                if r.action == "xfeature" and r.bit is not None and self.cond(r.condition):
                    supervisor = r.bit in (8, 10, 11, 12, 13, 14, 15, 16)
                    if supervisor != user:
                        mask |= 1 << r.bit
        return mask


# -- the prediction -------------------------------------------------------------------------


def _version_of(kernel) -> tuple[tuple[int, int], tuple[int, int, int] | None, str]:
    if isinstance(kernel, KernelProfile):
        return kernel.version, kernel.release, repr(kernel)
    text = str(kernel)
    return parse_version(text), parse_release(text), text


def rows_for(kernel, vendor: str, part: str | None = None) -> list[SupportedRow]:
    """The rows of ``data/kvm-supported-cpuid.csv`` that hold for a kernel and vendor module (file order)."""
    version, release, _ = _version_of(kernel)
    return [r for r in supported_rows() if (part is None or r.part == part) and r.applies(version, release, vendor)]


def leaf_rule(kernel, rule: str, vendor: str = "svm") -> str | None:
    """The value of a ``leaf`` rule for a kernel (None: no row holds)."""
    hits = [r.rule for r in rows_for(kernel, vendor, "leaf") if r.name == rule]
    return hits[-1] if hits else None


def _caps(host: _Host, rows: list[SupportedRow], setup: KvmSetup, pmu: dict) -> dict[tuple[int, int, str], int]:
    caps: dict[tuple[int, int, str], int] = {}
    rules = {r.name: r.rule for r in rows if r.part == "leaf"}
    unchecked = rules.get("kvm_only_raw_read") == "unchecked"
    kvm_only = set(filter(None, rules.get("kvm_only_words", "").split(";")))
    for r in rows:
        if r.part != "cap" or r.rule == "NEVER":
            continue
        assert r.bit is not None
        pos = (r.leaf, r.subleaf, r.register, r.bit)
        if r.rule in ("F", "SF") and unchecked and f"{r.leaf:#x}.{r.subleaf}.{r.register}" in kvm_only:
            e = host.cpuid_instruction(r.leaf, r.subleaf)  # KVM-only word, raw CPUID read without a range check
            offered = bool(e and e.reg(r.register) >> r.bit & 1) and (r.rule == "F" or host.kernel_keeps(r.name))
        elif r.rule in ("F", "SF"):  # the kernel's word & the mask & the raw CPUID at this very position
            offered = host.raw(r.name, pos) and host.kernel_keeps(r.name)
        elif r.rule == "PASSTHROUGH":
            offered = host.raw(r.name, pos)
        elif r.rule == "SYNTH":
            offered = host.has(r.name)
        else:  # EMULATED
            offered = True
        if offered:
            caps[r.key] = caps.get(r.key, 0) | 1 << r.bit
    extra = {
        "cet_xss": (host.xss & _CET_ALL) == _CET_ALL,
        "amd_pmu_core_counters": pmu["gp"] >= 6,
        "amd_pmu_version_2": pmu["version"] == 2,
    }
    for r in rows:
        if r.part not in ("set", "clear"):
            continue
        assert r.bit is not None
        if host.cond(r.rule, caps, extra):
            if r.part == "set":
                caps[r.key] = caps.get(r.key, 0) | 1 << r.bit
            else:
                caps[r.key] = caps.get(r.key, 0) & ~(1 << r.bit)
    return caps


def _cap(caps, leaf: int, sub: int, reg: str) -> int:
    return caps.get((leaf, sub, reg), 0)


def _has_cap(caps, name: str) -> bool:
    pos = _positions().get(name)
    return bool(pos and caps.get(pos[:3], 0) >> pos[3] & 1)


def _pmu(host: _Host, setup: KvmSetup, vendor: str) -> dict:
    """kvm_pmu_cap as kvm_init_pmu_capability() and perf derive it (AMD: counters from PERFCTR_CORE/0x80000022)."""
    if not setup.enable_pmu:
        return {"version": 0, "gp": 0, "width": 0, "mask_len": 0, "mask": 0, "fixed": 0, "fixed_width": 0}
    if host.vendor in AMD_VENDORS:
        if host.raw("PERFMON_V2") and host.in_range(0x80000022):
            e = host.entry(0x80000022)
            gp = e.ebx & 0xF if e else 0
            return {"version": 2, "gp": min(gp, 6), "width": 48, "mask_len": 0, "mask": 0, "fixed": 0, "fixed_width": 0}
        gp = 6 if host.raw("PERFCTR_CORE") else 4
        return {"version": 0, "gp": gp, "width": 48, "mask_len": 0, "mask": 0, "fixed": 0, "fixed_width": 0}
    e = host.entry(0xA) if host.in_range(0xA) else None
    if e is None or not host.has("ARCH_PERFMON") or host.raw("HYBRID_CPU"):
        return {"version": 0, "gp": 0, "width": 0, "mask_len": 0, "mask": 0, "fixed": 0, "fixed_width": 0}
    version = e.eax & 0xFF
    fixed = e.edx & 0x1F
    if version > 1:
        fixed = max(fixed, 3)
    return {
        "version": min(version, 2),
        "gp": min(e.eax >> 8 & 0xFF, 8),
        "width": e.eax >> 16 & 0xFF,
        "mask_len": e.eax >> 24 & 0xFF,
        "mask": e.ebx,
        "fixed": min(fixed, 3),
        "fixed_width": e.edx >> 5 & 0xFF,
    }


def _indexed(function: int, flags_rule: str | None) -> bool:
    base = {0x4, 0x7, 0xB, 0xD, 0xF, 0x10, 0x12, 0x14, 0x17, 0x18, 0x1F, 0x8000001D}
    if flags_rule == "5.17":
        base |= {0x1D, 0x1E, 0x24}
    return function in base


class _Builder:
    def __init__(self, host: _Host, kernel, vendor: str, setup: KvmSetup):
        self.host = host
        self.kernel = kernel
        self.vendor = vendor
        self.setup = setup
        self.rows = rows_for(kernel, vendor)
        self.rules = {r.name: r.rule for r in self.rows if r.part == "leaf"}
        self.pmu = _pmu(host, setup, vendor)
        self.caps = _caps(host, self.rows, setup, self.pmu)
        self.out: list[CpuidEntry] = []

    def rule(self, name: str, default: str = "") -> str:
        return self.rules.get(name, default)

    # do_host_cpuid()
    def host_entry(self, function: int, index: int) -> list[int]:
        if len(self.out) >= KVM_MAX_CPUID_ENTRIES:
            raise InputError(
                f"KVM_GET_SUPPORTED_CPUID would need more than {KVM_MAX_CPUID_ENTRIES} entries for this host "
                f"(at leaf {function:#x}.{index}): the kernel answers E2BIG",
                where="host_cpuid",
            )
        h = self.host
        above_host = function >= 0x80000000 and function > h.max_ext and self.rule("ext_above_host") == "zero"
        if (function & 0xC0000000) == 0x40000000 or above_host:
            self.out.append(CpuidEntry(function, index, 0))
            return [len(self.out) - 1]
        e = h.entry(function, index)
        flags = FLAG_SIGNIFICANT_INDEX if _indexed(function, self.rule("indexed_flag")) else 0
        regs = (e.eax, e.ebx, e.ecx, e.edx) if e is not None else (0, 0, 0, 0)
        self.out.append(CpuidEntry(function, index, flags, *regs))
        return [len(self.out) - 1]

    def set(self, pos: int, **regs: int) -> None:
        self.out[pos] = self.out[pos].replace(**{k: v & 0xFFFFFFFF for k, v in regs.items()})

    def get(self, pos: int) -> CpuidEntry:
        return self.out[pos]

    def zero(self, pos: int) -> None:
        self.set(pos, eax=0, ebx=0, ecx=0, edx=0)

    # get_cpuid_func()
    def run(self) -> list[CpuidEntry]:
        centaur = {"centaur": ("CentaurHauls",), "centaur_zhaoxin": ("CentaurHauls", "  Shanghai  ")}
        allowed = centaur.get(self.rule("centaur", "centaur"), ("CentaurHauls",))
        for base in (0, 0x80000000, 0xC0000000, 0x40000000):
            if base == 0xC0000000 and self.host.vendor not in allowed:
                continue
            self.func(base)
            limit = self.out[-1].eax
            f = base + 1
            while f <= limit:
                self.func(f)
                f += 1
        return self.out

    def func(self, f: int) -> None:  # noqa: C901 - one case per leaf, as __do_cpuid_func
        h, caps = self.host, self.caps
        (p,) = self.host_entry(f, 0)
        e = self.get(p)
        if f == 0:
            self.set(p, eax=min(e.eax, int(self.rule("basic_limit", "0x1f"), 0)))
        elif f == 1:
            self.set(p, ecx=_cap(caps, 1, 0, "ecx"), edx=_cap(caps, 1, 0, "edx"))
        elif f == 2:
            pass
        elif f in (4, 0x8000001D):
            i = 1
            while self.get(len(self.out) - 1).eax & 0x1F:
                self.host_entry(f, i)
                i += 1
        elif f == 6:
            self.set(p, eax=4, ebx=0, ecx=0, edx=0)
        elif f == 7:
            n = min(e.eax, int(self.rule("leaf7_subleaves", "1")))
            self.set(p, eax=n, ebx=_cap(caps, 7, 0, "ebx"), ecx=_cap(caps, 7, 0, "ecx"), edx=_cap(caps, 7, 0, "edx"))
            if n >= 1:
                (q,) = self.host_entry(7, 1)
                edx = _cap(caps, 7, 1, "edx") if self.rule("leaf7_1_edx") == "caps" else 0
                ecx = _cap(caps, 7, 1, "ecx") if self.rule("leaf7_1_ecx") == "caps" else 0
                self.set(q, eax=_cap(caps, 7, 1, "eax"), ebx=0, ecx=ecx, edx=edx)
            if n >= 2:
                (q,) = self.host_entry(7, 2)
                self.set(q, eax=0, ebx=0, ecx=0, edx=_cap(caps, 7, 2, "edx"))
        elif f == 9:
            if self.rule("leaf9", "zero") != "host":
                self.zero(p)
        elif f == 0xA:
            self.pmu_leaf(p)
        elif f in (0xB, 0x1F):
            if self.rule("topology", "none") == "none":
                self.set(p, eax=0, ebx=0, ecx=0)
            else:
                i = 1
                while self.get(len(self.out) - 1).ecx & 0xFF00:
                    self.host_entry(f, i)
                    i += 1
        elif f == 0xD:
            self.xsave_leaf(p)
        elif f == 0x12:
            how = self.rule("sgx", "zero")
            if how == "zero" or not _has_cap(caps, "SGX"):
                self.zero(p)
            else:
                self.set(p, eax=_cap(caps, 0x12, 0, "eax"), ebx=e.ebx & 1)  # SGX_MISC_EXINFO
                (q,) = self.host_entry(0x12, 1)
                # DEBUG | MODE64BIT | PROVISIONKEY | EINITTOKENKEY | KSS, and AEXNOTIFY (bit 10) from 6.3
                mask = 0xB6 | (1 << 10 if how == "caps_aexnotify" else 0)
                self.set(q, eax=self.get(q).eax & mask, ebx=0)
        elif f == 0x14:
            if not _has_cap(caps, "INTEL_PT"):
                self.zero(p)
            else:
                for i in range(1, e.eax + 1):
                    self.host_entry(0x14, i)
        elif f in (0x1D, 0x1E) and self.rule("amx", "zero") == "caps":
            if not _has_cap(caps, "AMX_TILE"):
                self.zero(p)
            elif f == 0x1D:
                for i in range(1, e.eax + 1):
                    self.host_entry(0x1D, i)
        elif f == 0x24 and self.rule("avx10") == "caps":
            if not _has_cap(caps, "AVX10"):
                self.zero(p)
            else:
                version = min(e.ebx & 0xFF, 1)
                self.set(p, eax=0, ebx=_cap(caps, 0x24, 0, "ebx") | version, ecx=0, edx=0)
        elif f == 0x40000000:
            self.set(p, eax=KVM_CPUID_FEATURES, ebx=KVM_SIGNATURE[0], ecx=KVM_SIGNATURE[1], edx=KVM_SIGNATURE[2])
        elif f == KVM_CPUID_FEATURES:
            eax = 0
            for r in self.rows:
                if r.part == "pv" and r.rule != "NEVER" and (not r.rule or h.cond(r.rule)):
                    eax |= 1 << (r.bit or 0)
            self.set(p, eax=eax, ebx=0, ecx=0, edx=0)
        elif f == 0x80000000:
            eax = min(e.eax, int(self.rule("ext_limit", "0x8000001f"), 0))
            if (
                self.rule("ext_raise_0x80000021") == "true"
                and eax >= 0x8000001D
                and (h.has("LFENCE_RDTSC") or not h.has("BUG_NULL_SEG"))
            ):
                eax = max(eax, 0x80000021)
            self.set(p, eax=eax)
        elif f == 0x80000001:
            ebx_mask = self.rule("ext1_ebx_mask", "none")
            ebx = e.ebx if ebx_mask == "none" else e.ebx & ~int(ebx_mask, 0)
            self.set(p, ebx=ebx, ecx=_cap(caps, f, 0, "ecx"), edx=_cap(caps, f, 0, "edx"))
        elif f == 0x80000005:
            if self.rule("ext5", "zero") != "host":
                self.zero(p)
        elif f == 0x80000006:
            edx_mask = self.rule("ext6_edx_mask", "none")
            if edx_mask != "none":
                self.set(p, edx=e.edx & ~int(edx_mask, 0))
        elif f == 0x80000007:
            x86_power = e.edx
            edx = (e.edx & (1 << 8)) if self.rule("ext7_edx") != "caps" else _cap(caps, f, 0, "edx")
            self.set(p, eax=0, ebx=0, ecx=0, edx=edx & x86_power)
        elif f == 0x80000008:
            self.phys_leaf(p)
        elif f == 0x8000000A:
            if not _has_cap(caps, "SVM"):
                self.zero(p)
            else:
                self.set(p, eax=1, ebx=8, ecx=0, edx=_cap(caps, f, 0, "edx"))
        elif f == 0x80000019:
            self.set(p, ecx=0, edx=0)
        elif f == 0x8000001A:
            if self.rule("ext1a", "host") == "eax_low3":
                self.set(p, eax=e.eax & 7, ebx=0, ecx=0, edx=0)
        elif f == 0x8000001E:
            if self.rule("ext1e", "host") == "zero":
                self.zero(p)
        elif f == 0x8000001F:
            if self.rule("ext1f", "caps") == "host_if_sev":
                if not h.has("SEV"):
                    self.zero(p)
            elif not _has_cap(caps, "SEV"):
                self.zero(p)
            else:
                ebx = e.ebx & ~0xFC0  # PhysAddrReduction: the adjusted MAXPHYADDR is in 0x80000008
                if self.rule("ext1f") == "caps_no_vmpl":
                    ebx &= 0xFFF  # NumVMPL
                self.set(p, eax=_cap(caps, f, 0, "eax"), ebx=ebx)
        elif f == 0x80000021:
            ecx = _cap(caps, f, 0, "ecx") if self.rule("ext21_ecx") == "caps" else 0
            self.set(p, eax=_cap(caps, f, 0, "eax"), ebx=0, ecx=ecx, edx=0)
        elif f == 0x80000022 and self.rule("ext22") == "pmu":
            if not self.setup.enable_pmu or not _has_cap(caps, "PERFMON_V2"):
                self.zero(p)
            else:
                self.set(p, eax=_cap(caps, f, 0, "eax"), ebx=self.pmu["gp"] & 0xF, ecx=0, edx=0)
        elif f == 0xC0000000:
            self.set(p, eax=min(e.eax, 0xC0000004))
        elif f == 0xC0000001:
            self.set(p, edx=_cap(caps, f, 0, "edx"))
        else:
            self.zero(p)

    def pmu_leaf(self, p: int) -> None:
        how = self.rule("pmu_leaf", "kvm_pmu_cap")
        pmu = self.pmu
        if self.host.vendor in AMD_VENDORS or not pmu["version"]:
            pmu = dict.fromkeys(pmu, 0)
        if how == "kvm_pmu_cap" and (not self.setup.enable_pmu or not self.host.has("ARCH_PERFMON")):
            self.zero(p)
            return
        if how == "perf" and not pmu["version"]:
            self.zero(p)
            return
        eax = pmu["version"] | pmu["gp"] << 8 | pmu["width"] << 16 | pmu["mask_len"] << 24
        edx = pmu["fixed"] | pmu["fixed_width"] << 5
        if pmu["version"] or how == "perf_anythread":
            edx |= 1 << 15
        self.set(p, eax=eax, ebx=pmu["mask"], ecx=0, edx=edx)

    def supported_xcr0(self) -> int:
        """kvm_caps.supported_xcr0 and the permission filter of __do_cpuid_func (AMX: kvm-behaviours.csv rows)."""
        h = self.host
        kernel = KernelProfile(".".join(map(str, h.version)))
        xcr0 = h.xcr0 & int(kernel.value("supported_xcr0_mask"), 0)
        if self.vendor == "svm":
            xcr0 &= ~_XFEATURE_MASK_MPX
        elif self.vendor == "vmx" and not (self.setup.vmx_mpx and (xcr0 & _XFEATURE_MASK_MPX) == _XFEATURE_MASK_MPX):
            xcr0 &= ~_XFEATURE_MASK_MPX
        perm = self.setup.xfeature_perm
        how = kernel.value("supported_cpuid_amx_filter")
        if how == "none":
            return xcr0
        if perm is None:
            perm = h.xcr0 & ~XFEATURE_MASK_XTILE_DATA
        if how == "both":  # kvm_get_filtered_xcr0 (6.4+)
            if xcr0 & XFEATURE_MASK_XTILE_DATA:
                xcr0 &= perm
                if not xcr0 & XFEATURE_MASK_XTILE_DATA:
                    xcr0 &= ~XFEATURE_MASK_XTILE_CFG
            return xcr0
        return xcr0 & (perm | ~XFEATURE_MASK_XTILE_DATA & ((1 << 64) - 1))

    def supported_xss(self) -> int:
        kernel = KernelProfile(".".join(map(str, self.host.version)))
        xss = self.host.xss & int(kernel.value("supported_xss"), 0)
        if not _has_cap(self.caps, "XSAVES"):
            return 0
        if (xss & _CET_ALL) != _CET_ALL:
            xss &= ~_CET_ALL
        return xss

    def xsave_leaf(self, p: int) -> None:
        comps = components_of(self.host.table)
        xcr0 = self.supported_xcr0()
        xss = self.supported_xss()
        e = self.get(p)
        size = _standard_size(comps, xcr0)
        self.set(p, eax=e.eax & xcr0, ebx=size, ecx=size, edx=e.edx & (xcr0 >> 32))
        if not xcr0:
            return
        (q,) = self.host_entry(0xD, 1)
        d1 = self.get(q)
        eax = _cap(self.caps, 0xD, 1, "eax")
        align = self.rule("xsave_compacted_align", "true") == "true"
        ebx = compacted_size(comps, xcr0 | xss, honour_alignment=align) if eax & 0b1010 else 0
        self.set(q, eax=eax, ebx=ebx, ecx=d1.ecx & xss, edx=d1.edx & (xss >> 32))
        keep_ecx = self.rule("xsave_subleaves", "ecx_kept") == "ecx_kept"
        for i in range(2, 64):
            if xcr0 >> i & 1:
                supervisor = False
            elif xss >> i & 1 and keep_ecx:
                supervisor = True
            else:
                continue
            (q,) = self.host_entry(0xD, i)
            c = self.get(q)
            if not c.eax or (keep_ecx and bool(c.ecx & 1) != supervisor):
                self.out.pop()  # WARN_ON_ONCE path: the entry is dropped
                continue
            if keep_ecx:
                ecx = c.ecx if _has_cap(self.caps, "XFD") else c.ecx & ~4
                self.set(q, ecx=ecx, edx=0)
            else:
                self.set(q, ecx=0, edx=0)

    def phys_leaf(self, p: int) -> None:
        e = self.get(p)
        how = self.rule("phys_bits", "guest_phys_bits")
        virt = max(e.eax >> 8 & 0xFF, 48)
        phys = e.eax & 0xFF
        x86_phys_bits = phys  # boot_cpu_data.x86_phys_bits (no memory-encryption reduction modelled)
        if how == "gpa_field":
            gpa = e.eax >> 16 & 0xFF
            if not self.setup.tdp and self.host.version >= (5, 15):
                gpa = x86_phys_bits
            elif not gpa:
                gpa = phys
            eax = gpa | virt << 8
        elif how == "raw":
            eax = (phys if self.setup.tdp else x86_phys_bits) | virt << 8
        else:
            if not self.setup.tdp:
                eax = x86_phys_bits | virt << 8
            else:
                five = self.setup.five_level_tdp
                if five is None:
                    five = self.host.raw("LA57")
                g = phys if five else min(phys, 48)
                eax = phys | virt << 8 | g << 16
        ecx = e.ecx
        mask = self.rule("ext8_ecx_mask", "none")
        if mask != "none":
            ecx &= ~int(mask, 0)
        self.set(p, eax=eax, ebx=_cap(self.caps, 0x80000008, 0, "ebx"), ecx=ecx, edx=0)


def default_vendor_module(cpu_vendor: str | None) -> str:
    """The KVM vendor module a host with this CPU vendor string runs: svm on AMD and Hygon, vmx otherwise."""
    return "svm" if cpu_vendor in AMD_VENDORS else "vmx"


def host_kernel_xcr0(host_cpuid: CpuidTable, kernel="6.18") -> int:
    """The XCR0 the host kernel enables on a CPU with this CPUID (``fpu_user_cfg.max_features``, set up by
    ``fpu__init_system_xstate()``): the components 0xD.0 enumerates whose CPUID feature the kernel keeps
    (``xsave_cpuid_features``; e.g. no PKRU without PKU, as on the EPYC 7502, whose 0xD.0 lists it).  KVM's
    ``kvm_caps.supported_xcr0`` starts from this, not from the raw 0xD.0."""
    if not isinstance(host_cpuid, CpuidTable):
        raise InputError("host_cpuid must be a CpuidTable (the host's raw CPUID)", where="host_cpuid")
    version, release, _label = _version_of(kernel)
    vendor = default_vendor_module(host_cpuid.vendor)
    return _Host(host_cpuid, version, release, KvmSetup.for_vendor(vendor)).xcr0


def predict_supported_cpuid(
    host_cpuid: CpuidTable,
    kernel="6.18",
    vendor: str | None = None,
    *,
    setup: KvmSetup | None = None,
) -> CpuidTable:
    """KVM_GET_SUPPORTED_CPUID as ``kernel`` with ``vendor`` (vmx/svm/pvm) would answer on a host with this CPUID.

    ``vendor`` defaults to svm on AMD/Hygon CPUs and vmx otherwise; ``setup`` to :meth:`KvmSetup.for_vendor`.
    The table's ``source`` says it is a prediction and for which kernel and vendor.
    """
    if not isinstance(host_cpuid, CpuidTable):
        raise InputError("host_cpuid must be a CpuidTable (the host's raw CPUID)", where="host_cpuid")
    vendor = vendor or default_vendor_module(host_cpuid.vendor)
    if vendor not in VENDORS:
        raise InputError(f"vendor must be one of {', '.join(VENDORS)}, got {vendor!r}", where="vendor")
    version, release, label = _version_of(kernel)
    if not OLDEST <= version <= NEWEST:
        raise InputError(
            f"kernel {label} is outside the modelled range {'.'.join(map(str, OLDEST))}-{'.'.join(map(str, NEWEST))}",
            where="kernel",
        )
    setup = setup or KvmSetup.for_vendor(vendor)
    host = _Host(host_cpuid, version, release, setup)
    entries = _Builder(host, kernel, vendor, setup).run()
    return CpuidTable(entries, source=f"predicted KVM_GET_SUPPORTED_CPUID (kernel {label}, {vendor})")
