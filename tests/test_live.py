"""The live /dev/kvm backend (cpuidkit.live).

Struct sizes, ioctl numbers and the error path for a missing device need no
KVM; everything marked ``kvm`` drives real VMs.  Expected values come from
what the kernel itself reports (KVM_GET_SUPPORTED_CPUID, KVM_GET_CPUID2,
KVM_CHECK_EXTENSION, arch_prctl), never from one host's registers.
Checks that depend on per-process state (XSAVE permissions are granted once
per process and locked by the first vCPU) run in a fresh interpreter.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cpuidkit.errors import KvmError, KvmUnavailable
from cpuidkit.live import _abi
from cpuidkit.core.table import CpuidEntry

ROOT = Path(__file__).resolve().parent.parent
X86_64 = os.uname().machine == "x86_64"

kvm = pytest.mark.kvm


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def _child(code: str) -> dict:
    """Run ``code`` in a fresh interpreter (with this checkout importable); it prints one JSON object."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- ABI: no KVM needed ------------------------------------------------------------

@pytest.mark.parametrize(
    "struct, size",
    [
        ("kvm_cpuid_entry2", 40),
        ("kvm_cpuid2", 8),
        ("kvm_segment", 24),
        ("kvm_dtable", 16),
        ("kvm_sregs", 312),
        ("kvm_regs", 144),
        ("kvm_xcr", 16),
        ("kvm_xcrs", 392),
        ("kvm_msr_entry", 16),
        ("kvm_msrs", 8),
        ("kvm_enable_cap", 104),
        ("kvm_userspace_memory_region", 32),
        ("kvm_device_attr", 24),
    ],
)
def test_struct_sizes_match_the_kernel(struct, size):
    assert ctypes.sizeof(getattr(_abi, struct)) == size


def test_struct_offsets():
    assert _abi.kvm_run.exit_reason.offset == 8
    assert _abi.kvm_run.exit.offset == 32
    assert _abi.kvm_sregs.cr0.offset == 224
    assert _abi.kvm_sregs.cr4.offset == 248
    assert _abi.kvm_sregs.apic_base.offset == 272
    assert _abi.kvm_sregs.interrupt_bitmap.offset == 280
    assert _abi.kvm_regs.rip.offset == 128
    assert _abi.kvm_xcrs.xcrs.offset == 8
    assert ctypes.sizeof(_abi.cpuid2_buffer(256)) == 8 + 256 * 40


@pytest.mark.parametrize(
    "name, value",
    [
        ("KVM_GET_API_VERSION", 0xAE00),
        ("KVM_CREATE_VM", 0xAE01),
        ("KVM_CHECK_EXTENSION", 0xAE03),
        ("KVM_GET_VCPU_MMAP_SIZE", 0xAE04),
        ("KVM_GET_SUPPORTED_CPUID", 0xC008AE05),
        ("KVM_CREATE_VCPU", 0xAE41),
        ("KVM_SET_USER_MEMORY_REGION", 0x4020AE46),
        ("KVM_RUN", 0xAE80),
        ("KVM_GET_REGS", 0x8090AE81),
        ("KVM_SET_REGS", 0x4090AE82),
        ("KVM_GET_SREGS", 0x8138AE83),
        ("KVM_SET_SREGS", 0x4138AE84),
        ("KVM_GET_MSRS", 0xC008AE88),
        ("KVM_SET_MSRS", 0x4008AE89),
        ("KVM_SET_CPUID2", 0x4008AE90),
        ("KVM_GET_CPUID2", 0xC008AE91),
        ("KVM_ENABLE_CAP", 0x4068AEA3),
        ("KVM_GET_XCRS", 0x8188AEA6),
        ("KVM_SET_XCRS", 0x4188AEA7),
        ("KVM_GET_DEVICE_ATTR", 0x4018AEE2),
    ],
)
def test_ioctl_numbers(name, value):
    assert getattr(_abi, name) == value
    assert _abi.IOCTL_NAMES[value] == name


