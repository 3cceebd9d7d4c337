"""Golden test: cpuidkit's feature decoder against Todd Allen's ``cpuid`` tool.

Every libvirt dump is written in ``cpuid -r`` form, decoded by ``cpuid -f``, and
the tool's ``<description> = true|false`` lines are compared with the names
cpuidkit's catalog finds set in the same table.

The link between the two vocabularies is :data:`TOOL_LINES`, written by hand
from the meaning of each bit (SDM vol. 2A CPUID, APM vol. 3 appendix E), never
from bit positions.  :func:`test_mapping_matches_the_tool_bit_for_bit` then
proves it: a table holding only one catalog bit must make exactly the mapped
line of the tool true, so our position for the name and the tool's position
for the description agree.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import libvirt_dumps
from cpuidkit.core.catalog import catalog
from cpuidkit.core.sources import dumps, load
from cpuidkit.core.bits import FLAG_SIGNIFICANT_INDEX, insert_bits
from cpuidkit.core.table import CpuidEntry, CpuidTable

TOOL_TIMEOUT = 60  # seconds for one `cpuid -f` run (a run takes milliseconds)

# -- the tool's section headers (regular expressions, matched in full) --------
L1_EDX = r"feature information \(1/edx\)"
L1_ECX = r"feature information \(1/ecx\)"
L7 = r"extended feature flags \(7\)"  # one block for 7.0, 7.1 and 7.2
X1_EDX = r"extended feature flags \(0x80000001/edx\)"
X1_ECX = r"(?:AMD|Hygon|Intel) feature flags \(0x80000001/ecx\)"  # titled after the vendor

# catalog name -> (section header pattern, description prefix or alternatives).
# A description is taken whole when one line equals it, else as the prefix of
# exactly one line of the section.  Alternatives cover a bit the tool words
# differently per vendor.
TOOL_LINES: dict[str, tuple[str, str | tuple[str, ...]]] = {
    # leaf 1 EDX
    "fpu": (L1_EDX, "x87 FPU on chip"),
    "vme": (L1_EDX, "VME: virtual-8086 mode enhancement"),
    "de": (L1_EDX, "DE: debugging extensions"),
    "pse": (L1_EDX, "PSE: page size extensions"),
    "tsc": (L1_EDX, "TSC: time stamp counter"),
    "msr": (L1_EDX, "RDMSR and WRMSR support"),
    "pae": (L1_EDX, "PAE: physical address extensions"),
    "mce": (L1_EDX, "MCE: machine check exception"),
    "cx8": (L1_EDX, "CMPXCHG8B inst"),
    "apic": (L1_EDX, "APIC on chip"),
    "sep": (L1_EDX, "SYSENTER and SYSEXIT"),
    "mtrr": (L1_EDX, "MTRR: memory type range registers"),
    "pge": (L1_EDX, "PTE global bit"),
    "mca": (L1_EDX, "MCA: machine check architecture"),
    "cmov": (L1_EDX, "CMOV: conditional move"),
    "pat": (L1_EDX, "PAT: page attribute table"),
    "pse36": (L1_EDX, "PSE-36: page size extension"),
    "pn": (L1_EDX, "PSN: processor serial number"),
    "clflush": (L1_EDX, "CLFLUSH instruction"),
    "dts": (L1_EDX, "DS: debug store"),
    "acpi": (L1_EDX, "ACPI: thermal monitor and clock ctrl"),
    "mmx": (L1_EDX, "MMX Technology"),
    "fxsr": (L1_EDX, "FXSAVE/FXRSTOR"),
    "sse": (L1_EDX, "SSE extensions"),
    "sse2": (L1_EDX, "SSE2 extensions"),
    "ss": (L1_EDX, "SS: self snoop"),
    "ht": (L1_EDX, "hyper-threading / multi-core supported"),
    "tm": (L1_EDX, "TM: therm. monitor"),
    "ia64": (L1_EDX, "IA64"),
    "pbe": (L1_EDX, "PBE: pending break event"),
    # leaf 1 ECX
    "pni": (L1_ECX, "PNI/SSE3: Prescott New Instructions"),
    "pclmulqdq": (L1_ECX, "PCLMULDQ instruction"),
    "dtes64": (L1_ECX, "DTES64: 64-bit debug store"),
    "monitor": (L1_ECX, "MONITOR/MWAIT"),
    "ds_cpl": (L1_ECX, "CPL-qualified debug store"),
    "vmx": (L1_ECX, "VMX: virtual machine extensions"),
    "smx": (L1_ECX, "SMX: safer mode extensions"),
    "est": (L1_ECX, "Enhanced Intel SpeedStep Technology"),
    "tm2": (L1_ECX, "TM2: thermal monitor 2"),
    "ssse3": (L1_ECX, "SSSE3 extensions"),
    "cid": (L1_ECX, "context ID: adaptive or shared L1 data"),
    "sdbg": (L1_ECX, "SDBG: IA32_DEBUG_INTERFACE"),
    "fma": (L1_ECX, "FMA instruction"),
    "cx16": (L1_ECX, "CMPXCHG16B instruction"),
    "xtpr": (L1_ECX, "xTPR disable"),
    "pdcm": (L1_ECX, "PDCM: perfmon and debug"),
    "pcid": (L1_ECX, "PCID: process context identifiers"),
    "dca": (L1_ECX, "DCA: direct cache access"),
    "sse4_1": (L1_ECX, "SSE4.1 extensions"),
    "sse4_2": (L1_ECX, "SSE4.2 extensions"),
    "x2apic": (L1_ECX, "x2APIC: extended xAPIC support"),
    "movbe": (L1_ECX, "MOVBE instruction"),
    "popcnt": (L1_ECX, "POPCNT instruction"),
    "tsc_deadline_timer": (L1_ECX, "time stamp counter deadline"),
    "aes": (L1_ECX, "AES instruction"),
    "xsave": (L1_ECX, "XSAVE/XSTOR states"),
    "osxsave": (L1_ECX, "OS-enabled XSAVE/XSTOR"),
    "avx": (L1_ECX, "AVX: advanced vector extensions"),
    "f16c": (L1_ECX, "F16C half-precision convert instruction"),
    "rdrand": (L1_ECX, "RDRAND instruction"),
    "hypervisor": (L1_ECX, "hypervisor guest status"),
    # leaf 7.0 EBX
    "fsgsbase": (L7, "FSGSBASE instructions"),
    "tsc_adjust": (L7, "IA32_TSC_ADJUST MSR supported"),
    "sgx": (L7, "SGX: Software Guard Extensions supported"),
    "bmi1": (L7, "BMI1 instructions"),
    "hle": (L7, "HLE hardware lock elision"),
    "avx2": (L7, "AVX2: advanced vector extensions 2"),
    "fdp_excptn_only": (L7, "FDP_EXCPTN_ONLY"),
    "smep": (L7, "SMEP supervisor mode exec protection"),
    "bmi2": (L7, "BMI2 instructions"),
    "erms": (L7, "enhanced REP MOVSB/STOSB"),
    "invpcid": (L7, "INVPCID instruction"),
    "rtm": (L7, "RTM: restricted transactional memory"),
    "cqm": (L7, "RDT-CMT/PQoS cache monitoring"),
    "zero_fcs_fds": (L7, "deprecated FPU CS/DS"),
    "mpx": (L7, "MPX: intel memory protection extensions"),
    "rdt_a": (L7, "RDT-CAT/PQE cache allocation"),
    "avx512f": (L7, "AVX512F: AVX-512 foundation instructions"),
    "avx512dq": (L7, "AVX512DQ: double & quadword instructions"),
    "rdseed": (L7, "RDSEED instruction"),
    "adx": (L7, "ADX instructions"),
    "smap": (L7, "SMAP: supervisor mode access prevention"),
    "avx512ifma": (L7, "AVX512IFMA: integer fused multiply add"),
    "clflushopt": (L7, "CLFLUSHOPT instruction"),
    "clwb": (L7, "CLWB instruction"),
    "intel_pt": (L7, "Intel processor trace"),
    "avx512pf": (L7, "AVX512PF: prefetch instructions"),
    "avx512er": (L7, "AVX512ER: exponent & reciprocal"),
    "avx512cd": (L7, "AVX512CD: conflict detection"),
    "sha_ni": (L7, "SHA instructions"),
    "avx512bw": (L7, "AVX512BW: byte & word instructions"),
    "avx512vl": (L7, "AVX512VL: vector length"),
    # leaf 7.0 ECX
    "prefetchwt1": (L7, "PREFETCHWT1"),
    "avx512vbmi": (L7, "AVX512VBMI: vector byte manipulation"),
    "umip": (L7, "UMIP: user-mode instruction prevention"),
    "pku": (L7, "PKU protection keys for user-mode"),
    "ospke": (L7, "OSPKE CR4.PKE and RDPKRU/WRPKRU"),
    "waitpkg": (L7, "WAITPKG instructions"),
    "avx512_vbmi2": (L7, "AVX512_VBMI2: byte VPCOMPRESS, VPEXPAND"),
    "shstk": (L7, "CET_SS: CET shadow stack"),
    "gfni": (L7, "GFNI: Galois Field New Instructions"),
    "vaes": (L7, "VAES instructions"),
    "vpclmulqdq": (L7, "VPCLMULQDQ instruction"),
    "avx512_vnni": (L7, "AVX512_VNNI: neural network instructions"),
    "avx512_bitalg": (L7, "AVX512_BITALG: bit count"),
    "tme": (L7, "TME: Total Memory Encryption"),
    "avx512_vpopcntdq": (L7, "AVX512: VPOPCNTDQ instruction"),
    "la57": (L7, "LA57: 57-bit addrs & 5-level paging"),
    "rdpid": (L7, "RDPID: read processor ID supported"),
    "key_locker": (L7, "KL: key locker"),
    "bus_lock_detect": (L7, "bus lock detection"),
    "cldemote": (L7, "CLDEMOTE supports cache line demote"),
    "movdiri": (L7, "MOVDIRI instruction"),
    "movdir64b": (L7, "MOVDIR64B instruction"),
    "enqcmd": (L7, "ENQCMD instruction"),
    "sgx_lc": (L7, "SGX_LC: SGX launch config supported"),
    "pks": (L7, "PKS: supervisor protection keys"),
    # leaf 7.0 EDX
    "sgx_keys": (L7, "SGX-KEYS: SGX attestation services"),
    "avx512_4vnniw": (L7, "AVX512_4VNNIW: neural network instrs"),
    "avx512_4fmaps": (L7, "AVX512_4FMAPS: multiply acc single prec"),
    "fsrm": (L7, "fast short REP MOV"),
    "uintr": (L7, "UINTR: user interrupts"),
    "avx512_vp2intersect": (L7, "AVX512_VP2INTERSECT: intersect mask regs"),
    "srbds_ctrl": (L7, "IA32_MCU_OPT_CTRL SRBDS mitigation MSR"),
    "md_clear": (L7, "VERW MD_CLEAR microcode support"),
    "rtm_always_abort": (L7, "RTM transaction always aborts"),
    "tsx_force_abort": (L7, "IA32_TSX_FORCE_ABORT MSR"),
    "serialize": (L7, "SERIALIZE instruction"),
    "hybrid_cpu": (L7, "hybrid part"),
    "tsxldtrk": (L7, "TSXLDTRK: TSX suspend load addr tracking"),
    "pconfig": (L7, "PCONFIG instruction"),
    "arch_lbr": (L7, "LBR: architectural last branch records"),
    "ibt": (L7, "CET_IBT: CET indirect branch tracking"),
    "amx_bf16": (L7, "AMX-BF16: tile bfloat16 support"),
    "avx512_fp16": (L7, "AVX512_FP16: fp16 support"),
    "amx_tile": (L7, "AMX-TILE: tile architecture support"),
    "amx_int8": (L7, "AMX-INT8: tile 8-bit integer support"),
    "spec_ctrl": (L7, "IBRS/IBPB: indirect branch restrictions"),
    "intel_stibp": (L7, "STIBP: 1 thr indirect branch predictor"),
    "flush_l1d": (L7, "L1D_FLUSH: IA32_FLUSH_CMD MSR"),
    "arch_capabilities": (L7, "IA32_ARCH_CAPABILITIES MSR"),
    "core_capabilities": (L7, "IA32_CORE_CAPABILITIES MSR"),
    "spec_ctrl_ssbd": (L7, "SSBD: speculative store bypass disable"),
    # leaf 7.1 EAX (this tool version has no line for SHA512, SM3, SM4, FRED, LKGS, NMI_SRC, MOVRS)
    "rao_int": (L7, "RAO-INT atomic instructions"),
    "avx_vnni": (L7, "AVX-VNNI: AVX VNNI neural network instrs"),
    "avx512_bf16": (L7, "AVX512_BF16: bfloat16 instructions"),
    "lass": (L7, "LASS: linear address space separation"),
    "cmpccxadd": (L7, "CMPccXADD instructions"),
    "arch_perfmon_ext": (L7, "ArchPerfmonExt is valid"),
    "fzrm": (L7, "fast zero-length MOVSB"),
    "fsrs": (L7, "fast short STOSB"),
    "fsrc": (L7, "fast short CMPSB, SCASB"),
    "wrmsrns": (L7, "WRMSRNS instruction"),
    "amx_fp16": (L7, "AMX-FP16: FP16 tile operations"),
    "hreset": (L7, "HRESET: history reset support"),
    "avx_ifma": (L7, "AVX-IFMA: integer fused multiply add"),
    "lam": (L7, "LAM: linear address masking"),
    "msrlist": (L7, "RDMSRLIST, WRMSRLIST instructions"),
    # leaf 7.1 EBX and EDX, 7.2 EDX: the ones the tool names
    "intel_ppin": (L7, "IA32_PPIN & IA32_PPIN_CTL MSRs supported"),
    "avx_vnni_int8": (L7, "AVX-VNNI-INT8 instructions"),
    "avx_ne_convert": (L7, "AVX-NE-CONVERT instructions"),
    "prefetchiti": (L7, "PREFETCHIT0, PREFETCHIT1 instructions"),
    "cet_sss": (L7, "CET_SSS: shadow stacks w/o page faults"),
    "intel_psfd": (L7, "PSFD: fast store forwarding pred disable"),
    "ipred_ctrl": (L7, "IPRED_CTRL: IBP disable"),
    "rrsba_ctrl": (L7, "RRSBA_CTRL: IBP bottomless RSB disable"),
    "ddpd_u": (L7, "DDPD_U: data dep prefetcher disable"),
    "bhi_ctrl": (L7, "BHI_CTRL: IBP BHB-focused disable"),
    "mcdt_no": (L7, "MCDT_NO: MCDT mitigation not needed"),
    # leaf 0x80000001 EDX. Bit 25 is left out on purpose: the APM defines it as
    # FFXSR (our fxsr_opt) but the tool prints it as "SSE extensions", a
    # leaf-1 meaning, so the two do not name the same feature.
    "e_fpu": (X1_EDX, "x87 FPU on chip"),
    "e_vme": (X1_EDX, "virtual-8086 mode enhancement"),
    "e_de": (X1_EDX, "debugging extensions"),
    "e_pse": (X1_EDX, "page size extensions"),
    "e_tsc": (X1_EDX, "time stamp counter"),
    "e_msr": (X1_EDX, "RDMSR and WRMSR support"),
    "e_pae": (X1_EDX, "physical address extensions"),
    "e_mce": (X1_EDX, "machine check exception"),
    "e_cx8": (X1_EDX, "CMPXCHG8B inst"),
    "e_apic": (X1_EDX, "APIC on chip"),
    "syscall": (X1_EDX, "SYSCALL and SYSRET instructions"),
    "e_mtrr": (X1_EDX, "memory type range registers"),
    "e_pge": (X1_EDX, "global paging extension"),
    "e_mca": (X1_EDX, "machine check architecture"),
    "e_cmov": (X1_EDX, "conditional move/compare instruction"),
    "e_pat": (X1_EDX, "page attribute table"),
    "e_pse36": (X1_EDX, "page size extension"),  # taken whole: also the prefix of e_pse's line
    "mp": (X1_EDX, "multiprocessing capable"),
    "nx": (X1_EDX, ("no-execute page protection", "execution disable")),  # AMD / Intel wording
    "mmxext": (X1_EDX, "AMD multimedia instruction extensions"),
    "e_mmx": (X1_EDX, "MMX Technology"),
    "e_fxsr": (X1_EDX, "FXSAVE/FXRSTOR"),
    "pdpe1gb": (X1_EDX, "1-GB large page support"),
    "rdtscp": (X1_EDX, "RDTSCP"),
    "lm": (X1_EDX, ("long mode (AA-64)", "64-bit extensions technology available")),  # AMD / Intel
    "3dnowext": (X1_EDX, "3DNow! instruction extensions"),
    "3dnow": (X1_EDX, "3DNow! instructions"),
    # leaf 0x80000001 ECX
    "lahf_lm": (X1_ECX, "LAHF/SAHF supported in 64-bit mode"),
    "cmp_legacy": (X1_ECX, "CMP Legacy"),
    "svm": (X1_ECX, "SVM: secure virtual machine"),
    "extapic": (X1_ECX, "extended APIC space"),
    "cr8_legacy": (X1_ECX, "AltMovCr8"),
    "abm": (X1_ECX, "LZCNT advanced bit manipulation"),
    "sse4a": (X1_ECX, "SSE4A support"),
    "misalignsse": (X1_ECX, "misaligned SSE mode"),
    "3dnowprefetch": (X1_ECX, "3DNow! PREFETCH/PREFETCHW instructions"),
    "osvw": (X1_ECX, "OS visible workaround"),
    "ibs": (X1_ECX, "instruction based sampling"),
    "xop": (X1_ECX, "XOP support"),
    "skinit": (X1_ECX, "SKINIT/STGI support"),
    "wdt": (X1_ECX, "watchdog timer support"),
    "lwp": (X1_ECX, "lightweight profiling support"),
    "fma4": (X1_ECX, "4-operand FMA instruction"),
    "tce": (X1_ECX, "TCE: translation cache extension"),
    "nodeid_msr": (X1_ECX, "NodeId MSR C001100C"),
    "tbm": (X1_ECX, "TBM support"),
    "topoext": (X1_ECX, "topology extensions"),
    "perfctr_core": (X1_ECX, "core performance counter extensions"),
    "perfctr_nb": (X1_ECX, "NB/DF performance counter extensions"),
    "bpext": (X1_ECX, "data breakpoint extension"),
    "ptsc": (X1_ECX, "performance time-stamp counter support"),
    "perfctr_llc": (X1_ECX, "LLC performance counter extensions"),
    "mwaitx": (X1_ECX, "MWAITX/MONITORX supported"),
    "addr_mask_ext": (X1_ECX, "Address mask extension support"),
}

# -- allowances: where the tool prints no line for a mapped name ---------------
# For GenuineIntel parts the tool decodes 0x80000001 with Intel's definition of
# the leaf, which has only LAHF/SAHF, LZCNT and PREFETCHW in ECX and SYSCALL,
# XD, 1-GB pages, RDTSCP and Intel 64 in EDX.  Every other bit there is AMD's,
# so the tool has no line for it on an Intel part (it is reserved, and zero,
# in every Intel dump).
_AMD_ONLY_X1 = (
    "the tool decodes 0x80000001 by Intel's definition on GenuineIntel parts and prints no line "
    "for this AMD-defined bit (reserved on Intel)"
)
_AMD_COPY_X1 = (
    "AMD copy of a leaf-1 EDX bit in 0x80000001 EDX; Intel leaves it reserved and the tool prints "
    "no line for it on GenuineIntel parts (its leaf-1 twin is compared instead)"
)
NO_LINE_ALLOWED: dict[str, dict[str, str]] = {
    **{
        n: {"GenuineIntel": _AMD_COPY_X1}
        for n in (
            "e_fpu", "e_vme", "e_de", "e_pse", "e_tsc", "e_msr", "e_pae", "e_mce", "e_cx8", "e_apic",
            "e_mtrr", "e_pge", "e_mca", "e_cmov", "e_pat", "e_pse36", "e_mmx", "e_fxsr",
        )
    },
    **{
        n: {"GenuineIntel": _AMD_ONLY_X1}
        for n in (
            "mp", "mmxext", "3dnowext", "3dnow",
            "cmp_legacy", "svm", "extapic", "cr8_legacy", "sse4a", "misalignsse", "osvw", "ibs", "xop",
            "skinit", "wdt", "lwp", "fma4", "tce", "nodeid_msr", "tbm", "topoext", "perfctr_core",
            "perfctr_nb", "bpext", "ptsc", "perfctr_llc", "mwaitx", "addr_mask_ext",
        )
    },
}

PROBE_VENDORS = ("GenuineIntel", "AuthenticAMD", "HygonGenuine")


# -- reading the tool's output -------------------------------------------------
@dataclass
class ToolCpu:
    """One ``CPU N:`` block of ``cpuid -f`` output."""

    number: int
    vendor: str | None = None
    # section path (headers by indentation, without the colon) -> description -> value
    flags: dict[tuple[str, ...], dict[str, bool]] = field(default_factory=dict)
    # (section path, description) printed more than once
    repeated: set[tuple[tuple[str, ...], str]] = field(default_factory=set)

    def true_lines(self) -> set[tuple[tuple[str, ...], str]]:
        """Decoded lines that say true.  The tool's derived sections, whose headers start with "("
        (e.g. "(instruction supported synth)": CMPXCHG8B true if 1/edx or 0x80000001/edx says so),
        combine several bits and are left out."""
        return {
            (path, d)
            for path, lines in self.flags.items()
            if not (path and path[0].startswith("("))
            for d, v in lines.items()
            if v
        }

    def line_for(self, name: str) -> tuple[str, str, bool] | None:
        """(header, description, value) of the tool's line for catalog ``name``, or None if not printed."""
        pattern, wanted = TOOL_LINES[name]
        alternatives = (wanted,) if isinstance(wanted, str) else wanted
        found = []
        for path, lines in self.flags.items():
            if len(path) != 1 or not re.fullmatch(pattern, path[0]):
                continue
            for alt in alternatives:
                exact = [d for d in lines if d == alt]
                hits = exact or [d for d in lines if d.startswith(alt)]
                if len(hits) > 1:
                    raise AssertionError(f"{name}: {alt!r} fits several lines of {path[0]!r}: {hits}")
                found += [(path[0], d, lines[d]) for d in hits]
                if exact and (path, alt) in self.repeated:
                    raise AssertionError(f"{name}: {alt!r} is printed twice in {path[0]!r}")
        if len(found) > 1:
            raise AssertionError(f"{name}: several tool lines fit: {found}")
        return found[0] if found else None


