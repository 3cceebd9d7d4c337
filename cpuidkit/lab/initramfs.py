"""The lab guest's initramfs: a static busybox, the kernel's modules and an /init.

``/init`` (PID 1, run by busybox's shell):

1. mounts /proc, /sys and /dev (devtmpfs);
2. loads the modules with ``insmod`` in the order :mod:`cpuidkit.lab.kernels`
   computed from their dependencies (kvm_amd and what it needs, virtio, 9p);
3. mounts the host's root file system, read-only, over 9p (QEMU's
   ``-virtfs ... mount_tag=host,readonly=on``) at /host and mounts the guest's
   own /proc, /sys and /dev over the host's ones there;
4. ``chroot /host`` and runs the host's Python (``$CPUIDKIT_LAB_PYTHON``) on
   the agent module (``$CPUIDKIT_LAB_AGENT``) with ``$CPUIDKIT_LAB_PYTHONPATH``;
   the three come from the kernel command line, so one initramfs serves any
   checkout and any interpreter;
5. powers the guest off when the agent exits (QEMU runs with ``-no-reboot``).

The archive is an uncompressed ``newc`` cpio written by Debian's ``cpio``
(unpacking is faster than decompressing under TCG).  It is rebuilt when its
recipe (this script, busybox, the module list) changes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

from cpuidkit._files import atomic_write_text
from cpuidkit.lab._errors import LabUnavailable
from cpuidkit.lab.kernels import KernelBuild

__all__ = ["find_busybox", "is_static_elf", "init_script", "ensure_initramfs", "build_initramfs"]

INIT_TEMPLATE = r"""#!/bin/busybox sh
# PID 1 of the cpuidkit kernel lab guest (written by cpuidkit/lab/initramfs.py).
B=/bin/busybox
say() { echo "cpuidkit-lab: $*" > /dev/console; }
stop() { say "$*"; $B sync; $B poweroff -f; $B sleep 5; exit 1; }
$B mkdir -p /proc /sys /dev /host
$B mount -t proc proc /proc
$B mount -t sysfs sysfs /sys
$B mount -t devtmpfs devtmpfs /dev
for m in @MODULES@; do
    $B insmod "/lib/modules/lab/$m.ko" || say "insmod $m failed"
done
$B mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose host /host \
    || stop "cannot mount the host's root (9p, mount_tag=host)"
for d in proc sys dev; do
    [ -d "/host/$d" ] || stop "the host has no /$d to mount the guest's over"
done
$B mount -t proc proc /host/proc
$B mount -t sysfs sysfs /host/sys
$B mount -t devtmpfs devtmpfs /host/dev
[ -n "$CPUIDKIT_LAB_PYTHON" ] || stop "no CPUIDKIT_LAB_PYTHON= on the kernel command line"
say "starting the agent ($CPUIDKIT_LAB_PYTHON -m $CPUIDKIT_LAB_AGENT)"
PYTHONPATH="$CPUIDKIT_LAB_PYTHONPATH" PYTHONDONTWRITEBYTECODE=1 PYTHONNOUSERSITE=1 \
    PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/ LANG=C.UTF-8 \
    $B chroot /host "$CPUIDKIT_LAB_PYTHON" -m "$CPUIDKIT_LAB_AGENT"
stop "agent exited with status $?"
"""

_PT_INTERP = 3


def is_static_elf(path: str | os.PathLike) -> bool:
    """True if ``path`` is an ELF64 executable with no program interpreter (statically linked)."""
    with open(path, "rb") as fh:
        head = fh.read(64)
        if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2:
            return False
        (phoff,) = struct.unpack_from("<Q", head, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
        fh.seek(phoff)
        table = fh.read(phentsize * phnum)
    for i in range(phnum):
        (p_type,) = struct.unpack_from("<I", table, i * phentsize)
        if p_type == _PT_INTERP:
            return False
    return True


def find_busybox() -> Path:
    """The static busybox (Debian ``busybox-static``); :class:`LabUnavailable` if missing or dynamic."""
    candidates = [p for p in (shutil.which("busybox"), "/bin/busybox", "/usr/bin/busybox") if p]
    for candidate in candidates:
        if os.path.isfile(candidate):
            path = Path(os.path.realpath(candidate))
            if is_static_elf(path):
                return path
            raise LabUnavailable(
                f"{candidate} is dynamically linked and cannot run in the lab's initramfs; "
                "install the static one (apt-get install busybox-static)"
            )
    raise LabUnavailable("busybox is not installed; the kernel lab needs a static one (apt-get install busybox-static)")


def find_cpio() -> str:
    path = shutil.which("cpio")
    if path is None:
        raise LabUnavailable(
            "`cpio` is not installed; the kernel lab needs it to build its initramfs (apt-get install cpio)"
        )
    return path


def init_script(modules: list[str] | tuple[str, ...]) -> str:
    names = [f"{i:02d}-{name}" for i, name in enumerate(modules)]
    return INIT_TEMPLATE.replace("@MODULES@", " ".join(names) if names else "")


def _recipe(build: KernelBuild, busybox: Path) -> str:
    h = hashlib.sha256()
    h.update(init_script(build.modules).encode())
    st = busybox.stat()
    h.update(f"{busybox}:{st.st_size}:{st.st_mtime_ns}".encode())
    for path in build.module_files():
        s = path.stat()
        h.update(f"{path.name}:{s.st_size}".encode())
    return h.hexdigest()


def build_initramfs(build: KernelBuild, out: Path, busybox: Path | None = None) -> Path:
    """Write the initramfs of ``build`` to ``out`` (atomically)."""
    busybox = busybox or find_busybox()
    cpio = find_cpio()
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix=".initramfs-", dir=out.parent) as tmp:
        stage = Path(tmp) / "root"
        (stage / "bin").mkdir(parents=True)
        (stage / "lib" / "modules" / "lab").mkdir(parents=True)
        for d in ("proc", "sys", "dev", "host"):
            (stage / d).mkdir()
        shutil.copyfile(busybox, stage / "bin" / "busybox")
        os.chmod(stage / "bin" / "busybox", 0o755)
        os.symlink("busybox", stage / "bin" / "sh")
        for path in build.module_files():
            shutil.copyfile(path, stage / "lib" / "modules" / "lab" / path.name)
        init = stage / "init"
        init.write_text(init_script(build.modules))  # scratch: the staging folder
        os.chmod(init, 0o755)
        files = sorted(str(p.relative_to(stage)) for p in stage.rglob("*"))
        part = Path(tmp) / "initramfs.cpio"
        with open(part, "wb") as fh:  # scratch: moved into place by os.replace below
            proc = subprocess.run(
                [cpio, "--quiet", "-o", "-H", "newc", "--owner=0:0"],
                input=("\n".join(files) + "\n").encode(),
                stdout=fh,
                stderr=subprocess.PIPE,
                cwd=stage,
            )
        if proc.returncode != 0:
            raise LabUnavailable(f"cpio failed building the initramfs: {proc.stderr.decode(errors='replace').strip()}")
        os.replace(part, out)
    return out


def ensure_initramfs(build: KernelBuild) -> Path:
    """The initramfs of ``build``, (re)built when missing or when its recipe changed."""
    busybox = find_busybox()
    recipe = _recipe(build, busybox)
    stamp = build.directory / "initramfs.recipe"
    if build.initramfs.is_file() and stamp.is_file() and stamp.read_text().strip() == recipe:
        return build.initramfs
    build_initramfs(build, build.initramfs, busybox)
    atomic_write_text(stamp, recipe + "\n")
    return build.initramfs
