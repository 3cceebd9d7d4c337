"""The field catalog (``data/fields.csv``): shape, coverage, and positions checked
against two independent references -- Linux's kcpuid table and the running
kernel's own decoder (/proc/cpuinfo against raw CPUID from the ``cpuid`` tool).
"""

from __future__ import annotations

import functools
import random
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import KCPUID_CSV, ROOT, all_dumps
from cpuidkit._files import read_csv
from cpuidkit.core.catalog import TEXT_FIELDS, Field, catalog, describe_field
from cpuidkit.core.sources import load
from cpuidkit.core.table import CpuidEntry, CpuidTable

OWNERS = {"unknown", "passthrough", "runtime", "derived", "vendor", "not-virtualized", "checked"}

# Every leaf and subleaf the catalog must describe.
COVERED: dict[int, tuple[int, ...]] = {
    0x0: (0,),
    0x1: (0,),
    0x6: (0,),
    0x7: (0, 1, 2),
    0xD: (0, 1, *range(2, 20)),
    0x12: (0, 1),
    0x14: (0, 1),
    0x19: (0,),
    0x1D: (0, 1),
    0x1E: (0,),
    0x24: (0,),
    0x40000000: (0,),
    0x40000001: (0,),
    0x80000001: (0,),
    0x80000007: (0,),
    0x80000008: (0,),
    0x8000001F: (0,),
    0x80000021: (0,),
}

# Multi-bit fields KVM cares about, at the positions the SDM/APM give them.
KEY_FIELDS = {
    "max_std_leaf": (0x0, 0, "eax", 31, 0),
    "stepping": (0x1, 0, "eax", 3, 0),
    "base_model": (0x1, 0, "eax", 7, 4),
    "base_family_id": (0x1, 0, "eax", 11, 8),
    "ext_model": (0x1, 0, "eax", 19, 16),
    "ext_family": (0x1, 0, "eax", 27, 20),
    "clflush_size": (0x1, 0, "ebx", 15, 8),
    "n_logical_cpu": (0x1, 0, "ebx", 23, 16),
    "local_apic_id": (0x1, 0, "ebx", 31, 24),
    "xcr0_supported_lo": (0xD, 0, "eax", 31, 0),
    "xsave_size_enabled": (0xD, 0, "ebx", 31, 0),
    "xsave_size_max": (0xD, 0, "ecx", 31, 0),
    "xcr0_supported_hi": (0xD, 0, "edx", 31, 0),
    "xsaves_size_enabled": (0xD, 1, "ebx", 31, 0),
    "xss_supported_lo": (0xD, 1, "ecx", 31, 0),
    "xss_supported_hi": (0xD, 1, "edx", 31, 0),
    "max_enclave_sz_64": (0x12, 0, "edx", 15, 8),
    "sgx_attributes_lo": (0x12, 1, "eax", 31, 0),
    "sgx_xfrm_hi": (0x12, 1, "edx", 31, 0),
    "avx10_version": (0x24, 0, "ebx", 7, 0),
    "max_hyp_leaf": (0x40000000, 0, "eax", 31, 0),
    "hypervisor_id_0": (0x40000000, 0, "ebx", 31, 0),
    "hypervisor_id_1": (0x40000000, 0, "ecx", 31, 0),
    "hypervisor_id_2": (0x40000000, 0, "edx", 31, 0),
    "phys_addr_bits": (0x80000008, 0, "eax", 7, 0),
    "virt_addr_bits": (0x80000008, 0, "eax", 15, 8),
    "guest_phys_addr_bits": (0x80000008, 0, "eax", 23, 16),
    "c_bit_position": (0x8000001F, 0, "ebx", 5, 0),
    "phys_addr_reduction": (0x8000001F, 0, "ebx", 11, 6),
}

# The XSAVE component subleaves of 0xD are one ranged row per field.
XSAVE_COMPONENT_FIELDS = {
    "xsave_comp_size": ("eax", 31, 0),
    "xsave_comp_offset": ("ebx", 31, 0),
    "xsave_comp_supervisor": ("ecx", 0, 0),
    "xsave_comp_align64": ("ecx", 1, 1),
    "xsave_comp_xfd": ("ecx", 2, 2),
}

