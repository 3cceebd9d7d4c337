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

from conftest import ROOT, all_dumps, libvirt_dumps
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
    # every "description = value" line, true/false ones included, as text: (section path, block) -> description
    # -> value.  A block is the N of a "--- cache N ---" / "--- level N ---" line inside the section (else None).
    values: dict[tuple[tuple[str, ...], int | None], dict[str, str]] = field(default_factory=dict)
    repeated_values: set[tuple[tuple[str, ...], int | None, str]] = field(default_factory=set)

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
_VALUE = re.compile(r"^(\s+)(\S.*?)\s*= (.*?)\s*$")
_BLOCK = re.compile(r"^\s+--- \w+ (\d+) ---\s*$")


def _record_value(
    cpu: ToolCpu, path: tuple[str, ...], block: tuple[tuple[str, ...], int] | None, desc: str, value: str
) -> None:
    key = (path, block[1] if block is not None and block[0] == path else None)
    lines = cpu.values.setdefault(key, {})
    if desc in lines:
        cpu.repeated_values.add((*key, desc))
    lines[desc] = value


def parse_tool_output(text: str) -> list[ToolCpu]:
    cpus: list[ToolCpu] = []
    stack: list[tuple[int, str]] = []  # (indent, header) of the open sections
    block: tuple[tuple[str, ...], int] | None = None  # the section path and N of the last "--- x N ---" line
    for line in text.splitlines():
        m = _CPU_HEADER.match(line)
        if m:
            cpus.append(ToolCpu(int(m[1])))
            stack = []
            block = None
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
        m = _BLOCK.match(line)
        if m:
            block = (tuple(h for _, h in stack), int(m[1]))
            continue
        m = _FLAG.match(line)
        if m:
            path = tuple(h for _, h in stack)
            lines = cpu.flags.setdefault(path, {})
            if m[2] in lines:
                cpu.repeated.add((path, m[2]))
            lines[m[2]] = m[3] == "true"
            _record_value(cpu, path, block, m[2], m[3])
            continue
        m = _VALUE.match(line)
        if m:
            _record_value(cpu, tuple(h for _, h in stack), block, m[2], m[3])
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



# ==================================================================================================
# The extended set: the fields of the leaves beyond 1, 7 and 0x80000001 (caches, topology, PMU, TSC and
# frequency, MONITOR, RDT, SVM, AMD cache/TLB/IBS/LWP leaves ...) and the brand and vendor strings.
#
# VALUE_LINES ties a catalog field to one `name = value` line of the tool, written from the meaning of the
# field (SDM vol. 2A CPUID, APM vol. 3 appendix E): `expect` turns our raw field into what the line means
# (e.g. the SDM's "minus one" fields print one more).  test_value_lines_match_the_tool_bit_for_bit proves
# every line with a probe CPU whose only non-frame value is that field; test_extended_set_agrees_with_the_tool
# compares every dump, leaf by leaf.
# ==================================================================================================


def tool_int(text: str) -> int:
    """The number of a value line: "0x40 (64)", "data cache (1)", "L2 off (0)", "64", "25000000 Hz", "0x000c0000"."""
    text = text.rstrip(":").strip()
    m = re.match(r"0x([0-9a-fA-F]+)\b", text)
    if m:
        return int(m[1], 16)
    m = re.search(r"\((\d+)\)$", text)
    if m:
        return int(m[1])
    m = re.match(r"(\d+)\b", text)
    if m:
        return int(m[1])
    raise ValueError(f"no number in {text!r}")


def tool_bool(text: str) -> bool:
    if text not in ("true", "false"):
        raise ValueError(f"not true/false: {text!r}")
    return text == "true"


def tool_unavailable(text: str) -> bool:
    """Leaf 0xA EBX lines say "available" when the bit is clear: the bit means *not* available."""
    if text not in ("available", "not available"):
        raise ValueError(f"not (not) available: {text!r}")
    return text == "not available"


def _same(v: int) -> int:
    return v


def _plus_one(v: int) -> int:  # the SDM/APM "minus one" encodings: the tool prints the count
    return v + 1


@dataclass(frozen=True)
class ValueLine:
    name: str  # catalog field
    section: str  # regular expression of the tool's section header, matched in full; "{sub}" is the subleaf
    desc: str  # the description, exactly as the tool prints it
    vendor: str  # the vendor of the probe CPU that proves the line
    expect: object = _same  # our raw value -> what the line says (compared after `parse`)
    parse: object = tool_int
    block: bool = False  # the subleaf is the N of the section's "--- cache N ---" / "--- level N ---" blocks
    subleaf: int | None = None  # compare only this subleaf of a ranged field
    label: str = ""  # tells apart several lines of one field (the bits of a bitmap)
    # (table -> why the field has no meaning there, or None): such a dump is not compared for this line
    meaningless: object = None

    @property
    def key(self) -> str:
        return f"{self.name}{'/' + self.label if self.label else ''}"

    def line(self, cpu: ToolCpu, sub: int) -> str | None:
        """The text of this line for ``sub`` in ``cpu``, or None if the tool printed no such line."""
        pattern = self.section.format(sub=f"(?:{sub}|{sub:#x})")
        block = sub if self.block else None
        found = [
            (path, lines[self.desc])
            for (path, blk), lines in cpu.values.items()
            if blk == block
            and len(path) == (1 if self.section else 0)
            and self.desc in lines
            and (not self.section or re.fullmatch(pattern, path[0]))
        ]
        if len(found) > 1:
            raise AssertionError(f"{self.key}: several tool lines fit for subleaf {sub}: {found}")
        if found and (found[0][0], block, self.desc) in cpu.repeated_values:
            raise AssertionError(f"{self.key}: {self.desc!r} is printed twice in {found[0][0]}")
        return found[0][1] if found else None


INTEL, AMD = "GenuineIntel", "AuthenticAMD"
_CORE_TYPES = {"Intel Atom": 0x20, "Intel Core": 0x40}  # leaf 0x1A EAX[31:24], the SDM's two core types


