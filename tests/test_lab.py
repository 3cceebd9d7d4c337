"""The kernel lab (cpuidkit.lab): Debian's 6.1 and 6.12 kernels with kvm_amd, booted in QEMU.

Tests marked ``lab`` boot real kernels (one boot per kernel for the session, shared
with tests/test_lab_agreement.py through the ``lab`` fixture of tests/conftest.py,
plus five short boots: no QEMU is left behind, failures are clear); the first run
downloads the two kernel packages into the lab cache.  The rest need nothing.
Expected values are what the kernels themselves answer or what the KVM
sources fix (the 256-entry limit, the 0/48/57 address widths), never one
host's registers.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cpuidkit import CpuidEntry, CpuidTable, InputError, KvmError, KvmUnavailable
from cpuidkit.kvm.interface import Vcpu
from cpuidkit.lab import KernelLab, LabError, LabUnavailable, LabVcpu, missing_requirements
from cpuidkit.lab import _protocol as proto
from cpuidkit.lab.initramfs import init_script, is_static_elf
from cpuidkit.lab.kernels import cache_root, compare_versions, module_order, package_pattern, read_modinfo
from cpuidkit.lab.qemu import cpu_model, find_qemu, qemu_command, reap_stale_folders
from conftest import LAB_SERIES

lab_test = pytest.mark.lab
SERIES = LAB_SERIES
CR4_OSXSAVE = 1 << 18


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def _wait_gone(pid: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return True
        time.sleep(0.1)
    return False


# -- no boot needed ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "a, b, expected",
    [
        ("6.1.192-3", "6.1.176-1", 1),
        ("6.12.117-1~deb12u1", "6.12.117-1", -1),  # '~' sorts before everything
        ("6.12.117-1~deb12u1", "6.12.38-1~deb12u1", 1),  # numbers compare as numbers
        ("1:0.1", "9.9", 1),  # the epoch wins
        ("1.0~rc1-1", "1.0-1", -1),
        ("2.0a-1", "2.0-1", 1),
        ("6.1.192-3", "6.1.192-3", 0),
    ],
)
def test_debian_version_order(a, b, expected):
    assert compare_versions(a, b) == expected
    assert compare_versions(b, a) == -expected


def test_package_pattern_picks_the_stock_amd64_images():
    p61, p612 = package_pattern("6.1"), package_pattern("6.12")
    assert p61.match("linux-image-6.1.0-57-amd64")
    assert p612.match("linux-image-6.12.117+deb12-amd64")
    for other in (
        "linux-image-6.1.0-57-rt-amd64",
        "linux-image-6.1.0-57-cloud-amd64",
        "linux-image-6.1.0-57-amd64-dbg",
        "linux-image-6.1.0-57-amd64-unsigned",
        "linux-image-6.12.117+deb12-amd64",
    ):
        assert not p61.match(other), other
    assert not p612.match("linux-image-6.1.0-57-amd64")
    with pytest.raises(ValueError):
        package_pattern("6")


def test_module_order_follows_depends_and_skips_builtins():
    deps = {
        "kvm_amd": ["kvm", "ccp"],
        "kvm": ["irqbypass"],
        "ccp": [],
        "irqbypass": [],
        "9p": ["9pnet", "netfs"],
        "9pnet_virtio": ["9pnet", "virtio_ring"],
        "9pnet": [],
        "netfs": [],
        "virtio_ring": [],
    }
    files = {name: Path(f"{name}.ko") for name in deps}
    order, builtin = module_order(
        ("kvm_amd", "9pnet_virtio", "9p", "virtio_console"), files, {"virtio_console"}, deps.get
    )
    for name, needs in deps.items():
        for dep in needs:
            assert order.index(dep) < order.index(name), (dep, name)
    assert builtin == ["virtio_console"]
    assert len(order) == len(set(order))
    with pytest.raises(LabUnavailable, match="virtio_mmio"):
        module_order(("virtio_mmio",), files, set(), deps.get)
    with pytest.raises(LabUnavailable, match="cycle"):
        module_order(("a",), {"a": Path("a.ko"), "b": Path("b.ko")}, set(), {"a": ["b"], "b": ["a"]}.get)


def _elf_with_modinfo(modinfo: bytes) -> bytes:
    """A minimal ELF64 file with a .modinfo and a .shstrtab section."""
    names = b"\0.modinfo\0.shstrtab\0"
    data_at = 64
    names_at = data_at + len(modinfo)
    headers_at = names_at + len(names)
    head = bytearray(64)
    head[:7] = b"\x7fELF\x02\x01\x01"
    struct.pack_into("<Q", head, 0x28, headers_at)
    struct.pack_into("<HHH", head, 0x3A, 64, 3, 2)

    def section(name: int, offset: int, size: int) -> bytes:
        sh = bytearray(64)
        struct.pack_into("<I", sh, 0, name)
        struct.pack_into("<QQ", sh, 24, offset, size)
        return bytes(sh)

    return (
        bytes(head)
        + modinfo
        + names
        + bytes(64)
        + section(1, data_at, len(modinfo))
        + section(10, names_at, len(names))
    )


def test_read_modinfo_parses_the_section():
    image = _elf_with_modinfo(b"license=GPL\0depends=kvm,ccp\0alias=a\0alias=b\0name=kvm_amd\0")
    info = read_modinfo(image)
    assert info["depends"] == ["kvm,ccp"]
    assert info["alias"] == ["a", "b"]
    assert info["name"] == ["kvm_amd"]
    assert read_modinfo(_elf_with_modinfo(b"depends=\0"))["depends"] == [""]
    with pytest.raises(ValueError):
        read_modinfo(b"not an elf file at all, really not")


def test_cache_root_is_outside_the_repo_and_overridable(monkeypatch, tmp_path):
    monkeypatch.setenv("CPUIDKIT_LAB_CACHE", str(tmp_path / "x"))
    assert cache_root() == tmp_path / "x"
    monkeypatch.delenv("CPUIDKIT_LAB_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "cpuidkit" / "lab"


def test_cpu_model_gets_svm():
    assert cpu_model("EPYC-Rome") == "EPYC-Rome,+svm"
    assert cpu_model("max") == "max,+svm"
    assert cpu_model("EPYC,+svm") == "EPYC,+svm"
    assert cpu_model("qemu64,-svm") == "qemu64,-svm"  # said explicitly: kept


def test_qemu_command_has_no_disk_no_network_and_a_read_only_root(tmp_path):
    cmd = qemu_command(
        "qemu-system-x86_64",
        kernel=tmp_path / "vmlinuz",
        initrd=tmp_path / "initrd",
        append="console=ttyS0",
        cpu="EPYC-Rome",
        memory="512M",
        console=tmp_path / "console.log",
        agent_socket=tmp_path / "a,b.sock",
    )
    text = " ".join(cmd)
    assert "-accel tcg" in text and "-nic none" in text and "-nodefaults" in text and "-smp 1" in text
    assert "readonly=on" in cmd[cmd.index("-virtfs") + 1]
    assert f"path={tmp_path}/a,,b.sock" in text  # commas doubled inside QEMU options
    assert "-hda" not in cmd and "-drive" not in cmd


def test_init_script_loads_modules_in_order():
    script = init_script(["irqbypass", "kvm", "kvm_amd"])
    assert "00-irqbypass 01-kvm 02-kvm_amd" in script
    assert "chroot /host" in script and "poweroff -f" in script


def test_is_static_elf():
    assert not is_static_elf(os.path.realpath(sys.executable))  # CPython is dynamically linked


def test_missing_tools_are_clear_errors(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda *a, **k: None)
    with pytest.raises(LabUnavailable, match="apt-get install qemu-system-x86") as info:
        find_qemu()
    assert isinstance(info.value, KvmUnavailable)
    text = " ".join(missing_requirements())
    for word in ("qemu-system-x86", "cpio", "apt-get", "dpkg-deb"):
        assert word in text


def test_protocol_round_trips_tables_and_errors():
    table = CpuidTable([CpuidEntry(0, 0, 0, 0xD, 1, 2, 3), CpuidEntry(7, 0, 1, 0, 0xFFFFFFFF, 0, 0)], source="x")
    wire = json.loads(proto.dumps(proto.encode_value([table, b"\xf4", {"a": 1}, None])))
    back = proto.decode_value(wire)
    assert back[0] == table and back[1] == b"\xf4" and back[2] == {"a": 1} and back[3] is None
    err = proto.decode_error(proto.encode_error(KvmError("E2BIG", "too many", operation="KVM_SET_CPUID2")))
    assert isinstance(err, KvmError) and err.errno_name == "E2BIG" and err.operation == "KVM_SET_CPUID2"
    unavailable = proto.decode_error(proto.encode_error(KvmUnavailable("ENOENT", "no device", operation="open")))
    assert isinstance(unavailable, KvmUnavailable)
    bad_input = proto.decode_error(proto.encode_error(InputError("bad", where="cr4")))
    assert isinstance(bad_input, InputError) and bad_input.where == "cr4"
    assert proto.decode_error(proto.encode_error(RuntimeError("boom"))) is None


# -- booted kernels ---------------------------------------------------------------------


# ``lab``: one booted KernelLab per kernel, session-scoped in tests/conftest.py (shared with
# tests/test_lab_agreement.py, so each kernel boots once per session)


@pytest.fixture()
def vcpu(lab):
    with lab.vcpu() as v:
        yield v


def _first(lab, n: int) -> CpuidTable:
    supported = lab.supported_cpuid()
    assert len(supported) >= n
    return CpuidTable(supported.entries[:n])


@lab_test
def test_the_guest_runs_the_debian_kernel_with_kvm_amd(lab, vcpu):
    assert lab.kernel_release.startswith(lab.series + ".")
    assert lab.kernel == lab.series == vcpu.kernel
    assert lab.package.startswith(f"linux-image-{lab.series}.") and lab.package_version.startswith(lab.series + ".")
    assert lab.vendor == vcpu.vendor == "svm" and lab.vendor_module == "kvm_amd"
    assert lab.build.modules.index("kvm") < lab.build.modules.index("kvm_amd")
    assert isinstance(vcpu, Vcpu) and isinstance(vcpu, LabVcpu)
    assert lab.package in lab.supported_cpuid().source  # every table names the kernel package


@lab_test
def test_get_cpuid2_returns_exactly_the_entries_set(lab, vcpu):
    """Debian's 6.1 leaves nent unchanged on a successful KVM_GET_CPUID2 (256 in, 256 out); 30 set, 30 read."""
    table = _first(lab, 30)
    vcpu.set_cpuid(table)
    got = vcpu.get_cpuid()
    assert len(got) == 30
    assert [e.key() for e in got] == [e.key() for e in table]
    assert CpuidEntry(0) not in got.entries[1:]