_CPU_HEADER = re.compile(r"^CPU (\d+):\s*$")
_VENDOR = re.compile(r'^\s+vendor_id = "(.*)"\s*$')
_FLAG = re.compile(r"^(\s+)(\S.*?)\s*= (true|false)\s*$")
_HEADER = re.compile(r"^(\s+)(\S.*?):\s*$")


def parse_tool_output(text: str) -> list[ToolCpu]:
    cpus: list[ToolCpu] = []
    stack: list[tuple[int, str]] = []  # (indent, header) of the open sections
    for line in text.splitlines():
        m = _CPU_HEADER.match(line)
        if m:
            cpus.append(ToolCpu(int(m[1])))
            stack = []
            continue
        if not line.strip() or not cpus:
            continue
        cpu = cpus[-1]
        indent = len(line) - len(line.lstrip(" "))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        m = _VENDOR.match(line)
        if m and cpu.vendor is None:
            cpu.vendor = m[1]
            continue
        m = _FLAG.match(line)
        if m:
            path = tuple(h for _, h in stack)
            lines = cpu.flags.setdefault(path, {})
            if m[2] in lines:
                cpu.repeated.add((path, m[2]))
            lines[m[2]] = m[3] == "true"
            continue
        m = _HEADER.match(line)
        if m and "=" not in line:
            stack.append((indent, m[2]))
    return cpus