def _v(name, section, desc, vendor, **kw) -> ValueLine:
    return ValueLine(name, section, desc, vendor, **kw)


def _f(name, section, desc, vendor, **kw) -> ValueLine:
    return ValueLine(name, section, desc, vendor, expect=bool, parse=tool_bool, **kw)


C4 = r"deterministic cache parameters \(4\)"
M5 = r"MONITOR/MWAIT \(5\)"
PMU = r"Architecture Performance Monitoring Features \(0xa\)"
TOPO_B = r"x2APIC features / processor topology \(0xb\)"
QOS_F0 = r"Quality of Service Monitoring Resource Type \(0xf/0\)"
QOS_F1 = r"L3 Cache Quality of Service Monitoring \(0xf/1\)"
RDT_0 = r"Resource Director Technology Allocation \(0x10/0\)"
RDT_CAT = r"L[23] Cache Allocation Technology \(0x10/{sub}\)"
RDT_MBA = r"Memory Bandwidth Allocation \(0x10/3\)"
TSC_15 = r"Time Stamp Counter/Core Crystal Clock Information \(0x15\)"
FREQ_16 = r"Processor Frequency Information \(0x16\)"
TLB_18 = r"Deterministic Address Translation Parameters \(0x18/{sub}\)"
HYB_1A = r"Native Model ID Information \(0x1a/0\)"
TOPO_1F = r"V2 extended topology \(0x1f\)"
X5 = {
    "eax": r"L1 TLB/cache information: 2M/4M pages & L1 TLB \(0x80000005/eax\)",
    "ebx": r"L1 TLB/cache information: 4K pages & L1 TLB \(0x80000005/ebx\)",
    "ecx": r"L1 data cache information \(0x80000005/ecx\)",
    "edx": r"L1 instruction cache information \(0x80000005/edx\)",
}
X6 = {
    "eax": r"L2 TLB/cache information: 2M/4M pages & L2 TLB \(0x80000006/eax\)",
    "ebx": r"L2 TLB/cache information: 4K pages & L2 TLB \(0x80000006/ebx\)",
    "ecx": r"L2 unified cache information \(0x80000006/ecx\)",
    "edx": r"L3 cache information \(0x80000006/edx\)",
}
SVM_A = r"SVM Secure Virtual Machine \(0x8000000a/eax\)"
SVM_D = r"SVM Secure Virtual Machine \(0x8000000a/edx\)"
X19 = {
    "eax": r"L1 TLB information: 1G pages \(0x80000019/eax\)",
    "ebx": r"L2 TLB information: 1G pages \(0x80000019/ebx\)",
}
X1A = r"Performance Optimization Identifiers \(0x8000001a/eax\)"
X1B = r"Instruction Based Sampling Identifiers \(0x8000001b/eax\)"
LWP_A = r"Lightweight Profiling Capabilities: Availability \(0x8000001c/eax\)"
LWP_D = r"Lightweight Profiling Capabilities: Supported \(0x8000001c/edx\)"
LWP_B = r"Lightweight Profiling Capabilities \(0x8000001c/ebx\)"
LWP_C = r"Lightweight Profiling Capabilities \(0x8000001c/ecx\)"
X1D = r"Cache Properties \(0x8000001d\)"
X1E_B = r"Core Identifiers \(0x8000001e/ebx\)"
X1E_C = r"Node Identifiers \(0x8000001e/ecx\)"
PQE_0 = r"PQoS Enforcement \(0x80000020\)"
PQE_1 = r"PQoS Enforcement for L3 External Bandwidth \(0x80000020/1\)"
PQE_2 = r"PQoS Enforcement for L3 External Slow Memory Bandwidth \(0x80000020/2\)"
PQE_3 = r"PQoS Enforcement for Bandwidth Monitoring Event Configuration \(0x80000020/3\)"
PMC_22 = r"Extended Performance Monitoring and Debugging \(0x80000022\)"
MKE_23 = r"Multi-Key Encrypted Memory Capabilities \(0x80000023\)"
TOPO_26 = r"AMD Extended CPU Topology \(0x80000026\)"


def _beyond_event_vector(table: CpuidTable, f) -> str | None:
    """Leaf 0xA EBX bit n only says something when n < EAX[31:24], the vector's length (SDM vol. 2A, CPUID)."""
    e = table.get(0xA)
    length = 0 if e is None else e.eax >> 24 & 0xFF
    return None if f.lo < length else "leaf 0xA EBX bit beyond the event vector length EAX[31:24]"


def _tlb_lines(prefix: str, section: str, pages: str) -> list[ValueLine]:
    return [
        _v(f"{prefix}itlb_{pages}_nentries", section, "instruction # entries", AMD),
        _v(f"{prefix}itlb_{pages}_assoc", section, "instruction associativity", AMD),
        _v(f"{prefix}dtlb_{pages}_nentries", section, "data # entries", AMD),
        _v(f"{prefix}dtlb_{pages}_assoc", section, "data associativity", AMD),
    ]


def _lwp_lines(prefix: str, section: str) -> list[ValueLine]:
    names = (
        "lwp_avail",
        "lpwval",
        "lwp_ire",
        "lwp_bre",
        "lwp_dme",
        "lwp_cnh",
        "lwp_rnh",
        "lwp_cont",
        "lwp_ptsc",
        "lwp_int",
    )
    descs = (
        "lightweight profiling",
        "LWPVAL instruction",
        "instruction retired event",
        "branch retired event",
        "DC miss event",
        "core clocks not halted event",
        "core reference clocks not halted event",
        "continuous mode sampling",
        "tsc in event record",
        "interrupt on threshold overflow",
    )
    return [_f(f"{prefix}{n}", section, d, AMD) for n, d in zip(names, descs)]


