"""HostProfile: what the model needs to know about the machine KVM runs on.

KVM's answers depend on the host: the XSAVE sizes in 0xD.0/0xD.1 EBX come
from the host's own 0xD subleaves, ``kvm_caps.supported_xcr0`` is the host's
XCR0 ∩ ``KVM_SUPPORTED_XCR0``, the OSXSAVE/OSPKE runtime updates (before 6.14)
need host XSAVE/PKU, and guest MAXPHYADDR above the host's cannot work under
TDP.  A profile carries the host's raw CPUID (the source of all of that), and
optionally what was measured live: KVM_GET_SUPPORTED_CPUID and the vendor
module's rewrites.  Without a measurement, KVM_GET_SUPPORTED_CPUID is
*predicted* from the raw CPUID for a kernel and vendor module
(:mod:`cpuidkit.core.supported`); built-in profiles also carry the prediction
for the default kernel as data (``predicted``), labelled with that kernel and
vendor.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

from cpuidkit._files import data_dir, path_exists
from cpuidkit.core.addresses import linear_width_field
from cpuidkit.core.kernels import DEFAULT_KERNEL
from cpuidkit.core.sources import load
from cpuidkit.core.sources._common import load_json
from cpuidkit.core.sources.kvm_json import parse_doc
from cpuidkit.core.supported import VENDORS, KvmSetup, default_vendor_module, host_kernel_xcr0, predict_supported_cpuid
from cpuidkit.core.table import AMD_VENDORS, CpuidTable
from cpuidkit.core.xsave import XsaveComponent, components_of, supported_xcr0, supported_xss
from cpuidkit.errors import InputError, LookupFailed

__all__ = [
    "HostProfile",
    "builtin_hosts",
    "KVM_SUPPORTED_XCR0",
    "XFEATURE_MASK_XTILE_DATA",
    "VENDORS",
    "AMD_VENDORS",
    "check_vendor",
]


def check_vendor(vendor: object) -> str:
    """``vendor`` if it names a vendor module the model knows, else an :class:`InputError` saying which do."""
    if vendor not in VENDORS:
        raise InputError(f"vendor must be one of {', '.join(VENDORS)}, got {vendor!r}", where="vendor")
    return str(vendor)


# arch/x86/kvm/x86.c KVM_SUPPORTED_XCR0: FP SSE YMM BNDREGS BNDCSR AVX512(3) PKRU XTILE(2)
KVM_SUPPORTED_XCR0 = (1 << 0) | (1 << 1) | (1 << 2) | (1 << 3) | (1 << 4) | (0b111 << 5) | (1 << 9) | (0b11 << 17)
XFEATURE_MASK_XTILE_DATA = 1 << 18  # XFEATURE_MASK_USER_DYNAMIC
XFEATURE_MASK_MPX = 0b11 << 3


@dataclass(frozen=True, eq=False)
class HostProfile:
    """A host for the model (see the module docstring).  Compared and hashed by identity."""

    name: str
    cpuid: CpuidTable
    source: str = ""
    description: str = ""
    tdp: bool = True
    allow_smaller_maxphyaddr: bool = False
    supported: CpuidTable | None = None  # KVM_GET_SUPPORTED_CPUID, when measured
    # KVM_GET_SUPPORTED_CPUID predicted for (kernel, vendor) and stored with the profile (built-in hosts)
    predicted: CpuidTable | None = field(default=None, compare=False)
    predicted_for: tuple[str, str] | None = None
    # Measured vendor-module behaviour (pvm): see cpuidkit.kvm.vendors
    vendor_rewrite: dict | None = field(default=None, compare=False)
    guest_perm_xcr0: int | None = None  # arch_prctl(ARCH_GET_XCOMP_GUEST_PERM) when measured
    supported_xcr0: int | None = None  # KVM_GET_DEVICE_ATTR(KVM_X86_XCOMP_GUEST_SUPP) when measured
    vendor_module: str | None = None  # the vendor the measurement was made with (live hosts)
    reset_misc_enable: int = 0  # IA32_MISC_ENABLE after vCPU reset, when measured

    # -- facts derived from the host's CPUID ---------------------------------
    @property
    def vendor(self) -> str | None:
        return self.cpuid.vendor

    @property
    def maxphyaddr(self) -> int:
        ext = self.cpuid.get(0x80000000)
        e = self.cpuid.get(0x80000008)
        if ext is None or ext.eax < 0x80000008 or e is None:
            return 36
        return e.eax & 0xFF

    @property
    def linear_bits(self) -> int:
        return max(linear_width_field(self.cpuid) or 0, 48)

    @functools.cached_property
    def has_xsave(self) -> bool:
        e = self.cpuid.get(1)
        return bool(e and e.ecx >> 26 & 1)

    @functools.cached_property
    def has_pku(self) -> bool:
        e = self.cpuid.get(7, 0)
        return bool(e and e.ecx >> 3 & 1)

    @functools.cached_property
    def xsave_components(self) -> dict[int, XsaveComponent]:
        return components_of(self.cpuid)

    @functools.cached_property
    def rewrite_registers(self) -> dict[tuple[int, int], dict[str, tuple[int, int]]]:
        """The measured vendor rewrite's forced bits: (function, index) → {register: (force1, force0)}."""
        out: dict[tuple[int, int], dict[str, tuple[int, int]]] = {}
        for key, m in (self.vendor_rewrite or {}).get("registers", {}).items():
            fn, idx, reg = key.split(".")
            out.setdefault((int(fn, 16), int(idx)), {})[reg] = (m["force1"], m["force0"])
        return out

    @property
    def xcr0_mask(self) -> int:
        """User state components the host CPU enumerates (0xD.0 EDX:EAX)."""
        return supported_xcr0(self.cpuid)

    @property
    def xss_mask(self) -> int:
        """Supervisor state components the host CPU enumerates (0xD.1 EDX:ECX)."""
        return supported_xss(self.cpuid)

    def kvm_supported_xcr0(self, vendor: str = "vmx", kernel=None) -> int:
        """``kvm_caps.supported_xcr0``: host XCR0 ∩ KVM_SUPPORTED_XCR0 (no MPX on SVM).

        With a :class:`~cpuidkit.core.kernels.KernelProfile`, the kernel's own
        KVM_SUPPORTED_XCR0 applies (AMX only from 5.17: ``supported_xcr0_mask``).
        """
        if kernel is not None:
            return self.kvm_supported_xcr0(vendor) & int(kernel.value("supported_xcr0_mask"), 0)
        hit = self._predictions.get(("kvm_supported_xcr0", vendor))
        if hit is None:
            hit = self._predictions[("kvm_supported_xcr0", vendor)] = self._kvm_supported_xcr0(vendor)
        return hit

    def _kvm_supported_xcr0(self, vendor: str) -> int:
        if self.supported_xcr0 is not None:
            return self.supported_xcr0
        if self.supported is not None:
            measured = supported_xcr0(self.supported)
            # KVM_GET_SUPPORTED_CPUID hides dynamic features without permission; KVM itself knows them.
            return measured | (self.xcr0_mask & KVM_SUPPORTED_XCR0 & XFEATURE_MASK_XTILE_DATA)
        if not self.has_xsave:
            return 0
        # host XCR0 as the host kernel sets it up (components whose feature it keeps), not the raw 0xD.0
        mask = host_kernel_xcr0(self.cpuid, DEFAULT_KERNEL) & KVM_SUPPORTED_XCR0
        if vendor == "svm":
            mask &= ~XFEATURE_MASK_MPX
        return mask

    def supported_cpuid(self, xfeature_perm: int | None = None, kernel=None, vendor: str | None = None) -> CpuidTable:
        """KVM_GET_SUPPORTED_CPUID: measured where known; else predicted from the host's CPUID for
        ``kernel`` (a version or KernelProfile; default: the modelled default kernel) and the vendor module
        (:meth:`vendor_for`) by :func:`cpuidkit.core.supported.predict_supported_cpuid`.  ``xfeature_perm``
        is the process's guest XSAVE permission (default: everything but AMX TILEDATA), which hides AMX as
        the kernel's version does (``supported_cpuid_amx_filter``).  The table's ``source`` says which."""
        if self.supported is not None:
            return self.supported
        perm = self.default_guest_perm() if xfeature_perm is None else xfeature_perm
        return self._predict(DEFAULT_KERNEL if kernel is None else kernel, self.vendor_for(vendor), perm)

    def _predict(self, kernel, vendor: str, perm: int) -> CpuidTable:
        cache = self._predictions
        key = (repr(kernel) if not isinstance(kernel, str) else kernel, vendor, perm)
        hit = cache.get(key)
        if hit is None:
            setup = KvmSetup.for_vendor(
                vendor, tdp=self.tdp, allow_smaller_maxphyaddr=self.allow_smaller_maxphyaddr, xfeature_perm=perm
            )
            hit = cache[key] = predict_supported_cpuid(self.cpuid, kernel, vendor, setup=setup)
        return hit

    @functools.cached_property
    def _predictions(self) -> dict:
        return {}

    @property
    def supported_label(self) -> str:
        """Where :meth:`supported_cpuid` comes from: measured, or predicted for which kernel and vendor."""
        if self.supported is not None:
            return f"KVM_GET_SUPPORTED_CPUID measured ({self.source})"
        kernel, vendor = self.predicted_for or (DEFAULT_KERNEL, self.vendor_for(None))
        return f"KVM_GET_SUPPORTED_CPUID predicted for kernel {kernel} with {vendor} (not measured)"

    def vendor_for(self, vendor: str | None = None) -> str:
        """The KVM vendor module a vCPU on this host uses: ``vendor`` when given, else the module the host
        was measured with (live hosts: vmx/svm/pvm), else what its CPU vendor implies (AMD/Hygon: svm,
        everything else: vmx).  The one place that decides it."""
        if vendor:
            return vendor
        if self.vendor_module in VENDORS:
            return self.vendor_module
        return default_vendor_module(self.vendor)

    @property
    def supports_amx(self) -> bool:
        return bool(self.xcr0_mask & XFEATURE_MASK_XTILE_DATA)

    def default_guest_perm(self) -> int:
        """What a process may put in guest XSAVE without asking: every non-dynamic feature."""
        if self.guest_perm_xcr0 is not None:
            return self.guest_perm_xcr0
        return self.xcr0_mask & ~XFEATURE_MASK_XTILE_DATA

    # -- constructors ----------------------------------------------------------
    @classmethod
    def from_table(cls, table: CpuidTable, name: str | None = None, **kw) -> HostProfile:
        return cls(name=name or (table.source or "host"), cpuid=table, source=table.source or "", **kw)

    @classmethod
    def from_file(cls, path: str | Path, *, cpu: int | None = None, **kw) -> HostProfile:
        """Any importable dump, taken as that host's raw CPUID."""

        table = load(path, cpu=cpu)
        return cls.from_table(table, name=Path(path).stem, **kw)

    @classmethod
    def builtin(cls, name: str) -> HostProfile:
        hosts = builtin_hosts()
        if name not in hosts:
            raise LookupFailed(f"no built-in host {name!r}; built-in hosts: {', '.join(sorted(hosts))}")
        return hosts[name]

    @classmethod
    def resolve(cls, spec: str | HostProfile | None) -> HostProfile:
        """``None``/a built-in name/a file path → HostProfile.

        ``"live"`` (this machine, measured through /dev/kvm) is a backend's answer, not the core's:
        :func:`cpuidkit.live.resolve_host` takes it, and every other spec on to here.
        """
        if isinstance(spec, HostProfile):
            return spec
        if spec is None:
            return cls.builtin(DEFAULT_HOST)
        if spec == "live":
            raise LookupFailed(
                "host 'live' is this machine, measured through /dev/kvm: use cpuidkit.live.resolve_host('live') "
                "(or cpuidkit.live.host_profile()) and pass the profile"
            )
        if spec in builtin_hosts():
            return cls.builtin(spec)
        if path_exists(spec):
            return cls.from_file(spec)
        raise LookupFailed(
            f"host {spec!r} is neither a built-in host ({', '.join(sorted(builtin_hosts()))}), 'live', nor a file"
        )