# arch/x86/include/uapi/asm/kvm_para.h: bit numbers in CPUID 0x40000001 EAX
# (KVM_FEATURE_*) and EDX (KVM_HINTS_*).
KVM_PARA_BITS = {
    "KVM_FEATURE_CLOCKSOURCE": ("eax", 0),
    "KVM_FEATURE_NOP_IO_DELAY": ("eax", 1),
    "KVM_FEATURE_MMU_OP": ("eax", 2),
    "KVM_FEATURE_CLOCKSOURCE2": ("eax", 3),
    "KVM_FEATURE_ASYNC_PF": ("eax", 4),
    "KVM_FEATURE_STEAL_TIME": ("eax", 5),
    "KVM_FEATURE_PV_EOI": ("eax", 6),
    "KVM_FEATURE_PV_UNHALT": ("eax", 7),
    "KVM_FEATURE_PV_TLB_FLUSH": ("eax", 9),
    "KVM_FEATURE_ASYNC_PF_VMEXIT": ("eax", 10),
    "KVM_FEATURE_PV_SEND_IPI": ("eax", 11),
    "KVM_FEATURE_POLL_CONTROL": ("eax", 12),
    "KVM_FEATURE_PV_SCHED_YIELD": ("eax", 13),
    "KVM_FEATURE_ASYNC_PF_INT": ("eax", 14),
    "KVM_FEATURE_MSI_EXT_DEST_ID": ("eax", 15),
    "KVM_FEATURE_HC_MAP_GPA_RANGE": ("eax", 16),
    "KVM_FEATURE_MIGRATION_CONTROL": ("eax", 17),
    "KVM_FEATURE_CLOCKSOURCE_STABLE_BIT": ("eax", 24),
    "KVM_HINTS_REALTIME": ("edx", 0),
}


# --------------------------------------------------------------------------
# kcpuid's table (tests/data/kcpuid/cpuid.csv; tests/data/README.md names its source)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class KRow:
    leaf: int
    sub_lo: int
    sub_hi: int
    register: str
    hi: int
    lo: int
    name: str

    @property
    def is_flag(self) -> bool:
        return self.hi == self.lo

    def __str__(self) -> str:
        sub = f"{self.sub_lo}" if self.sub_lo == self.sub_hi else f"{self.sub_hi}:{self.sub_lo}"
        bits = f"{self.hi}" if self.is_flag else f"{self.hi}:{self.lo}"
        return f"kcpuid {self.name} ({self.leaf:#x}.{sub}.{self.register}[{bits}])"


def _range(text: str) -> tuple[int, int]:
    """``"N"`` or kcpuid's ``"HIGH:LOW"`` -> (low, high)."""
    if ":" in text:
        hi, lo = text.split(":")
        return int(lo), int(hi)
    return int(text), int(text)


@functools.cache
def _kcpuid_rows() -> tuple[KRow, ...]:
    if not KCPUID_CSV.is_file():
        pytest.fail(f"kcpuid's table is expected at {KCPUID_CSV} (part of the repository)")
    rows = []
    for line in KCPUID_CSV.read_text(encoding="ascii").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        # descriptions contain unquoted commas: split on the first five only
        leaf, subs, reg, bits, name, _desc = (part.strip() for part in line.split(",", 5))
        sub_lo, sub_hi = _range(subs)
        lo, hi = _range(bits)
        rows.append(KRow(int(leaf, 16), sub_lo, sub_hi, reg, hi, lo, name))
    return tuple(rows)


def _overlap(a_lo: int, a_hi: int, b_lo: int, b_hi: int) -> bool:
    return a_lo <= b_hi and b_lo <= a_hi


def _covered_subleaves(k: KRow) -> list[int]:
    return [s for s in COVERED.get(k.leaf, ()) if k.sub_lo <= s <= k.sub_hi]


# kcpuid rows with the same name as a catalog field in the same leaf whose
# position may differ from ours, with the reason.  Empty: every shared name
# agrees (the catalog takes its multi-bit positions from the SDM/APM, and
# kcpuid agrees with them).
KCPUID_NAME_EXCEPTIONS: dict[str, str] = {}

# Single-bit kcpuid rows in covered leaves that the catalog deliberately has no
# field for, as (leaf, subleaf, register, bit), with the reason.  Empty: the
# catalog covers every one of them (kcpuid's per-component bits of 0xD.0
# EAX/EDX, 0xD.1 ECX, 0x12.0 EBX and 0x12.1 EAX/ECX fall inside the catalog's
# whole-register mask fields).
KCPUID_POSITION_EXCEPTIONS: dict[tuple[int, int, str, int], str] = {}


# --------------------------------------------------------------------------
# 1. shape
# --------------------------------------------------------------------------


def test_catalog_loads_and_rows_are_well_formed():
    cat = catalog()
    assert len(cat) > 400
    raw = read_csv("fields.csv")
    assert len(raw) == len(cat)
    for row in raw:
        where = f"fields.csv row {row['name']!r}"
        assert re.fullmatch(r"0x[0-9a-f]+", row["leaf"]), f"{where}: leaf {row['leaf']!r} is not lower-case 0x hex"
        assert re.fullmatch(r"\d+(-\d+)?", row["subleaf"]), f"{where}: subleaf {row['subleaf']!r}"
        assert row["register"] in ("eax", "ebx", "ecx", "edx"), f"{where}: register {row['register']!r}"
        assert re.fullmatch(r"\d+(:\d+)?", row["bits"]), f"{where}: bits {row['bits']!r}"
        assert re.fullmatch(r"[a-z0-9][a-z0-9_]*", row["name"]), f"{where}: name is not snake_case"
        assert re.fullmatch(r"((X86_FEATURE|KVM_FEATURE|KVM_HINTS)_[A-Z0-9_]+)?", row["linux_define"]), (
            f"{where}: linux_define {row['linux_define']!r}"
        )
        assert row["description"], f"{where}: empty description"
    for f in cat:
        assert f.owner in OWNERS, f"{f}: owner {f.owner!r} not in {sorted(OWNERS)}"