VALUE_LINES: list[ValueLine] = [
    # leaf 4: deterministic cache parameters, one block per subleaf
    _v("cache_type", C4, "cache type", INTEL, block=True),
    _v("cache_level", C4, "cache level", INTEL, block=True),
    _f("cache_self_init", C4, "self-initializing cache level", INTEL, block=True),
    _f("fully_associative", C4, "fully associative cache", INTEL, block=True),
    _v("num_threads_sharing", C4, "maximum IDs for CPUs sharing cache", INTEL, block=True),
    _v("num_cores_on_die", C4, "maximum IDs for cores in pkg", INTEL, block=True),
    _v("cache_linesize", C4, "system coherency line size", INTEL, block=True, expect=_plus_one),
    _v("cache_npartitions", C4, "physical line partitions", INTEL, block=True, expect=_plus_one),
    _v("cache_nways", C4, "ways of associativity", INTEL, block=True, expect=_plus_one),
    _v("cache_nsets", C4, "number of sets", INTEL, block=True, expect=_plus_one),
    _f("wbinvd_rll_no_guarantee", C4, "WBINVD/INVD acts on lower caches", INTEL, block=True),
    _f("ll_inclusive", C4, "inclusive to lower caches", INTEL, block=True),
    _f("complex_indexing", C4, "complex cache indexing", INTEL, block=True),
    # leaf 5: MONITOR/MWAIT
    _v("min_mon_size", M5, "smallest monitor-line size (bytes)", INTEL),
    _v("max_mon_size", M5, "largest monitor-line size (bytes)", INTEL),
    _f("mwait_ext", M5, "enum of Monitor-MWAIT exts supported", INTEL),
    _f("mwait_irq_break", M5, "supports intrs as break-event for MWAIT", INTEL),
    *(_v(f"n_c{n}_substates", M5, f"number of C{n} sub C-states using MWAIT", INTEL) for n in range(8)),
    # leaf 0xA: architectural performance monitoring
    _v("pmu_version", PMU, "version ID", INTEL),
    _v("num_counters_gp", PMU, "number of counters per logical processor", INTEL),
    _v("bit_width_gp", PMU, "bit width of counter", INTEL),
    _v("events_mask_len", PMU, "length of EBX bit vector", INTEL),
    *(
        ValueLine(name, PMU, desc, INTEL, expect=bool, parse=tool_unavailable, meaningless=_beyond_event_vector)
        for name, desc in (
            ("no_core_cycle", "core cycle event"),
            ("no_instruction_retired", "instruction retired event"),
            ("no_reference_cycles", "reference cycles event"),
            ("no_llc_reference", "last-level cache ref event"),
            ("no_llc_misses", "last-level cache miss event"),
            ("no_br_insn_retired", "branch inst retired event"),
            ("no_br_misses_retired", "branch mispred retired event"),
            ("no_topdown_slots", "top-down slots event"),
        )
    ),
    *(
        ValueLine(
            "pmu_fcounters_bitmap",
            PMU,
            f"fixed counter {i:2d} supported",
            INTEL,
            expect=lambda v, i=i: bool(v >> i & 1),
            parse=tool_bool,
            label=f"bit{i}",
        )
        for i in range(32)
    ),
    _v("num_counters_fixed", PMU, "number of contiguous fixed counters", INTEL),
    _v("bitwidth_fixed", PMU, "bit width of fixed counters", INTEL),
    _f("anythread_deprecation", PMU, "anythread deprecation", INTEL),
    # leaf 0xB: extended topology, one block per level (the x2APIC ID once, from subleaf 0)
    _v("x2apic_id", TOPO_B, "extended APIC ID", INTEL, subleaf=0),
    _v("domain_nr", TOPO_B, "level number", INTEL, block=True),
    _v("domain_type", TOPO_B, "level type", INTEL, block=True),
    _v("x2apic_id_shift", TOPO_B, "bit width of level", INTEL, block=True),
    _v("domain_lcpus_count", TOPO_B, "number of logical processors at level", INTEL, block=True),
    # leaves 0xF and 0x10: resource director technology
    _v("core_rmid_max", QOS_F0, "Maximum range of RMID", INTEL),
    _f("cqm_llc", QOS_F0, "supports L3 cache QoS monitoring", INTEL),
    _v("l3c_qm_conver_factor", QOS_F1, "Conversion factor from IA32_QM_CTR to bytes", INTEL),
    _v("l3c_qm_rmid_max", QOS_F1, "Maximum range of RMID", INTEL),
    _v("l3c_qm_bitwidth", QOS_F1, "QoS monitoring counter size-24", INTEL),
    _f("l3c_qm_overflow_bit", QOS_F1, "IA32_QM_CTR bit 61 is overflow", INTEL),
    _f("cqm_occup_llc", QOS_F1, "supports L3 occupancy monitoring", INTEL),
    _f("cqm_mbm_total", QOS_F1, "supports L3 total bandwidth monitoring", INTEL),
    _f("cqm_mbm_local", QOS_F1, "supports L3 local bandwidth monitoring", INTEL),
    _f("cat_l3", RDT_0, "L3 cache allocation technology supported", INTEL),
    _f("cat_l2", RDT_0, "L2 cache allocation technology supported", INTEL),
    _f("rdt_mba", RDT_0, "memory bandwidth allocation supported", INTEL),
    _v("cat_cbm_len", RDT_CAT, "length of capacity bit mask", INTEL, expect=_plus_one),
    _v("cat_units_bitmap", RDT_CAT, "Bit-granular map of isolation/contention", INTEL),
    _f("l3_cat_cos_infreq_updates", RDT_CAT, "infrequent updates of COS", INTEL),
    _f("cdp_l3", RDT_CAT, "code and data prioritization supported", INTEL),
    _f("cdp_l2", RDT_CAT, "code and data prioritization supported", INTEL),
    _v("cat_cos_max", RDT_CAT, "highest COS number supported", INTEL),
    _v("mba_max_delay", RDT_MBA, "maximum throttling value", INTEL, expect=_plus_one),
    _f("per_thread_mba", RDT_MBA, "per-thread MBA control", INTEL),
    _f("mba_delay_linear", RDT_MBA, "delay values are linear", INTEL),
    _v("mba_cos_max", RDT_MBA, "highest COS number supported", INTEL),
    # leaves 0x15 and 0x16: TSC and frequencies ("TSC/clock ratio = numerator/denominator")
    _v("tsc_numerator", TSC_15, "TSC/clock ratio", INTEL, parse=lambda t: int(t.split("/")[0])),
    _v("tsc_denominator", TSC_15, "TSC/clock ratio", INTEL, parse=lambda t: int(t.split("/")[1])),
    _v("cpu_crystal_hz", TSC_15, "nominal core crystal clock", INTEL),
    _v("cpu_base_mhz", FREQ_16, "Core Base Frequency (MHz)", INTEL),
    _v("cpu_max_mhz", FREQ_16, "Core Maximum Frequency (MHz)", INTEL),
    _v("bus_mhz", FREQ_16, "Bus (Reference) Frequency (MHz)", INTEL),
    # leaf 0x18: deterministic address translation, one section per subleaf
    _f("tlb_4k_page", TLB_18, "4KB page size entries supported", INTEL),
    _f("tlb_2m_page", TLB_18, "2MB page size entries supported", INTEL),
    _f("tlb_4m_page", TLB_18, "4MB page size entries supported", INTEL),
    _f("tlb_1g_page", TLB_18, "1GB page size entries supported", INTEL),
    _v("n_way_associative", TLB_18, "ways of associativity", INTEL),
    _v("n_sets", TLB_18, "number of sets", INTEL),
    _v("tlb_cache_level", TLB_18, "translation cache level", INTEL),
    _f("is_fully_associative", TLB_18, "fully associative", INTEL),
    _v("tlb_max_addressible_ids", TLB_18, "maximum number of addressible IDs", INTEL, expect=_plus_one),
    # leaf 0x1A: hybrid core type
    _v("core_native_model", HYB_1A, "native model ID of core", INTEL),
    _v("core_type", HYB_1A, "core type", INTEL, parse=lambda t: _CORE_TYPES.get(t) or tool_int(t)),
    # leaf 0x1F: V2 extended topology
    _v("v2_x2apic_id", TOPO_1F, "x2APIC ID of logical processor", INTEL, subleaf=0),
    _v("domain_level", TOPO_1F, "level number", INTEL, block=True),
    _v("v2_domain_type", TOPO_1F, "level type", INTEL, block=True),
    _v("v2_x2apic_id_shift", TOPO_1F, "bit width of level", INTEL, block=True),
    _v("v2_domain_lcpus_count", TOPO_1F, "number of logical processors at level", INTEL, block=True),
    # leaves 0x80000005 and 0x80000006: AMD L1/L2/L3 caches and TLBs
    *_tlb_lines("l1_", X5["eax"], "2m_4m"),
    *_tlb_lines("l1_", X5["ebx"], "4k"),
    *(
        _v(f"l1_{c}cache_{n}", X5[reg], d, AMD)
        for c, reg in (("d", "ecx"), ("i", "edx"))
        for n, d in (
            ("line_size", "line size (bytes)"),
            ("nlines", "lines per tag"),
            ("assoc", "associativity"),
            ("size_kb", "size (KB)"),
        )
    ),
    *_tlb_lines("l2_", X6["eax"], "2m_4m"),
    *_tlb_lines("l2_", X6["ebx"], "4k"),
    _v("l2_line_size", X6["ecx"], "line size (bytes)", AMD),
    _v("l2_nlines", X6["ecx"], "lines per tag", AMD),
    _v("l2_assoc", X6["ecx"], "associativity", AMD),
    _v("l2_size_kb", X6["ecx"], "size (KB)", AMD),
    _v("l3_line_size", X6["edx"], "line size (bytes)", AMD),
    _v("l3_nlines", X6["edx"], "lines per tag", AMD),
    _v("l3_assoc", X6["edx"], "associativity", AMD),
    _v("l3_size_range", X6["edx"], "size (in 512KB units)", AMD),
    # leaf 0x8000000A: SVM
    _v("svm_version", SVM_A, "SvmRev: SVM revision", AMD),
    _v("svm_nasid", "", "NASID: number of address space identifiers", AMD),  # a top-level line
    *(
        _f(name, SVM_D, desc, AMD)
        for name, desc in (
            ("npt", "nested paging"),
            ("lbrv", "LBR virtualization"),
            ("svm_lock", "SVM lock"),
            ("nrip_save", "NRIP save"),
            ("tsc_scale", "MSR based TSC rate control"),
            ("vmcb_clean", "VMCB clean bits support"),
            ("flushbyasid", "flush by ASID"),
            ("decodeassists", "decode assists"),
            ("pausefilter", "pause intercept filter"),
            ("pfthreshold", "pause filter threshold"),
            ("avic", "AVIC: AMD virtual interrupt controller"),
            ("v_vmsave_vmload", "virtualized VMLOAD/VMSAVE"),
            ("vgif", "virtualized global interrupt flag (GIF)"),
            ("gmet", "GMET: guest mode execute trap"),
            ("x2avic", "X2AVIC: virtualized X2APIC"),
            ("sss_check", "supervisor shadow stack"),
            ("v_spec_ctrl", "guest Spec_ctl support"),
            ("ro_gpt", "ROGPT: read-only guest page table"),
            ("h_mce_override", "host MCE override"),
            ("tlbsync_int", "INVLPGB/TLBSYNC hyperv interc enable"),
            ("vnmi", "VNMI: NMI virtualization"),
            ("ibs_virt", "IBS virtualization"),
            ("svme_addr_chk", "guest SVME addr check"),
        )
    ),
    # leaf 0x80000019: 1 GiB page TLBs
    *_tlb_lines("l1_", X19["eax"], "1g"),
    *_tlb_lines("l2_", X19["ebx"], "1g"),
    # leaves 0x8000001A-0x8000001C: performance hints, IBS, LWP
    _f("fp_128", X1A, "128-bit SSE executed full-width", AMD),
    _f("movu_preferred", X1A, "MOVU* better than MOVL*/MOVH*", AMD),
    _f("fp_256", X1A, "256-bit SSE executed full-width", AMD),
    *(
        _f(name, X1B, desc, AMD)
        for name, desc in (
            ("ibs_flags", "IBS feature flags valid"),
            ("ibs_fetch_sampling", "IBS fetch sampling"),
            ("ibs_op_sampling", "IBS execution sampling"),
            ("ibs_rdwr_op_counter", "read write of op counter"),
            ("ibs_op_count", "op counting mode"),
            ("ibs_branch_target", "branch target address reporting"),
            ("ibs_op_counters_ext", "IbsOpCurCnt and IbsOpMaxCnt extend 7"),
            ("ibs_rip_invalid_chk", "invalid RIP indication support"),
            ("ibs_op_branch_fuse", "fused branch micro-op indication support"),
            ("ibs_fetch_ctl_ext", "IBS fetch control extended MSR support"),
            ("ibs_op_data_4", "IBS op data 4 MSR support"),
            ("ibs_l3_miss_filter", "IBS L3 miss filtering support"),
        )
    ),
    *_lwp_lines("os_", LWP_A),
    *_lwp_lines("hw_", LWP_D),
    _v("lwp_lwpcb_sz", LWP_B, "LWPCB byte size", AMD),
    _v("lwp_event_sz", LWP_B, "event record byte size", AMD),
    _v("lwp_max_events", LWP_B, "maximum EventId", AMD),
    _v("lwp_event_offset", LWP_B, "EventInterval1 field offset", AMD),
    _v("lwp_latency_max", LWP_C, "latency counter bit size", AMD),
    _f("lwp_data_addr", LWP_C, "data cache miss address valid", AMD),
    _v("lwp_latency_rnd", LWP_C, "amount cache latency is rounded", AMD),
    _v("lwp_version", LWP_C, "LWP implementation version", AMD),
    _v("lwp_buf_min_sz", LWP_C, "event ring buffer size in records", AMD),
    _f("lwp_branch_predict", LWP_C, "branch prediction filtering", AMD),
    _f("lwp_ip_filtering", LWP_C, "IP filtering", AMD),
    _f("lwp_cache_levels", LWP_C, "cache level filtering", AMD),
    _f("lwp_cache_latency", LWP_C, "cache latency filteing", AMD),  # sic: the tool's spelling
    # leaf 0x8000001D: AMD cache properties, one block per subleaf
    _v("amd_cache_type", X1D, "type", AMD, block=True),
    _v("amd_cache_level", X1D, "level", AMD, block=True),
    _f("amd_cache_self_init", X1D, "self-initializing", AMD, block=True),
    _f("amd_fully_associative", X1D, "fully associative", AMD, block=True),
    _v("amd_num_threads_sharing", X1D, "extra cores sharing this cache", AMD, block=True),
    _v("amd_cache_linesize", X1D, "line size in bytes", AMD, block=True, expect=_plus_one),
    _v("amd_cache_npartitions", X1D, "physical line partitions", AMD, block=True, expect=_plus_one),
    _v("amd_cache_nways", X1D, "number of ways", AMD, block=True, expect=_plus_one),
    _v("amd_cache_nsets", X1D, "number of sets", AMD, block=True, expect=_plus_one),
    _f("amd_wbinvd_rll_no_guarantee", X1D, "write-back invalidate", AMD, block=True),
    _f("amd_ll_inclusive", X1D, "cache inclusive of lower levels", AMD, block=True),
    # leaf 0x8000001E: AMD core and node identifiers
    _v("ext_apic_id", "", "extended APIC ID", AMD),  # a top-level line
    _v("core_id", X1E_B, "core ID", AMD),
    _v("core_nthreads", X1E_B, "threads per core", AMD, expect=_plus_one),
    _v("node_id", X1E_C, "node ID", AMD),
    _v("nnodes_per_socket", X1E_C, "nodes per processor", AMD, expect=_plus_one),
    # leaf 0x80000020: AMD platform QoS enforcement
    _f("amd_mba", PQE_0, "L3 external bandwidth", AMD),
    _f("smba", PQE_0, "L3 external slow memory bandwidth", AMD),
    _f("bmec", PQE_0, "bandwidth monitoring event configuration", AMD),
    _f("l3rr", PQE_0, "L3 range reservation support", AMD),
    _v("mba_limit_len", PQE_1, "capacity bitmask length", AMD),
    _v("amd_mba_cos_max", PQE_1, "number of classes of service", AMD),
    _v("smba_limit_len", PQE_2, "capacity bitmask length", AMD),
    _v("smba_cos_max", PQE_2, "number of classes of service", AMD),
    _v("bmec_num_events", PQE_3, "number of bandwidth events available", AMD),
    *(
        _f(name, PQE_3, desc, AMD)
        for name, desc in (
            ("bmec_local_reads", "reads to local NUMA"),
            ("bmec_remote_reads", "reads to non-local NUMA"),
            ("bmec_local_nontemp_wr", "non-temporal writes to local NUMA"),
            ("bmec_remote_nontemp_wr", "non-temporal writes to non-local NUMA"),
            ("bmec_local_slow_mem_rd", "reads to slow memory in local NUMA"),
            ("bmec_remote_slow_mem_rd", "reads to slow memory in non-local NUMA"),
            ("bmec_all_dirty_victims", "dirty victims from QoS"),
        )
    ),
    # leaves 0x80000022 and 0x80000023: AMD PMU v2, multi-key memory encryption
    _f("perfmon_v2", PMC_22, "AMD performance monitoring V2", AMD),
    _f("amd_lbr_v2", PMC_22, "AMD LBR V2", AMD),
    _f("amd_lbr_pmc_freeze", PMC_22, "AMD LBR stack & PMC freezing", AMD),
    _v("n_pmc_core", PMC_22, "number of core perf ctrs", AMD),
    _v("lbr_v2_stack_size", PMC_22, "number of LBR stack entries", AMD),
    _v("n_pmc_northbridge", PMC_22, "number of avail Northbridge perf ctrs", AMD),
    _f("mem_hmk_mode", MKE_23, "secure host multi-key memory support", AMD),
    _v("mem_hmk_avail_keys", MKE_23, "number of encryption key IDs", AMD),
    # leaf 0x80000026: AMD extended topology, one block per level (the x2APIC ID once, from subleaf 0)
    _v("amd_x2apic_id", TOPO_26, "extended APIC ID", AMD, subleaf=0),
    _v("amd_domain_level", TOPO_26, "level number", AMD, block=True),
    _v("amd_domain_type", TOPO_26, "level type", AMD, block=True),
    _v("amd_x2apic_id_shift", TOPO_26, "bit width of level", AMD, block=True),
    _f("core_has_pwreff_ranking", TOPO_26, "power efficiency ranking available", AMD, block=True),
    _f("domain_has_hybrid_cores", TOPO_26, "cores heterogeneous at this level", AMD, block=True),
    _f("domain_core_count_asymm", TOPO_26, "components have varying number of cores", AMD, block=True),
    _v("amd_domain_lcpus_count", TOPO_26, "number of logical processors at level", AMD, block=True),
]