def run_tool(raw_text: str, path: Path) -> list[ToolCpu]:
    path.write_text(raw_text)
    proc = subprocess.run(
        ["cpuid", "-f", str(path)], capture_output=True, text=True, timeout=TOOL_TIMEOUT, check=False
    )
    assert proc.returncode == 0, f"cpuid -f {path.name} exited {proc.returncode}: {proc.stderr.strip()[:500]}"
    cpus = parse_tool_output(proc.stdout)
    assert cpus, f"cpuid -f {path.name} printed no CPU block:\n{proc.stdout[:500]}"
    return cpus


# -- one-bit probe tables --------------------------------------------------------
def _vendor_regs(vendor: str) -> dict[str, int]:
    raw = vendor.encode("ascii")
    assert len(raw) == 12
    ebx, edx, ecx = (int.from_bytes(raw[i : i + 4], "little") for i in (0, 4, 8))
    return {"ebx": ebx, "ecx": ecx, "edx": edx}


def probe_table(vendor: str, name: str | None) -> CpuidTable:
    """Leaves 0, 1, 7.0-7.2, 0x80000000 and 0x80000001, all zero but for the bit of ``name``."""
    regs: dict[tuple[int, int], dict[str, int]] = {
        (0, 0): {"eax": 7, **_vendor_regs(vendor)},
        (1, 0): {},
        (7, 0): {"eax": 2},  # highest subleaf of leaf 7
        (7, 1): {},
        (7, 2): {},
        (0x80000000, 0): {"eax": 0x80000001},
        (0x80000001, 0): {},
    }
    if name is not None:
        f = catalog().resolve(name)
        key = (f.leaf, f.sub_lo)
        assert key in regs, f"{name} lives in leaf {f.leaf:#x}.{f.sub_lo}, which the probe table lacks"
        old = regs[key].get(f.register, 0)
        assert not old & f.mask, f"{name}: its bit is already used by the probe table's frame"
        regs[key][f.register] = insert_bits(old, f.hi, f.lo, 1)
    entries = [
        CpuidEntry(leaf, sub, FLAG_SIGNIFICANT_INDEX if leaf == 7 else 0, **r) for (leaf, sub), r in regs.items()
    ]
    return CpuidTable(entries, source=f"probe {vendor} {name}")