def test_every_required_leaf_and_subleaf_is_described():
    cat = catalog()
    for leaf, subs in COVERED.items():
        for sub in subs:
            found = [f for reg in ("eax", "ebx", "ecx", "edx") for f in cat.in_register(leaf, sub, reg)]
            assert found, f"no catalog field for leaf {leaf:#x} subleaf {sub}"


def test_no_overlapping_fields():
    by_reg: dict[tuple[int, str], list[Field]] = {}
    for f in catalog():
        by_reg.setdefault((f.leaf, f.register), []).append(f)
    for fields in by_reg.values():
        for i, a in enumerate(fields):
            for b in fields[i + 1 :]:
                if _overlap(a.sub_lo, a.sub_hi, b.sub_lo, b.sub_hi) and _overlap(a.lo, a.hi, b.lo, b.hi):
                    pytest.fail(f"{a} overlaps {b}")


def test_names_are_unique():
    seen: dict[str, Field] = {}
    for f in catalog():
        other = seen.get(f.name)
        if other is not None:
            same_leaf = other.leaf == f.leaf and _overlap(other.sub_lo, other.sub_hi, f.sub_lo, f.sub_hi)
            kind = "within one leaf/subleaf range" if same_leaf else "across leaves (resolve() needs unique names)"
            pytest.fail(f"duplicate name {kind}: {other} and {f}")
        seen[f.name] = f


def test_key_multibit_fields_are_where_the_sdm_puts_them():
    cat = catalog()
    for name, (leaf, sub, reg, hi, lo) in KEY_FIELDS.items():
        f = cat.resolve(name)
        assert (f.leaf, f.register, f.hi, f.lo) == (leaf, reg, hi, lo), f"{f}: expected {leaf:#x}.{reg}[{hi}:{lo}]"
        assert f.sub_lo <= sub <= f.sub_hi, f"{f}: does not cover subleaf {sub}"


def test_xsave_component_fields_are_one_ranged_row_each():
    cat = catalog()
    for name, (reg, hi, lo) in XSAVE_COMPONENT_FIELDS.items():
        f = cat.resolve(name)
        assert (f.leaf, f.sub_lo, f.sub_hi, f.register, f.hi, f.lo) == (0xD, 2, 19, reg, hi, lo), f"{f}"
    # 0xD.0 EAX is a mask: no per-component XCR0 bits are catalogued beside it
    assert [f.name for f in cat.in_register(0xD, 0, "eax")] == ["xcr0_supported_lo"]


def test_every_kvm_paravirt_bit_is_catalogued():
    cat = catalog()
    for define, (reg, bit) in KVM_PARA_BITS.items():
        f = cat.at(0x40000001, 0, reg, bit)
        assert f is not None, f"{define}: nothing at 0x40000001.{reg}[{bit}]"
        assert f.linux_define == define and f.is_flag, f"{f}: expected the one-bit field for {define}"


# --------------------------------------------------------------------------
# 2. positions against Linux's kcpuid table
# --------------------------------------------------------------------------


def test_positions_agree_with_kcpuid_by_name():
    checked = set()
    for f in catalog():
        for k in _kcpuid_rows():
            if k.leaf != f.leaf or k.name != f.name or not _overlap(k.sub_lo, k.sub_hi, f.sub_lo, f.sub_hi):
                continue
            checked.add(f.name)
            if f.name in KCPUID_NAME_EXCEPTIONS:
                continue
            assert (k.register, k.hi, k.lo) == (f.register, f.hi, f.lo), f"catalog {f} disagrees with {k}"
    # most of the catalog shares kcpuid's names; a collapse here means the parse broke
    assert len(checked) > 300, f"only {len(checked)} catalog names found in kcpuid"
    unused = set(KCPUID_NAME_EXCEPTIONS) - checked
    assert not unused, f"stale KCPUID_NAME_EXCEPTIONS entries: {sorted(unused)}"


def test_every_kcpuid_flag_in_covered_leaves_has_a_catalog_field():
    cat = catalog()
    for k in _kcpuid_rows():
        if not k.is_flag:
            continue
        for sub in _covered_subleaves(k):
            key = (k.leaf, sub, k.register, k.lo)
            if key in KCPUID_POSITION_EXCEPTIONS:
                continue
            assert cat.at(k.leaf, sub, k.register, k.lo) is not None, (
                f"{k}: no catalog field at {k.leaf:#x}.{sub}.{k.register}[{k.lo}]"
            )


# --------------------------------------------------------------------------
# 3. describe_field
# --------------------------------------------------------------------------