# Lines where the tool prints something other than what the field means, each with the evidence.  The
# comparison then checks the tool's known transform instead (so a changed tool or a wrong position still fails).
TOOL_WRONG: dict[str, tuple[object, str]] = {
    "tlb_cache_level": (
        _plus_one,
        "the tool adds 1 to 0x18 EDX[7:5], which the SDM defines as the translation cache level starting at 1 "
        "(kcpuid: 1-based), so it shows a first-level instruction TLB as level 2; the tool itself prints the "
        "same encoding of leaf 4 (EAX[7:5], cache level) unchanged",
    ),
    "mba_limit_len": (
        _plus_one,
        "the tool adds 1 to 0x80000020.1 EAX and calls it a capacity bitmask length; the field is the width of "
        "the bandwidth limit in bits, not minus one: Linux resctrl (__rdt_get_mem_config_amd) sets "
        "max_bw = 1 << EAX, and kcpuid describes it as the enforcement limit size",
    ),
    "smba_limit_len": (
        _plus_one,
        "as mba_limit_len, for subleaf 2 (slow memory): Linux uses 1 << EAX for SMBA too",
    ),
}


# -- probe CPUs for the extended set ---------------------------------------------------------------
# The frame: every leaf of the extended set present and zero, except what makes the tool print its
# sections (a cache or a topology level in subleaf 0, the RDT and PQoS resources announced in subleaf 0).
_FRAME_INTEL: dict[tuple[int, int], dict[str, int]] = {
    (0x4, 0): {"eax": 1},  # one data cache, then "no more caches"
    (0x4, 1): {},
    (0x5, 0): {},
    (0xA, 0): {"eax": 8 << 24},  # the EBX event vector is 8 bits long
    (0xB, 0): {"ecx": 1 << 8},  # one SMT level, then an invalid level
    (0xB, 1): {},
    (0xF, 0): {},
    (0xF, 1): {},
    (0x10, 0): {"ebx": 0b1110},  # L3 CAT, L2 CAT, MBA
    (0x10, 1): {},
    (0x10, 2): {},
    (0x10, 3): {},
    (0x15, 0): {},
    (0x16, 0): {},
    (0x18, 0): {},
    (0x1A, 0): {},
    (0x1F, 0): {"ecx": 1 << 8},  # one SMT level, then an invalid level
    (0x1F, 1): {},
}
_FRAME_AMD: dict[tuple[int, int], dict[str, int]] = {
    (0x1, 0): {"eax": 0x00A10F11},  # a Zen 4 signature
    (0x80000001, 0): {"eax": 0x00A10F11, "ecx": 1 << 2 | 1 << 10 | 1 << 15 | 1 << 22},  # SVM, IBS, LWP, TOPOEXT
    (0x80000005, 0): {},
    (0x80000006, 0): {},
    (0x8000000A, 0): {},
    (0x80000019, 0): {},
    (0x8000001A, 0): {},
    (0x8000001B, 0): {},
    (0x8000001C, 0): {},
    (0x8000001D, 0): {"eax": 1},  # one data cache, then the end
    (0x8000001D, 1): {},
    (0x8000001E, 0): {},
    (0x80000020, 0): {"ebx": 0b1110},  # L3 bandwidth, slow-memory bandwidth, event configuration
    (0x80000020, 1): {},
    (0x80000020, 2): {},
    (0x80000020, 3): {},
    (0x80000022, 0): {},
    (0x80000023, 0): {},
    (0x80000026, 0): {"ecx": 1 << 8},  # one core level, then an invalid level
    (0x80000026, 1): {},
}