def test_import_is_cheap():
    out = _child(
        """
        import json, os, sys
        import cpuidkit.live
        fds = []
        for f in os.listdir("/proc/self/fd"):
            try:
                fds.append(os.readlink(f"/proc/self/fd/{f}"))
            except OSError:  # the directory listing's own fd
                pass
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("numpy", "pandas", "matplotlib", "ipywidgets"))
        print(json.dumps({"kvm_fds": [f for f in fds if "kvm" in f], "heavy": heavy}))
        """
    )
    assert out == {"kvm_fds": [], "heavy": []}


def test_missing_device_raises_kvm_unavailable(tmp_path):
    from cpuidkit.live import LiveVcpu, kvm_available

    bogus = str(tmp_path / "no-such-kvm")
    before = _fd_count()
    with pytest.raises(KvmUnavailable) as info:
        LiveVcpu(device=bogus)
    err = info.value
    assert err.errno_name == "ENOENT"
    assert bogus in str(err) and "does not exist" in str(err)
    assert isinstance(err, KvmError) and isinstance(err, OSError)
    assert _fd_count() == before
    ok, reason = kvm_available(bogus)
    assert not ok and "ENOENT" in reason


def test_non_kvm_device_raises_kvm_unavailable():
    from cpuidkit.live import LiveVcpu

    before = _fd_count()
    with pytest.raises(KvmUnavailable) as info:
        LiveVcpu(device=os.devnull)
    assert "not a KVM device" in str(info.value)
    assert _fd_count() == before  # the fd opened for the probe was closed


# -- host CPUID: needs an x86-64 CPU, not KVM ------------------------------------------

@pytest.mark.skipif(not X86_64, reason="the CPUID instruction needs an x86-64 host")
def test_host_cpuid_vendor_matches_proc_cpuinfo():
    from cpuidkit.live import host_cpuid

    eax, ebx, ecx, edx = host_cpuid(0)
    vendor = b"".join(r.to_bytes(4, "little") for r in (ebx, edx, ecx)).decode("latin-1")
    cpuinfo = Path("/proc/cpuinfo").read_text()
    m = re.search(r"^vendor_id\s*:\s*(\S+)", cpuinfo, re.M)
    assert m and m.group(1) == vendor
    assert eax >= 1
    # family/model/stepping of leaf 1 agree with the kernel's view
    family = (host_cpuid(1)[0] >> 8) & 0xF
    ext = (host_cpuid(1)[0] >> 20) & 0xFF
    fam = re.search(r"^cpu family\s*:\s*(\d+)", cpuinfo, re.M)
    assert fam and int(fam.group(1)) == (family + ext if family == 0xF else family)


@pytest.mark.skipif(not X86_64, reason="the CPUID instruction needs an x86-64 host")
def test_host_cpuid_table_shape():
    from cpuidkit.core.indexed import function_is_indexed
    from cpuidkit.live import host_cpuid, host_cpuid_table

    t = host_cpuid_table()
    max_basic = host_cpuid(0)[0]
    assert t.max_basic_leaf == max_basic
    assert [f for f in t.functions() if f < 0x4000_0000] == list(range(max_basic + 1))
    for e in t:
        assert e.significant_index == function_is_indexed(e.function), e
        if not e.significant_index:
            assert e.index == 0
    keys = [e.key() for e in t]
    assert len(keys) == len(set(keys))
    if t.get(0xD, 0) is not None:
        assert t.get(0xD, 1) is not None
    max_ext = host_cpuid(0x8000_0000)[0]
    if 0x8000_0000 <= max_ext <= 0x8000_00FF:
        assert t.max_extended_leaf == max_ext
        assert t.get(max_ext) is not None


@pytest.mark.cpuid_tool
@pytest.mark.skipif(not X86_64, reason="the CPUID instruction needs an x86-64 host")
def test_host_cpuid_table_matches_cpuid_tool():
    """Every entry we read equals `cpuid -r -1` on the same CPU (both pinned to it)."""
    from cpuidkit.live import host_cpuid_table

    cpu = min(os.sched_getaffinity(0))
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        table = host_cpuid_table()
        out = subprocess.run([shutil.which("cpuid"), "-r", "-1"], capture_output=True, text=True, check=True).stdout
    finally:
        os.sched_setaffinity(0, old)
    ref = {}
    for m in re.finditer(r"0x([0-9a-f]{8}) 0x([0-9a-f]{2}): eax=0x(\w+) ebx=0x(\w+) ecx=0x(\w+) edx=0x(\w+)", out):
        v = [int(x, 16) for x in m.groups()]
        ref[(v[0], v[1])] = tuple(v[2:])
    assert ref, out
    for e in table:
        assert (e.function, e.index) in ref, f"{e} not listed by cpuid -r"
        assert (e.eax, e.ebx, e.ecx, e.edx) == ref[(e.function, e.index)], e