def test_describe_field_names_known_positions_and_falls_back_otherwise():
    names = {f.name for f in catalog()}
    assert describe_field(0x1, 0, "ecx", 0) == "pni"
    assert describe_field(0x7, 0, "ebx", 29) == "sha_ni"
    assert describe_field(0x80000008, 0, "eax", 10) == "virt_addr_bits"  # inside a multi-bit field
    assert describe_field(0xD, 7, "ecx", 1) == "xsave_comp_align64"  # ranged subleaf
    for leaf, sub, reg, bit in [(0x1, 0, "ecx", 16), (0x3, 0, "eax", 0), (0xD, 20, "ecx", 1)]:
        text = describe_field(leaf, sub, reg, bit)
        assert text not in names, f"{leaf:#x}.{sub}.{reg}[{bit}] unexpectedly named {text!r}"
        assert reg in text and str(bit) in text, f"fallback {text!r} does not show the position"


# --------------------------------------------------------------------------
# 4. decoding random tables against an oracle built from kcpuid
# --------------------------------------------------------------------------

# kcpuid short_name -> Linux /proc/cpuinfo name, where they differ.  Checked in
# arch/x86/include/asm/cpufeatures.h (6.12):
KCPUID_TO_LINUX = {
    "guest_status": "hypervisor",  # X86_FEATURE_HYPERVISOR ( 4*32+31) /* "hypervisor" ... */
}

# Positions (leaf, register, bit) left out of the comparison: kcpuid names them
# but Linux has no /proc/cpuinfo name, and the catalog's name differs.
ORACLE_ALLOWANCE = {
    # X86_FEATURE_SHSTK is hidden in /proc/cpuinfo; catalog uses Linux's macro
    # (shstk), kcpuid the SDM's CET_SS (cet_ss).
    (0x7, "ecx", 7),
    # X86_FEATURE_SRBDS_CTRL is hidden; kcpuid spells it "srdbs_ctrl" (letters
    # swapped), the catalog spells it as Linux and the SDM do.
    (0x7, "edx", 9),
    # 0x80000001 EDX copies of leaf 1 EDX bits: Linux defines none of them
    # (cpufeatures.h word 1: "Don't duplicate feature flags which are redundant
    # with Intel!"); kcpuid reuses the leaf-1 names, the catalog prefixes e_.
    *((0x80000001, "edx", b) for b in (6, 7, 8, 9, 12, 13, 14, 15, 16, 17)),
}

ORACLE_LEAVES = (0x1, 0x7, 0x80000001)  # subleaf 0 of each


def _oracle_flags() -> dict[tuple[int, str, int], str]:
    out = {}
    for k in _kcpuid_rows():
        if k.leaf in ORACLE_LEAVES and k.is_flag and k.sub_lo <= 0 <= k.sub_hi:
            if (k.leaf, k.register, k.lo) not in ORACLE_ALLOWANCE:
                out[(k.leaf, k.register, k.lo)] = KCPUID_TO_LINUX.get(k.name, k.name)
    return out


def test_features_of_random_tables_match_the_kcpuid_oracle():
    oracle = _oracle_flags()
    assert len(oracle) > 180
    allowed_mask = {(leaf, reg): 0xFFFF_FFFF for leaf in ORACLE_LEAVES for reg in ("eax", "ebx", "ecx", "edx")}
    for leaf, reg, bit in ORACLE_ALLOWANCE:
        allowed_mask[(leaf, reg)] &= ~(1 << bit)
    rng = random.Random(20240611)
    cat = catalog()
    for n in range(300):
        entries, expected = [], set()
        for leaf in ORACLE_LEAVES:
            regs = {r: rng.getrandbits(32) & allowed_mask[(leaf, r)] for r in ("eax", "ebx", "ecx", "edx")}
            flags = 1 if leaf == 0x7 else 0  # leaf 7 is indexed: KVM_CPUID_FLAG_SIGNIFCANT_INDEX
            entries.append(CpuidEntry(leaf, 0, flags, **regs))
            expected |= {name for (l, r, b), name in oracle.items() if l == leaf and regs[r] >> b & 1}
        got = set(cat.features(CpuidTable(entries)))
        assert got == expected, (
            f"table {n}: catalog-only {sorted(got - expected)}, oracle-only {sorted(expected - got)}"
        )


# --------------------------------------------------------------------------
# 5. the running kernel's decoder: /proc/cpuinfo flags against raw CPUID
# --------------------------------------------------------------------------

# Flags Linux may show although the raw CPUID bit is clear: it sets them from a
# model list, a probe, a boot option or a hypervisor interface instead.
HOST_ALLOWANCE = {
    "intel_ppin": "ppin_init() sets it for Ivy Bridge-X ... Emerald Rapids from a model list, without 7.1 EBX[0]",
    "fpu": "the FPU init code forces it when it finds an x87 by probing (FNINIT/FNSTSW)",
    "tsc": "Xen PV guests force it in xen time setup",
    "monitor": "Xen PV guests force MWAIT when Xen allows it although the PV CPUID hides it",
    "pae": "the forcepae boot option (Pentium M) sets it",
    "pge": "set by hand on AMD K5 model 0",
    "cx8": "set by hand on Centaur/IDT WinChip and VIA C3 models that do not report it",
    "3dnow": "set by hand on some Centaur WinChip models",
}