def _frame_table(vendor: str, changes: dict[tuple[int, int, str], tuple[int, int, int]] | None = None) -> CpuidTable:
    """The probe frame of ``vendor`` with ``changes``: (leaf, subleaf, register) -> (hi, lo, value)."""
    frame = _FRAME_INTEL if vendor == INTEL else _FRAME_AMD
    regs = {(0, 0): {"eax": 0x1F, **_vendor_regs(vendor)}}
    if vendor == AMD:
        regs[(0x80000000, 0)] = {"eax": 0x80000026, **_vendor_regs(vendor)}
    regs.update({k: dict(v) for k, v in frame.items()})
    for (leaf, sub, reg), (hi, lo, value) in (changes or {}).items():
        r = regs[(leaf, sub)]
        r[reg] = insert_bits(r.get(reg, 0), hi, lo, value)
    multi = {leaf for leaf, sub in regs if sub}
    entries = [
        CpuidEntry(leaf, sub, FLAG_SIGNIFICANT_INDEX if leaf in multi else 0, **r) for (leaf, sub), r in regs.items()
    ]
    return CpuidTable(entries, source=f"probe frame {vendor}")


def _probe_subleaf(v: ValueLine) -> int:
    f = catalog().resolve(v.name)
    return f.sub_lo if v.subleaf is None else v.subleaf


