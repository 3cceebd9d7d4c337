"""LiveVcpu under load and under refusal: no leaked kernel objects, bounded KVM_RUN, errors a user can act on.

bench/bench_soak.py runs 10,000 create/set/get/close cycles and prints the
figures; here 500 cycles check that no fd or mapping is left behind and RSS
stays flat.  Each kernel errno the issue names is provoked for real where this
process can (ENOENT, EACCES, EBUSY, ENOMEM, E2BIG) and checked through the
mapping function for every operation that documents it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import ROOT
from cpuidkit import CpuidEntry, KvmError, KvmUnavailable

kvm = pytest.mark.kvm


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _child(code: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


# -- the mapping: every errno the issue names, for the operations that document it ---------------

# (operation, errno, words the explanation must contain: what went wrong and what to do)
MAPPING = [
    ("open", "ENOENT", ("does not exist", "load")),
    ("open", "EACCES", ("group", "root")),
    ("KVM_GET_DEVICE_ATTR", "ENOENT", ("does not know", "check")),
    ("KVM_SET_BOOT_CPU_ID", "EBUSY", ("before", "new LiveVcpu")),
    ("ARCH_REQ_XCOMP_GUEST_PERM", "EBUSY", ("locked", "before any vCPU")),
    ("KVM_CREATE_VM", "ENOMEM", ("allocate", "close other VMs")),
    ("KVM_CREATE_VCPU", "ENOMEM", ("allocate", "free memory")),
    ("KVM_SET_CPUID2", "ENOMEM", ("allocate", "free memory")),
    ("mmap(guest memory)", "ENOMEM", ("ulimit -v", "raise the limit")),
    ("KVM_SET_DEVICE_ATTR", "ENOMEM", ("out of memory", "free memory")),
    ("KVM_SET_CPUID2", "E2BIG", ("256", "drop leaves")),
    ("KVM_GET_CPUID2", "E2BIG", ("room", "256")),
    ("KVM_GET_SUPPORTED_CPUID", "E2BIG", ("room", "larger buffer")),
    ("ARCH_REQ_XCOMP_GUEST_PERM", "E2BIG", ("sigaltstack",)),
    ("KVM_SET_MSRS", "E2BIG", ("larger than the kernel allows", "send less")),
    ("KVM_SET_MSRS", "EACCES", ("permission denied", "group")),
]


@pytest.mark.parametrize("operation,name,words", MAPPING, ids=[f"{o}-{n}" for o, n, _ in MAPPING])
def test_each_errno_becomes_an_actionable_kvm_error(operation, name, words):
    import errno

    from cpuidkit.live._explain import kvm_error

    err = kvm_error(getattr(errno, name), operation, "what was being done")
    assert isinstance(err, KvmError) and isinstance(err, OSError)
    assert err.errno == getattr(errno, name) and err.errno_name == name and err.operation == operation
    text = str(err)
    assert text.startswith(f"{operation}: {name}: what was being done: ")
    assert "\n" not in text and "Errno" not in text
    for w in words:
        assert w in err.explanation, (w, err.explanation)
    assert kvm_error(getattr(errno, name), "open", cls=KvmUnavailable).__class__ is KvmUnavailable


# -- the same errors, provoked for real ---------------------------------------------------------


def test_real_enoent_from_a_missing_device(tmp_path):
    from cpuidkit.live import LiveVcpu

    before = _fds()
    with pytest.raises(KvmUnavailable) as info:
        LiveVcpu(device=str(tmp_path / "kvm"))
    assert info.value.errno_name == "ENOENT" and "modprobe" in info.value.explanation
    assert _fds() == before


def test_real_eacces_from_a_device_this_user_may_not_open(tmp_path):
    """As root, a child drops to nobody first (root may open anything); the device is /dev/kvm when
    it is not world-writable, else a root-only file standing in for it."""
    dev = "/dev/kvm"
    if not os.path.exists(dev) or os.stat(dev).st_mode & 0o006 == 0o006:
        dev = str(tmp_path / "kvm")
        with open(dev, "w"):  # scratch: a stand-in device node
            pass
        os.chmod(dev, 0o600)
    if os.geteuid() != 0:  # without root, file permissions already apply to this process
        if dev != "/dev/kvm":
            os.chmod(dev, 0o000)
        from cpuidkit.live import LiveVcpu

        with pytest.raises(KvmUnavailable) as info:
            LiveVcpu(device=dev)
        got = {"errno": info.value.errno_name, "text": str(info.value), "fds_leaked": 0}
    else:
        os.chmod(tmp_path, 0o755)
        got = _child(f"""
            import json, os
            from cpuidkit.live import LiveVcpu
            from cpuidkit import KvmUnavailable
            os.setgroups([]); os.setgid(65534); os.setuid(65534)
            before = len(os.listdir("/proc/self/fd"))
            try:
                LiveVcpu(device={dev!r})
                print(json.dumps({{"errno": None}}))
            except KvmUnavailable as e:
                print(json.dumps({{"errno": e.errno_name, "text": str(e),
                                   "fds_leaked": len(os.listdir("/proc/self/fd")) - before}}))
        """)
    assert got["errno"] == "EACCES", got
    assert f"cannot open {dev}" in got["text"] and "add the user to its group" in got["text"]
    assert got["fds_leaked"] == 0


@kvm
def test_real_ebusy_from_a_vm_setting_after_the_vcpu_exists():
    from cpuidkit.live import LiveVcpu
    from cpuidkit.live._sys import ioctl

    KVM_SET_BOOT_CPU_ID = 0xAE78  # _IO(KVMIO, 0x78): x86 VMs refuse it with EBUSY once a vCPU exists
    with LiveVcpu() as v:
        ioctl(v._vm("KVM_SET_BOOT_CPU_ID"), KVM_SET_BOOT_CPU_ID, 0, operation="KVM_SET_BOOT_CPU_ID")  # fine before
        v.get_cpuid()  # creates the vCPU
        with pytest.raises(KvmError) as info:
            ioctl(v._vm("KVM_SET_BOOT_CPU_ID"), KVM_SET_BOOT_CPU_ID, 0, operation="KVM_SET_BOOT_CPU_ID")
    assert info.value.errno_name == "EBUSY"
    assert "before the VM's first vCPU is created" in info.value.explanation


@kvm
def test_real_enomem_from_an_address_space_limit_leaks_nothing():
    out = _child("""
        import json, os, resource
        from cpuidkit.live import LiveVcpu
        from cpuidkit import KvmError
        def vmsize():
            with open("/proc/self/status") as fh:
                return next(int(l.split()[1]) * 1024 for l in fh if l.startswith("VmSize"))
        fds = len(os.listdir("/proc/self/fd"))
        v = LiveVcpu()
        v.get_cpuid()
        resource.setrlimit(resource.RLIMIT_AS, (vmsize() + 32 * 1024, resource.RLIM_INFINITY))
        try:
            v.run()
            res = {"errno": None}
        except KvmError as e:
            res = {"errno": e.errno_name, "operation": e.operation, "text": e.explanation}
        resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        v.run()  # the same vCPU runs once memory may be mapped again
        v.close()
        res["fds_leaked"] = len(os.listdir("/proc/self/fd")) - fds
        print(json.dumps(res))
    """)
    assert out["errno"] == "ENOMEM", out
    assert out["operation"].startswith("mmap(") and "ulimit -v" in out["text"]
    assert out["fds_leaked"] == 0


@kvm
def test_real_e2big_keeps_the_old_table():
    from cpuidkit.live import LiveVcpu, supported_cpuid

    s = supported_cpuid()
    too_many = s.appended(*(CpuidEntry(0x4FFF_0000 + i) for i in range(257 - len(s))))
    with LiveVcpu() as v:
        v.set_cpuid(s)
        held = v.get_cpuid()
        with pytest.raises(KvmError) as info:
            v.set_cpuid(too_many)
        assert v.get_cpuid() == held
    assert info.value.errno_name == "E2BIG" and "drop leaves" in info.value.explanation


# -- KVM_RUN is bounded -----------------------------------------------------------------------


@kvm
@pytest.mark.parametrize("code", [b"\xeb\xfe", b"\xfa\xf3\x90\xeb\xfc"], ids=["jmp-self", "cli-pause-loop"])
def test_a_guest_that_never_halts_is_stopped(code):
    from cpuidkit.live import LiveVcpu

    with LiveVcpu(run_timeout=0.3) as v:
        started = time.monotonic()
        with pytest.raises(KvmError) as info:
            v.run(code=code)  # the constructor's run_timeout applies
        elapsed = time.monotonic() - started
        assert info.value.errno_name == "ETIMEDOUT" and "did not halt within 0.3 s" in str(info.value)
        assert 0.3 <= elapsed < 5
        v.run()  # and the vCPU is still usable


# -- no growth under load ------------------------------------------------------------------------


@kvm
@pytest.mark.slow
def test_500_cycles_leave_no_fd_mapping_or_memory_behind():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from bench_soak import soak
    finally:
        sys.path.remove(str(ROOT / "bench"))
    r = soak(500, run_every=5, report=lambda *_: None)
    before, after = r["before"], r["after"]
    assert after["fds"] == before["fds"]
    assert after["maps"] <= before["maps"]
    assert after["vm_kib"] - before["vm_kib"] <= 1024
    assert after["rss_kib"] - before["rss_kib"] <= 4096, (before, after)


@kvm
def test_failed_calls_leak_nothing():
    """Every refusal path (bad table, post-run change, bad XCR0/CR4/MSR, timeouts) closes cleanly."""
    from cpuidkit.live import LiveVcpu, supported_cpuid

    s = supported_cpuid()
    with LiveVcpu() as v:  # warm-up
        v.run()
    before = _fds()
    for _ in range(30):
        with LiveVcpu(run_timeout=0.05) as v:
            for call in (lambda: v.set_cpuid(s.set_field("0x80000008.eax[15:8]", 50)),
                         lambda: v.set_xcr0(0x2), lambda: v.get_msr(0xDEAD_BEEF),
                         lambda: v.set_cr4(1 << 63), lambda: v.run(code=b"\xeb\xfe")):
                with pytest.raises(KvmError):
                    call()
        with pytest.raises(KvmUnavailable):
            LiveVcpu(device=os.devnull)
    assert _fds() == before