_CPUID_LINE = re.compile(
    r"^\s*0x([0-9a-f]{8}) 0x([0-9a-f]{2}): eax=0x([0-9a-f]{8}) ebx=0x([0-9a-f]{8}) "
    r"ecx=0x([0-9a-f]{8}) edx=0x([0-9a-f]{8})\s*$"
)
HOST_LEAVES = ((0x1, 0), (0x7, 0), (0x7, 1), (0x80000001, 0), (0xD, 1))


def _proc_flags() -> set[str] | None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return None


def _raw_cpuid() -> dict[tuple[int, int], dict[str, int]]:
    out = subprocess.run([shutil.which("cpuid") or "cpuid", "-1r"], capture_output=True, text=True, check=True).stdout
    regs: dict[tuple[int, int], dict[str, int]] = {}
    for line in out.splitlines():
        m = _CPUID_LINE.match(line)
        if m:
            leaf, sub = int(m[1], 16), int(m[2], 16)
            regs.setdefault((leaf, sub), dict(zip(("eax", "ebx", "ecx", "edx"), (int(m[i], 16) for i in range(3, 7)))))
    return regs


@pytest.mark.cpuid_tool
def test_proc_cpuinfo_flags_have_their_raw_cpuid_bit_set():
    flags = _proc_flags()
    if not flags:
        pytest.skip("/proc/cpuinfo has no flags line on this machine")
    raw = _raw_cpuid()
    assert (0x1, 0) in raw, "could not parse `cpuid -1r` output (no leaf 1)"
    checked = []
    for leaf, sub in HOST_LEAVES:
        regs = raw.get((leaf, sub), {})
        for reg in ("eax", "ebx", "ecx", "edx"):
            for f in catalog().in_register(leaf, sub, reg):
                if not f.is_flag or f.name not in flags or f.name in HOST_ALLOWANCE:
                    continue
                checked.append(f.name)
                assert regs.get(reg, 0) >> f.lo & 1, (
                    f"/proc/cpuinfo shows {f.name!r} but raw CPUID {leaf:#x}.{sub}.{reg}[{f.lo}] is 0 ({f})"
                )
    assert checked, "no catalog flag of leaves 1/7/0x80000001/0xD.1 appears in /proc/cpuinfo"


# --------------------------------------------------------------------------
# 6. every row of kcpuid's table has a catalog field at its bits
# --------------------------------------------------------------------------

# Catalog names are unique (resolve() needs them), kcpuid reuses some names in several leaves.  Where the
# plain name belongs to another leaf's field, the catalog's field in these leaves carries the leaf's prefix.
KCPUID_PREFIXES: dict[int, str] = {
    0x10: "rdt_",  # Intel's enumeration of MBA; mba is AMD's 0x80000008 bit (both X86_FEATURE_MBA in Linux)
    0x1F: "v2_",  # V2 extended topology: leaf 0xB keeps the plain names
    0x80000000: "e_",  # the vendor string again, as 0x80000001's e_ copies of leaf 1
    0x80000001: "e_",
    0x80000020: "amd_",  # AMD's memory bandwidth enforcement (Intel's is leaf 0x10)
    0x80000021: "amd_",  # AMD's fsrs/fsrc bits (Intel's are in 7.1 EAX)
    0x8000001D: "amd_",  # AMD's copy of leaf 4
    0x80000026: "amd_",  # AMD's extended topology (leaf 0xB/0x1F keep the plain names)
    0x80860000: "tra_",  # Transmeta's copy of the vendor string and of leaf 1
    0x80860001: "tra_",
}