@lab_test
def test_get_cpuid2_before_any_set_is_empty(lab, vcpu):
    assert len(vcpu.get_cpuid()) == 0


@lab_test
def test_linear_address_width_50_is_einval(lab, vcpu):
    table = lab.supported_cpuid()
    e8 = table.get(0x8000_0008)
    with pytest.raises(KvmError) as info:
        vcpu.set_cpuid(table.with_entry(e8.replace(eax=(e8.eax & ~0xFF00) | (50 << 8))))
    assert info.value.errno_name == "EINVAL" and info.value.operation == "KVM_SET_CPUID2"
    assert info.value.kernel_package == lab.label
    for ok in (0, 48):
        vcpu.set_cpuid(table.with_entry(e8.replace(eax=(e8.eax & ~0xFF00) | (ok << 8))))


@lab_test
def test_257_entries_are_e2big_256_are_accepted(lab, vcpu):
    entries = [CpuidEntry(0x4000_0100 + i) for i in range(257)]
    with pytest.raises(KvmError) as info:
        vcpu.set_cpuid(CpuidTable(entries))
    assert info.value.errno_name == "E2BIG"
    vcpu.set_cpuid(CpuidTable(entries[:256]))
    assert len(vcpu.get_cpuid()) == 256


@lab_test
def test_set_get_round_trip_of_a_pass_through_leaf(lab, vcpu):
    table = lab.supported_cpuid()
    leaf6 = table.get(6) or CpuidEntry(6)
    table = table.with_entry(leaf6.replace(eax=0x1234, ecx=0xA5C35A3C))
    vcpu.set_cpuid(table)
    got = vcpu.get_cpuid()
    assert len(got) == len(table)
    assert got.get(6).eax == 0x1234 and got.get(6).ecx == 0xA5C35A3C
    vcpu.set_cpuid(got)  # KVM takes its own output back