def _frame_value(v: ValueLine) -> int:
    f = catalog().resolve(v.name)
    e = _frame_table(v.vendor).get(f.leaf, _probe_subleaf(v))
    assert e is not None, f"{v.key}: the probe frame lacks leaf {f.leaf:#x}.{_probe_subleaf(v)}"
    return (e.reg(f.register) >> f.lo) & ((1 << f.width) - 1)


def _probe_value(v: ValueLine) -> int:
    """A value unlike the frame's that exposes a shifted or narrowed field: top and bottom bits set (or the bit)."""
    f = catalog().resolve(v.name)
    if v.label.startswith("bit"):
        return 1 << int(v.label[3:])
    value = 1 if f.width == 1 else (1 << (f.width - 1)) | 1
    return value if value != _frame_value(v) else 0


def _tool_expect(v: ValueLine):
    return TOOL_WRONG[v.name][0] if v.name in TOOL_WRONG else v.expect


@dataclass
class ValueProbe:
    line: ValueLine
    value: int
    baseline: ToolCpu
    result: ToolCpu


@pytest.fixture(scope="module")
def value_probes(tmp_path_factory) -> list[ValueProbe]:
    """For each vendor, one `cpuid -f` run: CPU 0 is the frame, CPU n the frame with line n's field changed."""
    out = tmp_path_factory.mktemp("value-probes")
    probes = []
    for vendor in (INTEL, AMD):
        lines = [v for v in VALUE_LINES if v.vendor == vendor]
        tables = [_frame_table(vendor)]
        for v in lines:
            f = catalog().resolve(v.name)
            tables.append(
                _frame_table(vendor, {(f.leaf, _probe_subleaf(v), f.register): (f.hi, f.lo, _probe_value(v))})
            )
        text = "".join(_as_cpu(dumps(t, "cpuid-raw"), i) for i, t in enumerate(tables))
        cpus = run_tool(text, out / f"values-{vendor}.raw")
        assert [c.number for c in cpus] == list(range(len(tables))), "the tool skipped or reordered CPU blocks"
        probes += [ValueProbe(v, _probe_value(v), cpus[0], c) for v, c in zip(lines, cpus[1:])]
    return probes