# -- live KVM ------------------------------------------------------------------------

@pytest.fixture
def vcpu():
    from cpuidkit.live import LiveVcpu

    with LiveVcpu() as v:
        yield v


@pytest.fixture(scope="module")
def supported():
    from cpuidkit.live import supported_cpuid

    return supported_cpuid()


def _new():
    from cpuidkit.live import LiveVcpu

    return LiveVcpu()


@kvm
def test_identity_and_protocol(vcpu):
    from cpuidkit.kvm.interface import Vcpu
    from cpuidkit.live import vendor_module

    assert isinstance(vcpu, Vcpu)
    release = os.uname().release
    assert release.startswith(vcpu.kernel + ".") or release.startswith(vcpu.kernel + "-") or release == vcpu.kernel
    assert re.fullmatch(r"\d+\.\d+", vcpu.kernel)
    module = vendor_module()
    assert module and os.path.isdir(f"/sys/module/{module}")
    assert vcpu.vendor == {"kvm_intel": "vmx", "kvm_amd": "svm", "kvm_pvm": "pvm"}[module]
    assert vcpu.vendor_note
    assert not vcpu.has_vcpu  # the vCPU is created lazily


@kvm
def test_module_helpers(vcpu, supported):
    from cpuidkit.live import kvm_available, kvm_capabilities, xfeature_permissions

    ok, reason = kvm_available()
    assert ok, reason
    assert vcpu.supported_cpuid() == supported
    assert 0 < len(supported) <= 256
    caps = kvm_capabilities()
    assert caps["KVM_CAP_MAX_VCPUS"] >= caps["KVM_CAP_NR_VCPUS"] >= 1
    assert caps["KVM_CAP_DISABLE_QUIRKS2"] == vcpu.check_extension(_abi.KVM_CAP_DISABLE_QUIRKS2)
    perms = xfeature_permissions()
    assert perms["supported"] is not None and perms["supported"] & 0x3 == 0x3
    assert perms["guest"] & ~perms["supported"] == 0
    if perms["kvm_guest_supp"] is not None:
        # KVM only offers guests what the host kernel manages
        assert perms["kvm_guest_supp"] & ~perms["supported"] == 0
        d0 = supported.get(0xD, 0)
        assert (d0.edx << 32 | d0.eax) & ~perms["kvm_guest_supp"] == 0


@kvm
def test_set_get_round_trip(vcpu, supported):
    """Setting the supported table works; what KVM gives back is a fixed point.

    Leaves KVM keeps (every leaf except the ones KVM or the vendor module
    computes: 1, 7, 0xD and KVM's 0x40000001) come back exactly as set.
    """
    assert len(vcpu.get_cpuid()) == 0  # a new vCPU holds no CPUID
    vcpu.set_cpuid(supported)
    got = vcpu.get_cpuid()
    assert got.source == "KVM_GET_CPUID2"
    assert 0 < len(got) <= 256
    extra = {e.key() for e in got} - {e.key() for e in supported}
    assert all(f == 0xD for f, _ in extra), extra  # only xstate subleaves may be added
    for e in got:
        if e.function not in (0x1, 0x7, 0xD, 0x4000_0001):
            assert supported.get(e.function, e.index) == e
    vcpu.set_cpuid(got)
    assert vcpu.get_cpuid() == got


@kvm
def test_more_than_256_entries_is_e2big(supported):
    filler = [CpuidEntry(0x4FFF_0000 + i, 0, 0, i, i, i, i) for i in range(256 - len(supported))]
    full = supported.appended(*filler)
    assert len(full) == 256
    with _new() as v:
        v.set_cpuid(full)
        got = v.get_cpuid()
        assert len(got) <= 256
        for e in filler:
            assert got.get(e.function) == e
    too_many = full.appended(CpuidEntry(0x4FFF_1000))
    with _new() as v:
        v.set_cpuid(supported)
        before = v.get_cpuid()
        with pytest.raises(KvmError) as info:
            v.set_cpuid(too_many)
        assert info.value.errno_name == "E2BIG"
        assert info.value.operation == "KVM_SET_CPUID2"
        assert "256" in info.value.explanation
        assert v.get_cpuid() == before  # the earlier table is still in place, exactly