DEFAULT_HOST = "sapphire-rapids"


def _load_host_file(path: Path) -> HostProfile:
    doc = load_json(path.read_text(encoding="utf-8"), str(path))
    if not isinstance(doc, dict):
        raise InputError("a host profile must be a JSON object", source=str(path))
    for key in ("name", "source", "cpuid"):
        if key not in doc:
            raise InputError(f'missing "{key}"', source=str(path))
    table = CpuidTable(parse_doc(doc["cpuid"], f"{path}:cpuid"), source=str(path))
    supported = None
    if doc.get("supported"):
        supported = CpuidTable(parse_doc(doc["supported"], f"{path}:supported"), source=str(path))
    predicted, predicted_for = None, None
    pred = doc.get("predicted_supported")
    if pred is not None:
        if not isinstance(pred, dict) or not all(k in pred for k in ("kernel", "vendor", "cpuid")):
            raise InputError('"predicted_supported" needs "kernel", "vendor" and "cpuid"', source=str(path))
        predicted_for = (str(pred["kernel"]), check_vendor(pred["vendor"]))
        predicted = CpuidTable(
            parse_doc(pred["cpuid"], f"{path}:predicted_supported"),
            source=f"{path}: KVM_GET_SUPPORTED_CPUID predicted for kernel {predicted_for[0]} with {predicted_for[1]}",
        )
    return HostProfile(
        name=doc["name"],
        cpuid=table,
        source=doc["source"],
        description=doc.get("description", ""),
        tdp=bool(doc.get("tdp", True)),
        allow_smaller_maxphyaddr=bool(doc.get("allow_smaller_maxphyaddr", False)),
        supported=supported,
        predicted=predicted,
        predicted_for=predicted_for,
        vendor_rewrite=doc.get("vendor_rewrite"),
        guest_perm_xcr0=doc.get("guest_perm_xcr0"),
        supported_xcr0=doc.get("supported_xcr0"),
        vendor_module=doc.get("vendor_module"),
    )


@functools.cache
def builtin_hosts() -> dict[str, HostProfile]:
    """The host profiles in ``data/hosts/*.json`` (register values from real dumps, source named)."""
    out = {}
    for p in sorted((data_dir() / "hosts").glob("*.json")):
        h = _load_host_file(p)
        out[h.name] = h
    return out