@lab_test
def test_cr4_and_xcr0_writes(lab, vcpu):
    vcpu.set_cpuid(lab.supported_cpuid())
    vcpu.set_cr4(CR4_OSXSAVE)
    assert vcpu.get_sregs_cr4() & CR4_OSXSAVE
    assert vcpu.get_cpuid().get(1).ecx >> 27 & 1  # OSXSAVE follows CR4 (a runtime field)
    vcpu.set_xcr0(0x7)
    assert vcpu.get_xcr0() == 0x7
    assert vcpu.get_cpuid().get(0xD, 0).ebx == 0x340  # XSAVE area for x87+SSE+AVX
    with pytest.raises(KvmError) as info:
        vcpu.set_xcr0(0x2)  # x87 (bit 0) is mandatory
    assert info.value.errno_name == "EINVAL" and info.value.operation == "KVM_SET_XCRS"
    assert vcpu.get_xcr0() == 0x7
    vcpu.set_cr4(0)
    assert not vcpu.get_cpuid().get(1).ecx >> 27 & 1


@lab_test
def test_maxphyaddr_below_32_makes_every_set_sregs_fail(lab, vcpu):
    """The APIC base 0xFEE00000 KVM_GET_SREGS hands back is above such a MAXPHYADDR, so KVM_SET_SREGS is EINVAL."""
    table = lab.supported_cpuid()
    e8 = table.get(0x8000_0008)
    vcpu.set_cpuid(table.with_entry(e8.replace(eax=(e8.eax & ~0xFF) | 31)))
    with pytest.raises(KvmError) as info:
        vcpu.set_cr4(0)
    assert info.value.errno_name == "EINVAL" and info.value.operation == "KVM_SET_SREGS"
    with lab.vcpu() as wide:
        wide.set_cpuid(table.with_entry(e8.replace(eax=(e8.eax & ~0xFF) | 32)))
        wide.set_cr4(0)