def _as_cpu(raw_text: str, number: int) -> str:
    first, rest = raw_text.split("\n", 1)
    assert re.fullmatch(r"CPU( \d+)?:", first), f"unexpected first line of a cpuid-raw dump: {first!r}"
    return f"CPU {number}:\n{rest}"


@dataclass
class Probe:
    vendor: str
    name: str
    table: CpuidTable
    baseline: ToolCpu
    result: ToolCpu


# -- module-scoped runs ------------------------------------------------------------
@dataclass
class GoldenRun:
    dump: str
    table: CpuidTable
    ours: set[str]
    tool: ToolCpu


@pytest.fixture(scope="module")
def golden_runs(tmp_path_factory) -> list[GoldenRun]:
    """`cpuid -f` once for each libvirt dump, written by cpuidkit in `cpuid -r` form."""
    out = tmp_path_factory.mktemp("golden")
    runs = []
    for path in libvirt_dumps():
        table = load(path)
        cpus = run_tool(dumps(table, "cpuid-raw"), out / f"{path.stem}.raw")
        assert len(cpus) == 1, f"{path.name}: expected one CPU block, got {len(cpus)}"
        runs.append(GoldenRun(path.name, table, set(catalog().features(table)), cpus[0]))
    return runs


@pytest.fixture(scope="module")
def probes(tmp_path_factory) -> list[Probe]:
    """For each probe vendor, one `cpuid -f` run over a file of one-bit CPUs (CPU 0 has no bit set)."""
    out = tmp_path_factory.mktemp("probes")
    names = sorted(TOOL_LINES)
    results = []
    for vendor in PROBE_VENDORS:
        tables = [probe_table(vendor, None)] + [probe_table(vendor, n) for n in names]
        text = "".join(_as_cpu(dumps(t, "cpuid-raw"), i) for i, t in enumerate(tables))
        cpus = run_tool(text, out / f"probe-{vendor}.raw")
        assert [c.number for c in cpus] == list(range(len(tables))), "the tool skipped or reordered CPU blocks"
        assert all(c.vendor == vendor for c in cpus)
        results += [Probe(vendor, n, t, cpus[0], c) for n, t, c in zip(names, tables[1:], cpus[1:])]
    return results