_LINUX = "the catalog uses Linux's name (cpufeatures.h, /proc/cpuinfo or the X86_FEATURE_ suffix)"
_TYPO = "kcpuid misspells it; the catalog spells it as the SDM/APM and Linux do"
_OURS = "a multi-bit field the catalog named before this check, used by the model and tests under that name"
# (leaf, kcpuid name) -> (catalog name, reason): the only other names the catalog may give a kcpuid row.
KCPUID_NAME_DIFFERS: dict[tuple[int, str], tuple[str, str]] = {
    (0x1, "guest_status"): ("hypervisor", _LINUX),
    (0x6, "turbo_boost"): ("ida", _LINUX),
    (0x6, "hwp_capabilities"): ("hwp_highest_perf_change", _LINUX),
    (0x6, "feedback_sz"): ("hfi_table_pages", _OURS),
    (0x6, "this_lcpu_hwfdbk_idx"): ("hfi_row_index", _OURS),
    (0x7, "leaf7_n_subleaves"): ("leaf7_max_subleaf", _OURS + " (it is the highest subleaf, not a count)"),
    (0x7, "cet_ss"): ("shstk", _LINUX),
    (0x7, "srdbs_ctrl"): ("srbds_ctrl", _TYPO),
    (0x7, "rd_wr_msrlist"): ("msrlist", "the SDM's CPUID feature name MSRLIST"),
    (0x7, "prefetchit_0_1"): ("prefetchiti", _LINUX),
    (0x7, "ddp_ctrl"): ("ddpd_u", _LINUX),
    (0xD, "xsave_sz_xcr0"): ("xsave_size_enabled", _OURS),
    (0xD, "xsave_sz_max"): ("xsave_size_max", _OURS),
    (0xD, "xsave_sz_xcr0_xss"): ("xsaves_size_enabled", _OURS),
    (0xD, "xsave_sz"): ("xsave_comp_size", _OURS),
    (0xD, "xsave_offset"): ("xsave_comp_offset", _OURS),
    (0xD, "is_xss_bit"): ("xsave_comp_supervisor", _OURS),
    (0xD, "compacted_xsave_64byte_aligned"): ("xsave_comp_align64", _OURS),
    (0x10, "cdp_l3"): (
        "cdp_l2",
        "kcpuid names bit 2 of subleaves 1-2 after L3; in subleaf 2 it is L2's (X86_FEATURE_CDP_L2)",
    ),
    (0x14, "mtc_timing"): ("mtc", _OURS),
    (0x14, "trace_transport_output"): ("output_subsys", _OURS),
    (0x14, "ip_payloads_lip"): ("payloads_lip", _OURS),
    (0x14, "mtc_periods_bmp"): ("mtc_periods", _OURS),
    (0x14, "cycle_thresholds_bmp"): ("cycle_thresholds", _OURS),
    (0x14, "psb_periods_bmp"): ("psb_periods", _OURS),
    (0x80000008, "ibrs_fast"): ("ibrs_preferred", "the APM's name (IbrsPreferred)"),
    (0x80000008, "ibpb_ret"): ("amd_ibpb_ret", _LINUX),
    (0x8000001F, "sev_nested_paging"): ("sev_snp", _LINUX),
    (0x8000001F, "rpmquery"): ("rmpquery", _TYPO),
    (0x8000001F, "svsm_page_msr"): ("svsm", _LINUX),
    (0x8000001F, "pte_cbit_pos"): ("c_bit_position", _OURS),
    (0x8000001F, "phys_addr_reduction_nbits"): ("phys_addr_reduction", _OURS),
    (0x8000001F, "enc_guests_max"): ("num_encrypted_guests", _OURS),
    (0x8000001F, "min_sev_asid_no_sev_es"): ("min_sev_no_es_asid", _OURS),
    (0x80000021, "fsgs_non_serializing"): ("wrmsr_xx_base_ns", _LINUX),
    (0x80000021, "srso_uk_no"): ("srso_user_kernel_no", _LINUX),
    (0x80000021, "srso_msr_fix"): ("srso_bp_spec_reduce", _LINUX),
    (0x80000022, "lbr_v2"): ("amd_lbr_v2", _LINUX),
    (0x80000022, "lbr_pmc_freeze"): ("amd_lbr_pmc_freeze", _LINUX),
    (0xC0000001, "xstore"): ("rng", _LINUX),
    (0xC0000001, "xstore_en"): ("rng_en", _LINUX),
}

# Registers the catalog keeps as one mask field where kcpuid names single bits (the per-component bits of
# XCR0/IA32_XSS/SGX masks): the model reads them as masks, and test_xsave_component_fields_are_one_ranged_row_each
# keeps 0xD.0 EAX a single field.  kcpuid's bits lie inside the mask.
KCPUID_MASK_REGISTERS: dict[tuple[int, int, str], str] = {
    (0xD, 0, "eax"): "xcr0_supported_lo",
    (0xD, 0, "edx"): "xcr0_supported_hi",
    (0xD, 1, "ecx"): "xss_supported_lo",
    (0x12, 1, "eax"): "sgx_attributes_lo",
    (0x12, 1, "ecx"): "sgx_xfrm_lo",
}

# kcpuid subleaf ranges the catalog covers only in part, with the reason.
KCPUID_SUBLEAF_LIMITS: dict[int, tuple[int, str]] = {
    0xD: (19, "XSAVE state components end at 19 (APX); describe_field keeps 0xD.20 unnamed, as the SDM defines none"),
}


def _catalog_field_for(k: KRow, sub: int) -> Field | None:
    for f in catalog().in_register(k.leaf, sub, k.register):
        if (f.hi, f.lo) == (k.hi, k.lo):
            return f
    return None


def _name_ok(k: KRow, f: Field) -> bool:
    if f.name == k.name or KCPUID_NAME_DIFFERS.get((k.leaf, k.name), ("", ""))[0] == f.name:
        return True
    prefix = KCPUID_PREFIXES.get(k.leaf)
    taken_elsewhere = any(o.leaf != k.leaf for o in catalog().by_name(k.name))
    return prefix is not None and f.name == prefix + k.name and taken_elsewhere