@kvm
@pytest.mark.parametrize("width, accepted", [(0, True), (48, True), (57, True), (50, False), (39, False)])
def test_linear_address_width(supported, width, accepted):
    t = supported.set_field("0x80000008.eax[15:8]", width)
    with _new() as v:
        if accepted:
            v.set_cpuid(t)
            assert v.get_cpuid().get_field("0x80000008.eax[15:8]") == width
        else:
            with pytest.raises(KvmError) as info:
                v.set_cpuid(t)
            assert info.value.errno_name == "EINVAL"
            assert f"is {width}" in info.value.explanation
            assert len(v.get_cpuid()) == 0


@kvm
def test_tiledata_without_permission_is_eperm():
    out = _child(
        """
        import json
        from cpuidkit.live import LiveVcpu, xfeature_permissions
        from cpuidkit.errors import KvmError
        res = {"guest_perm": xfeature_permissions(None)["guest"]}
        with LiveVcpu() as v:
            s = v.supported_cpuid()
            d0 = s.get(0xD, 0)
            for bits in (1 << 18, 1 << 17, 3 << 17):
                t = s.with_entry(d0.replace(eax=d0.eax | bits))
                with LiveVcpu() as w:
                    try:
                        w.set_cpuid(t)
                        res[hex(bits)] = "OK"
                    except KvmError as e:
                        res[hex(bits)] = [e.errno_name, e.explanation]
        print(json.dumps(res))
        """
    )
    assert not out["guest_perm"] >> 18 & 1  # a fresh process has no TILEDATA permission
    assert out["0x40000"][0] == "EPERM" and "ARCH_REQ_XCOMP_GUEST_PERM" in out["0x40000"][1]
    assert out["0x60000"][0] == "EPERM"
    assert out["0x20000"] == "OK"  # TILECFG alone is not a dynamic feature


@kvm
def test_grant_xfeature_permission():
    out = _child(
        """
        import json
        from cpuidkit.live import LiveVcpu, xfeature_permissions
        from cpuidkit.errors import KvmError
        res = {"supported": xfeature_permissions(None)["supported"]}
        def attempt(v, mask):
            try:
                v.grant_xfeature_permission(mask)
                return "OK"
            except KvmError as e:
                return e.errno_name
        with LiveVcpu() as v:
            res["static"] = attempt(v, 1 << 2)          # AVX is not permission-gated
            res["tiledata"] = attempt(v, 1 << 18)       # before any vCPU exists
            res["guest_perm"] = xfeature_permissions(None)["guest"]
            s = v.supported_cpuid()
            d0 = s.get(0xD, 0)
            try:
                v.set_cpuid(s.with_entry(d0.replace(eax=d0.eax | 1 << 18)))
                res["set"] = "OK"
            except KvmError as e:
                res["set"] = e.errno_name
            res["after_vcpu"] = attempt(v, 1 << 18)
        print(json.dumps(res))
        """
    )
    assert out["static"] == "EOPNOTSUPP"
    if out["supported"] >> 18 & 1:
        assert out["tiledata"] == "OK"
        assert out["guest_perm"] >> 18 & 1
        assert out["set"] == "OK"
        assert out["after_vcpu"] == "OK"  # already granted: nothing to change, no error
    else:
        assert out["tiledata"] == "EOPNOTSUPP"
        assert out["set"] == "EPERM"
        assert out["after_vcpu"] == "EBUSY"


@kvm
def test_grant_after_vcpu_is_ebusy():
    out = _child(
        """
        import json
        from cpuidkit.live import LiveVcpu, xfeature_permissions
        from cpuidkit.errors import KvmError
        with LiveVcpu() as v:
            v.get_cpuid()   # creates the vCPU: permissions are now locked
            try:
                v.grant_xfeature_permission(1 << 18)
                r = "OK"
            except KvmError as e:
                r = e.errno_name
        print(json.dumps({"r": r, "supported": xfeature_permissions(None)["supported"]}))
        """
    )
    assert out["r"] == ("EBUSY" if out["supported"] >> 18 & 1 else "EOPNOTSUPP")