def test_value_lines_name_catalog_fields_of_the_extended_set():
    keys = [v.key for v in VALUE_LINES]
    assert len(keys) == len(set(keys)), "a field's lines need labels to be told apart"
    leaves = set()
    for v in VALUE_LINES:
        f = catalog().resolve(v.name)  # LookupFailed if the catalog lacks the name
        leaves.add(f.leaf)
        assert f.leaf not in (0x1, 0x7, 0x80000001), f"{v.key}: flag leaves are TOOL_LINES' job"
        if v.block or v.subleaf is not None:
            assert f.sub_lo != f.sub_hi, f"{v.key}: block/subleaf given for a field of one subleaf ({f})"
    assert set(TOOL_WRONG) <= {v.name for v in VALUE_LINES}
    # the leaves issue 15 asks for: caches, topology, PMU, TSC/frequency, MONITOR, RDT, SVM
    wanted = {
        0x4,
        0x5,
        0xA,
        0xB,
        0xF,
        0x10,
        0x15,
        0x16,
        0x1F,
        0x80000005,
        0x80000006,
        0x8000000A,
        0x8000001D,
        0x8000001E,
        0x80000026,
    }
    assert wanted <= leaves, sorted(hex(x) for x in wanted - leaves)


@pytest.mark.cpuid_tool
def test_value_lines_match_the_tool_bit_for_bit(value_probes: list[ValueProbe]):
    """Changing only the mapped field's bits changes the mapped line to what the field means, and no other
    mapped line of the same register."""
    problems = []
    for p in value_probes:
        v, f = p.line, catalog().resolve(p.line.name)
        sub = _probe_subleaf(v)
        expect = _tool_expect(v)
        got, base = v.line(p.result, sub), v.line(p.baseline, sub)
        if got is None or base is None:
            problems.append(f"{p.line.vendor} {v.key} ({f}): no tool line {v.desc!r} (probe {got!r}, frame {base!r})")
            continue
        if v.parse(got) != expect(p.value):
            problems.append(f"{v.key} ({f}) = {p.value:#x}: tool says {got!r}, expected {expect(p.value)!r}")
        if v.parse(base) != expect(_frame_value(v)):
            problems.append(f"{v.key} ({f}) frame {_frame_value(v):#x}: tool says {base!r}")
        for o in VALUE_LINES:
            of = catalog().resolve(o.name)
            if o is v or o.vendor != v.vendor or (of.leaf, of.register) != (f.leaf, f.register):
                continue
            if not of.sub_lo <= sub <= of.sub_hi or (o.subleaf is not None and o.subleaf != sub):
                continue
            before, after = o.line(p.baseline, sub), o.line(p.result, sub)
            if before != after:
                problems.append(f"{v.key} ({f}) = {p.value:#x} also changed {o.key}'s line: {before!r} -> {after!r}")
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems)


@pytest.mark.cpuid_tool
def test_tool_wrong_allowances_are_needed(value_probes: list[ValueProbe]):
    """Each TOOL_WRONG entry really differs from the field's meaning in the tool's output (no stale excuses)."""
    for p in value_probes:
        if p.line.name in TOOL_WRONG:
            got = p.line.parse(p.line.line(p.result, _probe_subleaf(p.line)))
            assert got != p.line.expect(p.value), f"{p.line.key}: the tool now prints the meaning; drop the allowance"


# -- the extended set on every dump ------------------------------------------------------------------
@dataclass
class ExtendedRun:
    dump: str
    table: CpuidTable
    tool: ToolCpu


