"""Debian kernels for the lab: find, download, unpack, cache.

A *kernel build* is one Debian ``linux-image-*`` package (the signed, stock
kernel with its modules) reduced to what the lab boots: the ``vmlinuz``, the
few modules the guest needs (kvm_amd and what it depends on, virtio-pci,
virtio-console, 9p), decompressed, in the order they must be loaded, and the
initramfs built from them (:mod:`cpuidkit.lab.initramfs`).

Everything lives in a cache outside the repository::

    $CPUIDKIT_LAB_CACHE                     (if set), else
    $XDG_CACHE_HOME/cpuidkit/lab            (if set), else
    ~/.cache/cpuidkit/lab
        <package>_<version>/
            kernel.json     series, package, version, release, module order
            vmlinuz
            modules/NN-<name>.ko            decompressed, NN = load order
            initramfs.cpio  (rebuilt when its recipe changes)

:func:`ensure_kernel` asks apt (``apt-cache``, which reads the local package
lists: no network) for the newest package of a series, and downloads it
(``apt-get download``, then ``dpkg-deb -x``) only when the cache does not
hold it yet.  Without apt, the newest cached build of the series is used.

Module order comes from each module's own ``depends=`` (its ``.modinfo`` ELF
section, read here), because the builds differ: in 6.1 virtio is a set of
modules (virtio_ring first), in 6.12 it is built in.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import gzip
import hashlib
import json
import lzma
import os
import re
import shutil
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from cpuidkit._files import atomic_write_text
from cpuidkit.lab._errors import LabUnavailable

__all__ = [
    "KernelBuild",
    "cache_root",
    "ensure_kernel",
    "cached_kernels",
    "newest_package",
    "package_pattern",
    "compare_versions",
    "read_modinfo",
    "module_order",
    "GUEST_MODULES",
]

# What the guest loads (with everything these depend on), unless built in.
GUEST_MODULES = ("kvm_amd", "virtio_pci", "virtio_console", "9pnet_virtio", "9p")

_SERIES_RE = re.compile(r"^(\d+)\.(\d+)$")
_KO_SUFFIXES = (".ko", ".ko.xz", ".ko.gz", ".ko.zst")


# -- the cache ---------------------------------------------------------------------


def cache_root() -> Path:
    """Where kernels are kept (see the module docstring); created on first use."""
    env = os.environ.get("CPUIDKIT_LAB_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "cpuidkit" / "lab"


@contextlib.contextmanager
def _locked(root: Path):
    """An exclusive lock on the cache, so two processes never unpack the same kernel at once."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "a+") as fh:  # scratch: an empty lock file
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@dataclass(frozen=True)
class KernelBuild:
    """One unpacked Debian kernel package, ready to boot."""

    series: str  # "6.1"
    package: str  # "linux-image-6.1.0-57-amd64"
    version: str  # the Debian package version, "6.1.192-3"
    release: str  # uname -r of the kernel, "6.1.0-57-amd64"
    directory: Path
    modules: tuple[str, ...] = field(default=())  # load order
    builtin: tuple[str, ...] = field(default=())  # wanted but built into the kernel

    @property
    def vmlinuz(self) -> Path:
        return self.directory / "vmlinuz"

    @property
    def modules_dir(self) -> Path:
        return self.directory / "modules"

    @property
    def initramfs(self) -> Path:
        return self.directory / "initramfs.cpio"

    def module_files(self) -> list[Path]:
        return [self.modules_dir / f"{i:02d}-{name}.ko" for i, name in enumerate(self.modules)]

    def as_dict(self) -> dict:
        return {
            "series": self.series,
            "package": self.package,
            "version": self.version,
            "release": self.release,
            "modules": list(self.modules),
            "builtin": list(self.builtin),
        }

    @classmethod
    def load(cls, directory: Path) -> KernelBuild | None:
        try:
            info = json.loads((directory / "kernel.json").read_text())
            build = cls(
                series=info["series"],
                package=info["package"],
                version=info["version"],
                release=info["release"],
                directory=directory,
                modules=tuple(info["modules"]),
                builtin=tuple(info.get("builtin", ())),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not build.vmlinuz.is_file() or not all(p.is_file() for p in build.module_files()):
            return None
        return build


def cached_kernels(series: str | None = None, root: Path | None = None) -> list[KernelBuild]:
    """Complete builds in the cache (of ``series`` if given), newest package version first."""
    root = root or cache_root()
    if not root.is_dir():
        return []
    builds = [b for d in root.iterdir() if d.is_dir() and (b := KernelBuild.load(d)) is not None]
    if series is not None:
        builds = [b for b in builds if b.series == series]

    def newest_first(a: KernelBuild, b: KernelBuild) -> int:
        return compare_versions(b.version, a.version)

    return sorted(builds, key=functools.cmp_to_key(newest_first))


# -- Debian versions ------------------------------------------------------------------


def _order(c: str) -> int:
    if c == "~":
        return -1
    if c.isdigit():
        return 0
    if c.isalpha():
        return ord(c)
    return ord(c) + 256


def _compare_part(a: str, b: str) -> int:
    """dpkg's comparison of an upstream version or a revision."""
    i = j = 0
    while i < len(a) or j < len(b):
        # non-digit prefix, character by character ('~' sorts before everything, even the end)
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ca = _order(a[i]) if i < len(a) and not a[i].isdigit() else 0
            cb = _order(b[j]) if j < len(b) and not b[j].isdigit() else 0
            if ca != cb:
                return -1 if ca < cb else 1
            i += 1
            j += 1
        # numeric part
        si = i
        while i < len(a) and a[i].isdigit():
            i += 1
        sj = j
        while j < len(b) and b[j].isdigit():
            j += 1
        na = int(a[si:i] or 0)
        nb = int(b[sj:j] or 0)
        if na != nb:
            return -1 if na < nb else 1
    return 0


def _split_version(v: str) -> tuple[int, str, str]:
    epoch = 0
    if ":" in v:
        e, v = v.split(":", 1)
        epoch = int(e or 0)
    upstream, _, revision = v.rpartition("-") if "-" in v else (v, "", "")
    return epoch, upstream, revision


def compare_versions(a: str, b: str) -> int:
    """Compare two Debian package versions the way dpkg does: -1, 0 or 1."""
    ea, ua, ra = _split_version(a)
    eb, ub, rb = _split_version(b)
    if ea != eb:
        return -1 if ea < eb else 1
    return _compare_part(ua, ub) or _compare_part(ra, rb)


# -- apt ------------------------------------------------------------------------------


def package_pattern(series: str) -> re.Pattern:
    """The stock amd64 image packages of a series: linux-image-6.1.0-57-amd64, linux-image-6.12.117+deb12-amd64.

    Not the -rt-, -cloud-, -dbg or -unsigned flavours.
    """
    m = _SERIES_RE.match(series)
    if not m:
        raise ValueError(f"a kernel series is MAJOR.MINOR, like 6.1 or 6.12; got {series!r}")
    major, minor = m.groups()
    # [0-9] rather than \d: apt-cache reads the same text as a POSIX extended regex
    return re.compile(rf"^linux-image-{major}\.{minor}\.[0-9]+(-[0-9]+|\+deb[0-9]+)-amd64$")


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def _need_tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise LabUnavailable(f"`{name}` is not installed; the kernel lab needs it (apt-get install {package})")
    return path


def _apt_stamp() -> str | None:
    """A fingerprint of apt's package lists and pinning: the answer of apt-cache changes only with it."""
    h = hashlib.sha256()
    seen = False
    for base in ("/var/lib/apt/lists", "/etc/apt/preferences.d"):
        try:
            entries = sorted(os.scandir(base), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            try:
                st = entry.stat()
            except OSError:
                continue
            seen = True
            h.update(f"{entry.path}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    try:
        st = os.stat("/etc/apt/preferences")
        h.update(f"prefs:{st.st_size}:{st.st_mtime_ns}".encode())
    except OSError:
        pass
    return h.hexdigest() if seen else None


def newest_package(series: str, memo: Path | None = None) -> tuple[str, str] | None:
    """``(package, version)``: the newest image package of ``series`` that apt offers, or None.

    Reads apt's local package lists (``apt-cache``), no network.  None when apt
    is not installed or knows no such package.  With ``memo`` (a cache folder)
    the answer is remembered there until apt's lists change (apt-cache takes
    most of a second per call where apt keeps no binary cache).
    """
    pattern = package_pattern(series)
    apt_cache = shutil.which("apt-cache")
    if apt_cache is None:
        return None
    stamp = _apt_stamp() if memo is not None else None
    memo_file = memo / "apt-answers.json" if memo is not None else None
    if memo_file is not None and stamp is not None:
        try:
            known = json.loads(memo_file.read_text()).get(series, {})
            if known.get("stamp") == stamp and known.get("answer"):
                package, version = known["answer"]
                return str(package), str(version)
        except (OSError, ValueError, AttributeError):
            pass
    best = _ask_apt(apt_cache, pattern)
    if memo_file is not None and stamp is not None and best is not None:
        try:
            answers = json.loads(memo_file.read_text()) if memo_file.exists() else {}
        except (OSError, ValueError):
            answers = {}
        answers[series] = {"stamp": stamp, "answer": list(best)}
        atomic_write_text(memo_file, json.dumps(answers, indent=2) + "\n")
    return best


def _ask_apt(apt_cache: str, pattern: re.Pattern) -> tuple[str, str] | None:
    found = _run([apt_cache, "search", "--names-only", pattern.pattern])
    names = sorted({line.split(" ", 1)[0] for line in found.stdout.splitlines() if line.strip()})
    names = [n for n in names if pattern.match(n)]
    if not names:
        return None
    policy = _run([apt_cache, "policy", *names])
    best: tuple[str, str] | None = None
    current = None
    for line in policy.stdout.splitlines():
        if line and not line[0].isspace() and line.endswith(":"):
            current = line[:-1]
        elif current and line.strip().startswith("Candidate:"):
            version = line.split(":", 1)[1].strip()
            if version and version != "(none)" and (best is None or compare_versions(version, best[1]) > 0):
                best = (current, version)
    return best


def _download(package: str, version: str, into: Path) -> Path:
    apt_get = _need_tool("apt-get", "apt")
    proc = _run([apt_get, "download", "-q", f"{package}={version}"], cwd=into)
    debs = sorted(into.glob("*.deb"))
    if proc.returncode != 0 or not debs:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise LabUnavailable(
            f"`apt-get download {package}={version}` failed (run `apt-get update`, and check the Debian "
            f"mirror is reachable): {tail}"
        )
    return debs[0]


# -- kernel modules -------------------------------------------------------------------


def _module_name(path: Path) -> str:
    name = path.name
    for suffix in _KO_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name.replace("-", "_")


def _ko_bytes(path: Path) -> bytes:
    """The module file, decompressed (.ko.xz with Python's lzma, .ko.gz, .ko.zst with the zstd tool)."""
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".gz"):
        return gzip.decompress(data)
    if path.name.endswith(".zst"):
        zstd = _need_tool("zstd", "zstd")
        return subprocess.run([zstd, "-dc", str(path)], capture_output=True, check=True).stdout
    return data


def read_modinfo(image: bytes) -> dict[str, list[str]]:
    """The ``key=value`` strings of a module's ``.modinfo`` section (ELF64 little-endian).

    Values are lists: a key may repeat (``alias``, ``parm``).
    """
    if image[:4] != b"\x7fELF" or image[4] != 2 or image[5] != 1:
        raise ValueError("not a little-endian ELF64 kernel module")
    (shoff,) = struct.unpack_from("<Q", image, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", image, 0x3A)

    def section(i: int) -> tuple[int, int, int]:
        base = shoff + i * shentsize
        (name,) = struct.unpack_from("<I", image, base)
        offset, size = struct.unpack_from("<QQ", image, base + 24)
        return name, offset, size

    _, str_off, str_size = section(shstrndx)
    names = image[str_off : str_off + str_size]
    for i in range(shnum):
        name_at, offset, size = section(i)
        end = names.find(b"\0", name_at)
        if names[name_at:end] == b".modinfo":
            out: dict[str, list[str]] = {}
            for item in image[offset : offset + size].split(b"\0"):
                if b"=" in item:
                    key, _, value = item.decode("utf-8", "replace").partition("=")
                    out.setdefault(key, []).append(value)
            return out
    return {}


def module_order(
    wanted: tuple[str, ...] | list[str],
    available: dict[str, Path],
    builtin: set[str],
    depends_of,
) -> tuple[list[str], list[str]]:
    """``(load order, built in)`` for ``wanted`` and everything it depends on.

    ``depends_of(name)`` gives a module's ``depends=`` list.  A module is loaded
    after all of its dependencies; built-in modules are skipped.  A module that
    is neither a file nor built in raises :class:`LabUnavailable`.
    """
    order: list[str] = []
    skipped: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, chain: tuple[str, ...]) -> None:
        name = name.replace("-", "_")
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            raise LabUnavailable(f"kernel modules depend on each other in a cycle: {' -> '.join(chain + (name,))}")
        if name not in available:
            if name in builtin:
                if name not in skipped:
                    skipped.append(name)
                state[name] = "done"
                return
            raise LabUnavailable(
                f"kernel module {name} (needed by {' -> '.join(chain) or 'the lab'}) is neither a module file "
                "nor built into this kernel package"
            )
        state[name] = "visiting"
        for dep in depends_of(name):
            visit(dep, chain + (name,))
        state[name] = "done"
        order.append(name)

    for name in wanted:
        visit(name, ())
    return order, skipped


def _select_modules(modules_dir: Path, out: Path) -> tuple[list[str], list[str]]:
    """Copy (decompressed) the guest's modules from an unpacked tree into ``out``; returns (order, builtin)."""
    available: dict[str, Path] = {}
    for path in (modules_dir / "kernel").rglob("*.ko*"):
        if path.name.endswith(_KO_SUFFIXES):
            available.setdefault(_module_name(path), path)
    builtin: set[str] = set()
    builtin_file = modules_dir / "modules.builtin"
    if builtin_file.is_file():
        builtin = {_module_name(Path(line.strip())) for line in builtin_file.read_text().splitlines() if line.strip()}
    images: dict[str, bytes] = {}

    def image(name: str) -> bytes:
        if name not in images:
            images[name] = _ko_bytes(available[name])
        return images[name]

    def depends_of(name: str) -> list[str]:
        info = read_modinfo(image(name))
        deps = ",".join(info.get("depends", []))
        return [d for d in deps.split(",") if d]

    order, skipped = module_order(GUEST_MODULES, available, builtin, depends_of)
    out.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(order):
        (out / f"{i:02d}-{name}.ko").write_bytes(image(name))  # scratch: in the unpack folder, moved whole
    return order, skipped


def _unpack(deb: Path, series: str, package: str, version: str, into: Path) -> KernelBuild:
    dpkg_deb = _need_tool("dpkg-deb", "dpkg")
    tree = into / "tree"
    tree.mkdir()
    proc = _run([dpkg_deb, "-x", str(deb), str(tree)])
    if proc.returncode != 0:
        raise LabUnavailable(f"`dpkg-deb -x {deb.name}` failed: {proc.stderr.strip()}")
    module_roots = [p for base in ("lib/modules", "usr/lib/modules") for p in (tree / base).glob("*") if p.is_dir()]
    if len(module_roots) != 1:
        raise LabUnavailable(f"{deb.name} does not hold exactly one kernel's modules (found {len(module_roots)})")
    modules_dir = module_roots[0]
    release = modules_dir.name
    vmlinuz = tree / "boot" / f"vmlinuz-{release}"
    if not vmlinuz.is_file():
        raise LabUnavailable(f"{deb.name} has no boot/vmlinuz-{release}")
    final = into / "build"
    final.mkdir()
    shutil.copyfile(vmlinuz, final / "vmlinuz")
    order, skipped = _select_modules(modules_dir, final / "modules")
    build = KernelBuild(series, package, version, release, final, tuple(order), tuple(skipped))
    (final / "kernel.json").write_text(json.dumps(build.as_dict(), indent=2) + "\n")  # scratch: moved whole
    return build


def ensure_kernel(
    series: str,
    *,
    package: str | None = None,
    version: str | None = None,
    refresh: bool = False,
    root: Path | None = None,
    log=None,
) -> KernelBuild:
    """A ready :class:`KernelBuild` of ``series`` ("6.1", "6.12"), from the cache or freshly downloaded.

    ``package`` (and ``version``) pin one package instead of the newest apt
    offers.  ``refresh`` unpacks it again even when cached.  ``log`` is called
    with a line of progress text when something slow happens.  The initramfs
    is not built here (see :func:`cpuidkit.lab.initramfs.ensure_initramfs`).
    """
    pattern = package_pattern(series)
    root = Path(root) if root is not None else cache_root()
    if package is not None and not pattern.match(package):
        raise ValueError(f"{package!r} is not a stock amd64 image package of the {series} series")
    with _locked(root):
        choice = None
        if package is None or version is None:
            found = newest_package(series, memo=None if refresh else root)
            if package is not None and found is not None and found[0] != package:
                apt_cache = shutil.which("apt-cache")
                pol = _run([apt_cache, "policy", package]).stdout if apt_cache else ""
                m = re.search(r"Candidate:\s*(\S+)", pol)
                found = (package, m.group(1)) if m and m.group(1) != "(none)" else None
            choice = found
        else:
            choice = (package, version)
        if choice is None:
            cached = [b for b in cached_kernels(series, root) if package is None or b.package == package]
            if cached and not refresh:
                return cached[0]
            raise LabUnavailable(
                f"apt offers no {package or f'linux-image-{series}.*-amd64'} package and the cache ({root}) "
                "holds none: run `apt-get update` on a Debian 12 (bookworm) system, where the 6.1 kernels come "
                "from bookworm(-security) and the 6.12 ones from bookworm-security / bookworm-backports"
            )
        package, version = choice
        directory = root / f"{package}_{version}"
        existing = KernelBuild.load(directory)
        if existing is not None and not refresh:
            return existing
        if log:
            log(f"cpuidkit lab: downloading and unpacking {package} {version} into {root}")
        started = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix=".unpack-", dir=root))
        try:
            deb = _download(package, version, work)
            build = _unpack(deb, series, package, version, work)
            if directory.exists():
                shutil.rmtree(directory)
            os.replace(build.directory, directory)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if log:
            log(f"cpuidkit lab: {package} {version} ready in {time.monotonic() - started:.1f} s")
        loaded = KernelBuild.load(directory)
        assert loaded is not None
        return loaded