@kvm
def test_after_run_only_the_current_table_is_accepted(vcpu, supported):
    vcpu.set_cpuid(supported)
    vcpu.set_cpuid(supported)  # before KVM_RUN the same table can be set again
    vcpu.run()
    assert vcpu.has_run
    current = vcpu.get_cpuid()
    vcpu.set_cpuid(current)  # the readback is accepted
    assert vcpu.get_cpuid() == current

    leaf6 = current.get(6)
    changed = current.with_entry(leaf6.replace(eax=leaf6.eax ^ 1)) if leaf6 else current[:-1]
    with pytest.raises(KvmError) as info:
        vcpu.set_cpuid(changed)
    assert info.value.errno_name == "EINVAL"
    assert "already run" in info.value.explanation
    assert vcpu.get_cpuid() == current  # unchanged by the refused call

    if current != supported:  # the vendor module rewrote something: the original is refused too
        with pytest.raises(KvmError) as info:
            vcpu.set_cpuid(supported)
        assert info.value.errno_name == "EINVAL"
        assert vcpu.get_cpuid() == current


@kvm
def test_cr4_osxsave_follows_into_cpuid(vcpu, supported):
    from cpuidkit.kvm.interface import CR4_OSXSAVE

    vcpu.set_cpuid(supported)
    cr4 = vcpu.get_sregs_cr4()
    vcpu.set_cr4(cr4 | CR4_OSXSAVE)
    assert vcpu.get_sregs_cr4() & CR4_OSXSAVE
    assert vcpu.get_cpuid().get_field("1.ecx[27]") == 1
    vcpu.set_cr4(cr4 & ~CR4_OSXSAVE)
    assert not vcpu.get_sregs_cr4() & CR4_OSXSAVE
    assert vcpu.get_cpuid().get_field("1.ecx[27]") == 0


@kvm
def test_xcr0_sets_xsave_size(vcpu, supported):
    vcpu.set_cpuid(supported)
    got = vcpu.get_cpuid()
    allowed = got.get(0xD, 0).eax
    assert allowed & 0x3 == 0x3
    vcpu.set_xcr0(0x1)
    assert vcpu.get_xcr0() == 0x1
    legacy = vcpu.get_cpuid().get(0xD, 0).ebx
    assert legacy == 0x240  # legacy area + XSAVE header: architectural
    if allowed & 0x4:  # AVX: the size grows to the end of the YMM component (0xD.2 offset + size)
        vcpu.set_xcr0(0x7)
        assert vcpu.get_xcr0() == 0x7
        ymm = got.get(0xD, 2)
        assert vcpu.get_cpuid().get(0xD, 0).ebx == ymm.ebx + ymm.eax
    with pytest.raises(KvmError) as info:
        vcpu.set_xcr0(0x2)  # x87 missing
    assert info.value.errno_name == "EINVAL"
    assert vcpu.get_xcr0() in (0x1, 0x7)


@kvm
def test_apic_base_enable_follows_into_cpuid(vcpu, supported):
    from cpuidkit.kvm.interface import MSR_IA32_APICBASE

    vcpu.set_cpuid(supported)
    base = vcpu.get_msr(MSR_IA32_APICBASE)
    enable = 1 << 11
    assert base & enable
    vcpu.set_msr(MSR_IA32_APICBASE, base & ~enable)
    assert vcpu.get_msr(MSR_IA32_APICBASE) == base & ~enable
    assert vcpu.get_cpuid().get_field("1.edx[9]") == 0
    vcpu.set_msr(MSR_IA32_APICBASE, base)
    assert vcpu.get_cpuid().get_field("1.edx[9]") == 1


@kvm
def test_unknown_msr_is_an_error(vcpu):
    with pytest.raises(KvmError) as info:
        vcpu.get_msr(0xDEAD_BEEF)
    assert info.value.operation == "KVM_GET_MSRS"


@kvm
def test_run_halts_and_can_rerun(vcpu, supported):
    vcpu.set_cpuid(supported)
    assert vcpu.run() is None
    assert vcpu.get_regs().rip == 0x1001  # just after the hlt at 0x1000
    vcpu.run()
    assert vcpu.get_regs().rip == 0x1001