# -- tests ---------------------------------------------------------------------------
def test_mapping_names_are_one_bit_catalog_fields_in_scope():
    in_scope = {(0x1, 0), (0x7, 0), (0x7, 1), (0x7, 2), (0x80000001, 0)}
    bad = []
    for name in TOOL_LINES:
        f = catalog().resolve(name)  # LookupFailed if the catalog lacks the name
        if not f.is_flag or (f.leaf, f.sub_lo) not in in_scope or f.sub_lo != f.sub_hi:
            bad.append(str(f))
    assert not bad, f"mapped names that are not single bits of leaves 1, 7.0-7.2, 0x80000001: {bad}"
    assert len(TOOL_LINES) >= 100
    assert set(NO_LINE_ALLOWED) <= set(TOOL_LINES)
    # no two names may claim the same tool line
    seen: dict[tuple[str, str], str] = {}
    for name, (pattern, wanted) in TOOL_LINES.items():
        for alt in (wanted,) if isinstance(wanted, str) else wanted:
            other = seen.setdefault((pattern, alt), name)
            assert other == name, f"{name} and {other} both map to {alt!r}"


@pytest.mark.cpuid_tool
def test_mapping_matches_the_tool_bit_for_bit(probes: list[Probe]):
    """A table with only the catalog bit of a name set turns on exactly the mapped tool line."""
    problems = []
    for p in probes:
        ours = catalog().features(p.table)
        if ours != [p.name]:
            problems.append(f"{p.vendor} {p.name}: cpuidkit decodes the one-bit table as {ours}")
        base = p.baseline.true_lines()
        gained = p.result.true_lines() - base
        lost = base - p.result.true_lines()
        line = p.result.line_for(p.name)
        allowed = NO_LINE_ALLOWED.get(p.name, {}).get(p.vendor)
        f = catalog().resolve(p.name)
        if line is None:
            if allowed is None:
                problems.append(f"{p.vendor} {p.name} ({f}): the tool prints no mapped line")
            elif gained:
                problems.append(f"{p.vendor} {p.name} ({f}): allowance says no line, but {sorted(gained)} turned true")
            continue
        header, desc, value = line
        if p.baseline.line_for(p.name) is None or p.baseline.line_for(p.name)[2]:
            problems.append(f"{p.vendor} {p.name}: line {desc!r} missing or already true with no bit set")
        if not value or gained != {((header,), desc)} or lost:
            problems.append(
                f"{p.vendor} {p.name} ({f}): expected only [{header}] {desc!r} to turn true; "
                f"turned true: {sorted(d for _, d in gained)}, turned false: {sorted(d for _, d in lost)}"
            )
    assert not problems, "mapping and tool disagree:\n" + "\n".join(problems)