@pytest.fixture(scope="module")
def extended_runs(tmp_path_factory) -> list[ExtendedRun]:
    """`cpuid -f` once for every real dump (libvirt, Firecracker, libcpuid, the recorded live host)."""
    out = tmp_path_factory.mktemp("extended")
    runs = []
    for path in all_dumps():
        table = load(path)
        cpus = run_tool(dumps(table, "cpuid-raw"), out / f"{path.stem}.raw")
        assert len(cpus) == 1, f"{path.name}: expected one CPU block, got {len(cpus)}"
        runs.append(ExtendedRun(f"{path.parent.name}/{path.name}", table, cpus[0]))
    return runs


@dataclass
class Comparison:
    dump: str
    key: str  # ValueLine.key, or "brand" / "vendor"
    leaf: int
    subleaf: int
    ours: object
    tool: object
    allowance: str = ""  # the TOOL_WRONG reason when the tool's known transform was checked instead

    @property
    def agrees(self) -> bool:
        return self.ours == self.tool


def compare_extended(runs: list[ExtendedRun]) -> tuple[list[Comparison], dict[str, int]]:
    """Every (dump, mapped line, subleaf) both sides decode, and the counts of what was not compared and why."""
    by_name: dict[str, list[ValueLine]] = {}
    for v in VALUE_LINES:
        by_name.setdefault(v.name, []).append(v)
    out: list[Comparison] = []
    skipped = {"tool prints no line": 0, "KVM's lookup answers this subleaf with another entry": 0}
    skipped["leaf 0xA EBX bit beyond the event vector length EAX[31:24]"] = 0
    cat = catalog()
    for run in runs:
        for f, sub, value in cat.values(run.table):
            for v in by_name.get(f.name, ()):
                if v.subleaf is not None and v.subleaf != sub:
                    continue
                why_not = v.meaningless(run.table, f) if v.meaningless else None
                if why_not:
                    skipped[why_not] += 1
                    continue
                e = run.table.get(f.leaf, sub)
                if e is not None and e.index != sub:
                    # an unflagged entry of another subleaf answers (as KVM would); the tool reads the recorded one
                    skipped["KVM's lookup answers this subleaf with another entry"] += 1
                    continue
                text = v.line(run.tool, sub)
                if text is None:
                    skipped["tool prints no line"] += 1
                    continue
                expect, why = (TOOL_WRONG[v.name][0], TOOL_WRONG[v.name][1]) if v.name in TOOL_WRONG else (v.expect, "")
                try:
                    tool = v.parse(text)
                except ValueError:
                    tool = text  # an unreadable line counts as a disagreement, shown as printed
                out.append(Comparison(run.dump, v.key, f.leaf, sub, expect(value), tool, why))
        strings = cat.strings(run.table)
        for key, tool_key in (("brand", "brand"), ("vendor", "vendor_id")):
            if key not in strings:
                continue
            if key == "vendor":
                tool_text = run.tool.vendor
            else:
                tool_text = run.tool.values.get(((), None), {}).get(tool_key)
            if tool_text is None:
                skipped["tool prints no line"] += 1
                continue
            if tool_text.startswith('"') and tool_text.endswith('"'):
                tool_text = tool_text[1:-1]
            leaf = 0x80000002 if key == "brand" else 0
            out.append(Comparison(run.dump, key, leaf, 0, strings[key], tool_text))
    return out, skipped


def extended_summary(comparisons: list[Comparison], skipped: dict[str, int], dumps_count: int) -> str:
    """The golden figures of docs/catalog.md (Markdown): comparisons per leaf, and what was not compared."""
    by_leaf: dict[int, list[Comparison]] = {}
    for c in comparisons:
        by_leaf.setdefault(c.leaf, []).append(c)
    lines = [
        "| leaf | tool lines mapped | comparisons | disagreements | of them under a written allowance |",
        "|---|---:|---:|---:|---:|",
    ]
    for leaf in sorted(by_leaf):
        cs = by_leaf[leaf]
        lines.append(
            f"| {leaf:#x} | {len({c.key for c in cs})} | {len(cs)} | {sum(not c.agrees for c in cs)} | "
            f"{sum(bool(c.allowance) for c in cs)} |"
        )
    bad = sum(not c.agrees for c in comparisons)
    lines.append(
        f"| **all ({dumps_count} dumps)** | {len({c.key for c in comparisons})} | {len(comparisons)} | {bad} | "
        f"{sum(bool(c.allowance) for c in comparisons)} |"
    )
    lines.append("")
    lines += [f"- not compared, {why}: {n}" for why, n in skipped.items()]
    return "\n".join(lines)


@pytest.mark.cpuid_tool
def test_extended_set_agrees_with_the_tool(extended_runs: list[ExtendedRun]):
    assert len(extended_runs) == len(all_dumps()) >= 49
    comparisons, skipped = compare_extended(extended_runs)
    bad = [c for c in comparisons if not c.agrees]
    assert not bad, f"{len(bad)} disagreement(s) in {len(comparisons)} comparisons:\n" + "\n".join(
        f"{c.dump}: {c.key} ({c.leaf:#x}.{c.subleaf}): ours {c.ours!r}, tool {c.tool!r}" for c in bad[:60]
    )
    keys = {c.key for c in comparisons}
    never = sorted(v.key for v in VALUE_LINES if v.key not in keys)
    # every mapped line is compared on some dump (a line the tool never prints would hide a wrong mapping)
    assert len(never) <= 0.1 * len(VALUE_LINES), f"mapped lines no dump compares: {never}"
    assert {"brand", "vendor"} <= keys
    assert len(comparisons) >= 10_000, len(comparisons)
    summary = extended_summary(comparisons, skipped, len(extended_runs))
    print(f"\nextended set, lines never compared: {never}\n{summary}")
    doc = (ROOT / "docs" / "catalog.md").read_text()
    assert summary in doc, "docs/catalog.md's golden figures are out of date; they should read:\n" + summary