@lab_test
def test_run_and_errors_come_back_as_live_vcpu_raised_them(lab, vcpu):
    vcpu.set_cpuid(lab.supported_cpuid())
    vcpu.run()
    with pytest.raises(KvmError) as info:
        vcpu.run(0.3, code=b"\xeb\xfe")  # jmp $: never halts
    assert info.value.errno_name == "ETIMEDOUT"
    with pytest.raises(InputError):
        vcpu.set_cr4(-1)
    vcpu.close()
    with pytest.raises(KvmError) as info:
        vcpu.get_cpuid()
    assert info.value.errno_name == "EBADF"


# -- nothing is left behind --------------------------------------------------------------


@lab_test
def test_close_ends_qemu_and_removes_its_folder():
    lab = KernelLab(SERIES[-1])
    v = lab.vcpu()
    pid, workdir = lab.pid, lab._guest.workdir
    assert _pid_alive(pid) and workdir.is_dir()
    lab.close()
    lab.close()
    assert not _pid_alive(pid)
    assert not workdir.exists()
    assert "starting the agent" in lab.console()
    with pytest.raises(LabError):
        lab.supported_cpuid()
    with pytest.raises(KvmError):
        v.get_cpuid()
    v.close()


def _child_lab(tail: str) -> subprocess.Popen:
    code = textwrap.dedent(
        f"""
        import os, sys
        from cpuidkit.lab import KernelLab
        lab = KernelLab({SERIES[-1]!r})
        print(lab.pid, lab._guest.workdir, flush=True)
        {tail}
        """
    )
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)


@lab_test
@pytest.mark.parametrize(
    "how, tail",
    [
        ("exit without close (atexit)", "sys.exit(0)"),
        ("killed (SIGKILL, PR_SET_PDEATHSIG)", "os.kill(os.getpid(), 9)"),
    ],
)
def test_qemu_does_not_outlive_its_python(how, tail):
    child = _child_lab(tail)
    try:
        line = child.stdout.readline().split()
        child.wait(60)
    finally:
        if child.poll() is None:
            child.kill()
    assert line, f"the child did not boot a lab ({how})"
    pid, workdir = int(line[0]), Path(line[1])
    assert _wait_gone(pid), f"QEMU {pid} outlived its Python ({how})"
    if child.returncode == -signal.SIGKILL:  # nobody could clean up: the next lab to start does
        reap_stale_folders(str(workdir.parent))
    assert not workdir.exists()


@lab_test
def test_a_cpu_without_svm_is_a_clear_error():
    with pytest.raises(LabUnavailable) as info:
        KernelLab(SERIES[-1], cpu="qemu64,-svm")
    assert info.value.errno_name == "ENODEV" and "SVM" in str(info.value)


@lab_test
def test_guest_failures_say_what_happened():
    with pytest.raises(LabError, match="unable to find CPU model 'NoSuchCPU'"):
        KernelLab(SERIES[-1], cpu="NoSuchCPU")
    with pytest.raises(LabError) as info:
        KernelLab(SERIES[-1], python="/nonexistent/python3")
    assert "agent exited with status 127" in info.value.console