def test_every_kcpuid_row_has_a_catalog_field_at_its_bits():
    """Each row of kcpuid's table (leaf, every subleaf of its range, register, bits) has a catalog field at
    exactly those bits (or inside a mask register), named as kcpuid names it or as the written rules allow."""
    problems, checked = [], 0
    used_names, used_masks, used_limits = set(), set(), set()
    for k in _kcpuid_rows():
        top = k.sub_hi
        if k.leaf in KCPUID_SUBLEAF_LIMITS and top > KCPUID_SUBLEAF_LIMITS[k.leaf][0]:
            top = KCPUID_SUBLEAF_LIMITS[k.leaf][0]
            used_limits.add(k.leaf)
        for sub in range(k.sub_lo, top + 1):
            checked += 1
            mask = KCPUID_MASK_REGISTERS.get((k.leaf, sub, k.register))
            if mask is not None:
                f = catalog().at(k.leaf, sub, k.register, k.lo)
                if f is None or f.name != mask or f.hi < k.hi:
                    problems.append(f"{k}: expected inside mask field {mask}, found {f}")
                used_masks.add((k.leaf, sub, k.register))
                continue
            f = _catalog_field_for(k, sub)
            if f is None:
                near = [
                    str(o) for o in catalog().in_register(k.leaf, sub, k.register) if _overlap(o.lo, o.hi, k.lo, k.hi)
                ]
                problems.append(
                    f"{k}: no catalog field at {k.leaf:#x}.{sub}.{k.register}[{k.hi}:{k.lo}] (near: {near})"
                )
            elif not _name_ok(k, f):
                problems.append(f"{k}: catalog names subleaf {sub} {f.name!r}, with no rule or reason for it")
            elif f.name != k.name and (k.leaf, k.name) in KCPUID_NAME_DIFFERS:
                used_names.add((k.leaf, k.name))
    assert not problems, f"{len(problems)} kcpuid row(s) not covered:\n" + "\n".join(problems[:80])
    assert checked > 2000, checked  # every subleaf of the ranged rows (0x4: 32, 0x18: 32, 0x8000001D: 32 ...)
    assert set(KCPUID_NAME_DIFFERS) == used_names, f"stale: {sorted(set(KCPUID_NAME_DIFFERS) - used_names)}"
    assert set(KCPUID_MASK_REGISTERS) == used_masks, f"stale: {sorted(set(KCPUID_MASK_REGISTERS) - used_masks)}"
    assert set(KCPUID_SUBLEAF_LIMITS) == used_limits


def test_kcpuid_prefixes_are_used_only_where_the_plain_name_is_taken():
    for f in catalog():
        prefix = KCPUID_PREFIXES.get(f.leaf)
        if prefix is None or not f.name.startswith(prefix):
            continue
        plain = f.name[len(prefix) :]
        krows = [k for k in _kcpuid_rows() if k.leaf == f.leaf and k.name == plain]
        if krows:
            others = [o for o in catalog().by_name(plain) if o.leaf != f.leaf]
            assert others, f"{f}: prefixed although {plain!r} is free in the catalog"


def test_every_kcpuid_leaf_is_catalogued():
    kleaves = {k.leaf for k in _kcpuid_rows()}
    assert {0x80860000, 0xC0000001, 0x80000026, 0x23} <= kleaves  # the Transmeta and Centaur ranges are there
    assert kleaves <= set(catalog().leaves()), sorted(hex(x) for x in kleaves - set(catalog().leaves()))


# --------------------------------------------------------------------------
# 7. text: vendor and brand strings
# --------------------------------------------------------------------------


def _text_regs(text: str, n: int) -> list[int]:
    raw = text.encode("latin-1").ljust(4 * n, b"\0")
    return [int.from_bytes(raw[i : i + 4], "little") for i in range(0, 4 * n, 4)]


def test_text_fields_are_whole_registers_of_the_catalog():
    cat = catalog()
    assert cat.text_fields() == TEXT_FIELDS  # every string decodable: all parts are in the catalog
    for t in TEXT_FIELDS:
        for name, sub in t.parts:
            f = cat.resolve(name)
            assert (f.hi, f.lo) == (31, 0) and f.sub_lo <= sub <= f.sub_hi, f"{t.name}: {f} cannot hold subleaf {sub}"
    brand = [cat.resolve(n) for n, _ in next(t for t in TEXT_FIELDS if t.name == "brand").parts]
    assert [(f.leaf, f.register) for f in brand] == [
        (leaf, r) for leaf in (0x80000002, 0x80000003, 0x80000004) for r in ("eax", "ebx", "ecx", "edx")
    ]
    vendor = [cat.resolve(n) for n, _ in next(t for t in TEXT_FIELDS if t.name == "vendor").parts]
    assert [(f.leaf, f.register) for f in vendor] == [(0, "ebx"), (0, "edx"), (0, "ecx")]