@kvm
def test_run_without_cpuid(vcpu):
    vcpu.run()
    assert vcpu.get_regs().rip == 0x1001


@kvm
def test_run_is_bounded(vcpu, supported):
    vcpu.set_cpuid(supported)
    handler_before = signal.getsignal(signal.SIGALRM)
    timer_before = signal.getitimer(signal.ITIMER_REAL)  # pytest-timeout may have one running
    started = time.monotonic()
    with pytest.raises(KvmError) as info:
        vcpu.run(timeout=0.2, code=b"\xeb\xfe")  # jmp $
    elapsed = time.monotonic() - started
    assert 0.2 <= elapsed < 5
    assert info.value.errno_name == "ETIMEDOUT"
    assert "did not halt" in info.value.explanation
    # the SIGALRM handler and any timer that was running are given back
    assert signal.getsignal(signal.SIGALRM) == handler_before
    timer_after = signal.getitimer(signal.ITIMER_REAL)
    if timer_before[0] == 0:
        assert timer_after == (0.0, 0.0)
    else:
        assert abs(timer_after[0] - (timer_before[0] - elapsed)) < 0.1
    vcpu.run()  # the vCPU is still usable
    assert vcpu.get_regs().rip == 0x1001


@kvm
def test_other_exit_is_named(vcpu):
    with pytest.raises(KvmError) as info:
        vcpu.run(code=bytes.fromhex("b042 e610 f4"))  # mov al,0x42; out 0x10,al; hlt
    assert "KVM_EXIT_IO" in str(info.value) and "port 0x10" in str(info.value)


@kvm
def test_disable_hlt_exits_only_before_the_vcpu():
    with _new() as v:
        if not v.check_extension(_abi.KVM_CAP_X86_DISABLE_EXITS) & _abi.KVM_X86_DISABLE_EXITS_HLT:
            pytest.skip("this kernel cannot disable HLT exits")
        v.disable_hlt_exits()
    with _new() as v:
        v.get_cpuid()
        with pytest.raises(KvmError) as info:
            v.disable_hlt_exits()
        assert info.value.errno_name == "EINVAL"
        assert info.value.operation == "KVM_ENABLE_CAP"
        assert "before" in info.value.explanation


@kvm
def test_disable_quirk_follows_the_supported_mask(vcpu):
    from cpuidkit.errors import InputError
    from cpuidkit.kvm.interface import QUIRKS

    mask = vcpu.check_extension(_abi.KVM_CAP_DISABLE_QUIRKS2)
    for name, bit in QUIRKS.items():
        if mask & bit:
            vcpu.disable_quirk(name)
        else:
            with pytest.raises(KvmError) as info:
                vcpu.disable_quirk(name)
            assert info.value.errno_name == "EINVAL"
    with pytest.raises(InputError):
        vcpu.disable_quirk("NO_SUCH_QUIRK")


@kvm
def test_errors_read_as_plain_text(vcpu, supported):
    with pytest.raises(KvmError) as info:
        vcpu.set_cpuid(supported.set_field("0x80000008.eax[15:8]", 50))
    text = str(info.value)
    assert text.startswith("KVM_SET_CPUID2: EINVAL: ")
    assert "ctypes" not in text and "OSError" not in text and "Errno" not in text
    assert info.value.as_dict()["errno"] == "EINVAL"


@kvm
def test_close_is_idempotent_and_final():
    before = _fd_count()
    v = _new()
    v.run()
    assert _fd_count() == before + 3  # /dev/kvm, the VM and the vCPU
    v.close()
    v.close()
    assert v.closed
    assert _fd_count() == before
    with pytest.raises(KvmError) as info:
        v.get_cpuid()
    assert info.value.errno_name == "EBADF"


@kvm
def test_no_fd_leak(supported):
    from cpuidkit.live import LiveVcpu

    with LiveVcpu() as v:  # warm up anything created once per process
        v.set_cpuid(supported)
        v.get_cpuid()
    before = _fd_count()
    for _ in range(200):
        with LiveVcpu() as v:
            v.set_cpuid(supported)
            v.get_cpuid()
    after = _fd_count()
    assert after == before