@pytest.mark.cpuid_tool
def test_allowances_are_needed(probes: list[Probe]):
    """Every allowance matches a probe where the tool really prints no line (no stale excuses)."""
    stale = []
    for p in probes:
        if p.vendor in NO_LINE_ALLOWED.get(p.name, {}) and p.result.line_for(p.name) is not None:
            stale.append(f"{p.vendor} {p.name}")
    assert not stale, f"allowances that the tool does not need: {stale}"


@pytest.mark.cpuid_tool
def test_golden_decoder_agrees_with_the_cpuid_tool(golden_runs: list[GoldenRun]):
    assert len(golden_runs) == 28
    mismatches = []
    compared = 0
    for run in golden_runs:
        for name in sorted(TOOL_LINES):
            line = run.tool.line_for(name)
            ours = name in run.ours
            if line is None:
                f = catalog().resolve(name)
                leaf_absent = run.table.get(f.leaf, f.sub_lo) is None
                if leaf_absent and not ours:
                    continue  # neither decoder has this leaf/subleaf in the dump
                if run.tool.vendor in NO_LINE_ALLOWED.get(name, {}):
                    continue
                mismatches.append(f"{run.dump}: {name} ({f}): ours={ours}, the tool prints no line")
                continue
            compared += 1
            header, desc, value = line
            if value != ours:
                mismatches.append(f"{run.dump}: {name}: ours={ours}, tool [{header}] {desc!r} = {value}")
    assert not mismatches, f"{len(mismatches)} disagreement(s) in {compared} comparisons:\n" + "\n".join(mismatches)
    # the leaves of every mapped name are in most dumps, so nearly every pair is compared
    assert compared >= 0.75 * len(golden_runs) * len(TOOL_LINES), compared


@pytest.mark.cpuid_tool
def test_golden_dumps_are_decoded_by_the_tool_as_the_same_cpu(golden_runs: list[GoldenRun]):
    """The `cpuid -r` text we write is read back by the tool with our vendor (so the sections line up)."""
    wrong = [
        f"{r.dump}: ours {r.table.vendor!r}, tool {r.tool.vendor!r}" for r in golden_runs if r.tool.vendor != r.table.vendor
    ]
    assert not wrong, wrong