def test_strings_decode_vendor_brand_and_hypervisor():
    brand = "  Intel(R) Xeon(R) CPU @ 2.40GHz"  # leading blanks are kept, as the CPU returns them
    b = _text_regs(brand, 12)
    v = _text_regs("AuthenticAMD", 3)
    entries = [
        CpuidEntry(0, 0, 0, 0x10, v[0], v[2], v[1]),
        CpuidEntry(0x40000000, 0, 0, 0x40000001, *_text_regs("KVMKVMKVM", 3)),
        CpuidEntry(0x80000000, 0, 0, 0x80000004, v[0], v[2], v[1]),
        *(CpuidEntry(0x80000002 + i, 0, 0, *b[4 * i : 4 * i + 4]) for i in range(3)),
    ]
    got = catalog().strings(CpuidTable(entries))
    assert got == {"vendor": "AuthenticAMD", "ext_vendor": "AuthenticAMD", "brand": brand, "hypervisor": "KVMKVMKVM"}
    assert list(got) == [t.name for t in TEXT_FIELDS if t.name in got]  # TEXT_FIELDS order


def test_strings_skip_leaves_beyond_the_top_of_their_range():
    v = _text_regs("GenuineIntel", 3)
    b = _text_regs("some brand", 12)
    entries = [
        CpuidEntry(0, 0, 0, 0x16, v[0], v[2], v[1]),
        CpuidEntry(0x80000000, 0, 0, 0x80000001),  # the brand leaves are above the top: stale answers
        *(CpuidEntry(0x80000002 + i, 0, 0, *b[4 * i : 4 * i + 4]) for i in range(3)),
        CpuidEntry(0x80860000, 0, 0, 0x2, 0x1, 0x2, 0x3),  # an Intel part answers with its highest basic leaf
        CpuidEntry(0x21, 0, 0, 0, *_text_regs("IntelTDX    ", 3)),  # above leaf 0's top (0x16)
    ]
    assert catalog().strings(CpuidTable(entries)) == {"vendor": "GenuineIntel", "ext_vendor": ""}
    # a missing leaf: no string at all
    assert "brand" not in catalog().strings(CpuidTable(entries[:2] + entries[3:4]))


# --------------------------------------------------------------------------
# 8. decode coverage of every real dump
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Coverage:
    dump: str
    entries: int
    leaves: int  # distinct leaves in the dump
    named: int  # of those, leaves the catalog decodes at least one field of
    kcpuid: int  # leaves in the dump that kcpuid names
    kcpuid_named: int  # of those, leaves the catalog decodes
    unnamed: tuple[int, ...]  # leaves present with no decoded field


def coverage(path: Path) -> Coverage:
    table = load(path)
    present = set(table.functions())
    decoded = {f.leaf for f, _sub, _v in catalog().values(table)}
    kleaves = {k.leaf for k in _kcpuid_rows()} & present
    return Coverage(
        f"{path.parent.name}/{path.name}",
        len(table),
        len(present),
        len(present & decoded),
        len(kleaves),
        len(kleaves & decoded),
        tuple(sorted(present - decoded)),
    )


def _runs(leaves: tuple[int, ...]) -> str:
    """``0x3 0x8 0x8000000b-0x80000018``: consecutive leaves as one range."""
    out: list[list[int]] = []
    for x in leaves:
        if out and x == out[-1][-1] + 1:
            out[-1].append(x)
        else:
            out.append([x])
    return " ".join(f"{r[0]:#x}" if len(r) == 1 else f"{r[0]:#x}-{r[-1]:#x}" for r in out) or "none"


def coverage_table() -> str:
    """The per-dump table of docs/catalog.md (Markdown)."""
    rows = [coverage(p) for p in all_dumps()]
    lines = [
        "| dump | entries | leaves | with named fields | kcpuid leaves | kcpuid leaves named | leaves without names |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for c in rows:
        pct = f"{c.kcpuid_named}/{c.kcpuid} ({100 * c.kcpuid_named // c.kcpuid} %)"
        unnamed = _runs(c.unnamed)
        lines.append(f"| {c.dump} | {c.entries} | {c.leaves} | {c.named}/{c.leaves} | {c.kcpuid} | {pct} | {unnamed} |")
    total_k = sum(c.kcpuid for c in rows)
    total_kn = sum(c.kcpuid_named for c in rows)
    total, named = sum(c.leaves for c in rows), sum(c.named for c in rows)
    lines.append(
        f"| **all {len(rows)} dumps** | {sum(c.entries for c in rows)} | {total} | {named}/{total} | {total_k} | "
        f"{total_kn}/{total_k} ({100 * total_kn // total_k} %) | |"
    )
    return "\n".join(lines)


@pytest.mark.parametrize("path", all_dumps(), ids=lambda p: p.name)
def test_every_kcpuid_leaf_of_every_dump_has_named_fields(path):
    c = coverage(path)
    assert c.kcpuid_named == c.kcpuid, f"{c.dump}: kcpuid leaves without a decoded field: {c}"
    # what stays unnamed is a leaf kcpuid has no row for either (reserved or undocumented ranges)
    kleaves = {k.leaf for k in _kcpuid_rows()}
    assert not set(c.unnamed) & kleaves


def test_docs_show_the_current_coverage_table():
    doc = (ROOT / "docs" / "catalog.md").read_text()
    table = coverage_table()
    assert table in doc, "docs/catalog.md's coverage table is out of date; it should read:\n" + table
