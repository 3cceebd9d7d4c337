"""Booting the lab guest in QEMU (TCG) and ending it again.

:class:`QemuGuest` starts one ``qemu-system-x86_64`` process:

* ``-accel tcg`` with one vCPU of a CPU model that has SVM (``EPYC-Rome,+svm``
  by default; ``max`` works too), so the guest's kvm_amd finds "hardware"
  virtualization -- QEMU emulates it;
* no disk and no network: the guest's only file system is the host's root,
  shared read-only over 9p (``-virtfs local,path=/,mount_tag=host,readonly=on,
  multidevs=remap,security_model=none``);
* a virtio-serial port (``cpuidkit.agent``) connected to a Unix socket this
  process listens on, for the agent's JSON lines;
* the serial console written to ``console.log`` in a private temporary
  folder (read it for boot failures).

Every process started is ended by its pid (SIGTERM, then SIGKILL) on
:meth:`QemuGuest.stop`, at interpreter exit (``atexit``), and -- when started
from the main thread -- by the kernel if this process dies first
(``PR_SET_PDEATHSIG``).  The temporary folder goes with it; one left by a
Python that was killed is removed by the next lab that starts
(:func:`reap_stale_folders`).
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import IO

from cpuidkit.lab._errors import LabError, LabUnavailable
from cpuidkit.lab._protocol import PORT_NAME

__all__ = ["QemuGuest", "find_qemu", "qemu_command"]

QEMU = "qemu-system-x86_64"
_PR_SET_PDEATHSIG = 1

_live: dict[int, QemuGuest] = {}
_live_lock = threading.Lock()


def find_qemu(path: str | None = None) -> str:
    found = shutil.which(path or QEMU)
    if found is None:
        raise LabUnavailable(
            f"`{path or QEMU}` is not installed; the kernel lab boots its kernels in QEMU "
            "(apt-get install qemu-system-x86)"
        )
    return found


def _opt(value: str | os.PathLike) -> str:
    """A value inside a QEMU ``key=value,...`` option (commas are doubled)."""
    return str(value).replace(",", ",,")


def cpu_model(cpu: str) -> str:
    """The ``-cpu`` argument: ``cpu`` with ``+svm`` added unless it already says svm."""
    if any(f.lstrip("+-").split("=")[0] == "svm" for f in cpu.split(",")[1:]):
        return cpu
    return f"{cpu},+svm"


def qemu_command(
    qemu: str,
    *,
    kernel: Path,
    initrd: Path,
    append: str,
    cpu: str,
    memory: str,
    console: Path,
    agent_socket: Path,
) -> list[str]:
    return [
        qemu,
        "-accel",
        "tcg",
        "-machine",
        "pc",
        "-cpu",
        cpu_model(cpu),
        "-smp",
        "1",
        "-m",
        str(memory),
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
        "-nic",
        "none",
        "-serial",
        f"file:{console}",
        "-kernel",
        str(kernel),
        "-initrd",
        str(initrd),
        "-append",
        append,
        "-virtfs",
        "local,path=/,mount_tag=host,readonly=on,multidevs=remap,security_model=none",
        "-device",
        "virtio-serial-pci",
        "-chardev",
        f"socket,id=agent,path={_opt(agent_socket)}",
        "-device",
        f"virtserialport,chardev=agent,name={PORT_NAME}",
    ]


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except Exception:
        pass


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie -- dead, not yet reaped by its new parent -- does not)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rpartition(")")[2].split()[0]
        return state not in ("Z", "X")
    except FileNotFoundError:
        return False
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_stale_folders(base: str | None = None) -> list[Path]:
    """Remove lab folders left by a Python that was killed (its QEMU died with it); returns what went.

    A folder is stale when neither the Python that made it nor its QEMU is
    alive any more (both pids are in its ``owner`` file).
    """
    removed = []
    for folder in Path(base or tempfile.gettempdir()).glob("cpuidkit-lab-*"):
        try:
            if folder.stat().st_uid != os.getuid():
                continue
            pids = [int(p) for p in (folder / "owner").read_text().split()]
        except (OSError, ValueError):
            continue
        if pids and not any(_pid_alive(p) for p in pids):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _stop_all() -> None:
    with _live_lock:
        guests = list(_live.values())
    for guest in guests:
        guest.stop()


atexit.register(_stop_all)


class QemuGuest:
    """One QEMU process and the agent socket it connects to (see the module docstring)."""

    def __init__(
        self,
        *,
        kernel: Path,
        initrd: Path,
        append: str,
        cpu: str,
        memory: str = "512M",
        qemu: str | None = None,
    ):
        self.qemu = find_qemu(qemu)
        self.kernel = Path(kernel)
        self.initrd = Path(initrd)
        self.append = append
        self.cpu = cpu
        self.memory = memory
        self.workdir: Path | None = None
        self.process: subprocess.Popen | None = None
        self.sock: socket.socket | None = None
        self.command: list[str] = []
        self._stderr: IO[bytes] | None = None
        self.last_console = ""

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def console_path(self) -> Path | None:
        return self.workdir / "console.log" if self.workdir else None

    @property
    def returncode(self) -> int | None:
        return self.process.returncode if self.process else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, deadline: float) -> socket.socket:
        """Start QEMU; return the agent's socket once QEMU has connected to it (by ``deadline``, monotonic)."""
        base = None
        if len(tempfile.gettempdir()) > 60:  # keep the socket path under the 108-byte limit
            base = "/tmp"
        reap_stale_folders(base)
        self.workdir = Path(tempfile.mkdtemp(prefix="cpuidkit-lab-", dir=base))
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            path = self.workdir / "agent.sock"
            listener.bind(str(path))
            listener.listen(1)
            self.command = qemu_command(
                self.qemu,
                kernel=self.kernel,
                initrd=self.initrd,
                append=self.append,
                cpu=self.cpu,
                memory=self.memory,
                console=self.workdir / "console.log",
                agent_socket=path,
            )
            self._stderr = open(self.workdir / "qemu.stderr", "wb")  # scratch: QEMU's own messages
            on_main = threading.current_thread() is threading.main_thread()
            self.process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=self._stderr,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent if on_main else None,
                start_new_session=True,
                close_fds=True,
            )
            with _live_lock:
                _live[id(self)] = self
            (self.workdir / "owner").write_text(f"{os.getpid()} {self.process.pid}\n")  # scratch
            listener.settimeout(0.2)
            while True:
                try:
                    conn, _ = listener.accept()
                    break
                except TimeoutError:
                    if not self.alive():
                        raise LabError(
                            f"QEMU exited (status {self.process.returncode}) before connecting the agent port: "
                            f"{self.stderr_text().strip()}",
                            console=self.console_tail(),
                        ) from None
                    if time.monotonic() > deadline:
                        raise LabError(
                            "QEMU did not connect the agent port in time", console=self.console_tail()
                        ) from None
            conn.settimeout(None)
            self.sock = conn
            return conn
        except BaseException:
            self.stop()
            raise
        finally:
            listener.close()

    def stderr_text(self) -> str:
        if not self.workdir:
            return ""
        try:
            return (self.workdir / "qemu.stderr").read_text(errors="replace")
        except OSError:
            return ""

    def console_text(self) -> str:
        path = self.console_path
        if path is None:
            return self.last_console
        try:
            return path.read_text(errors="replace")
        except OSError:
            return ""

    def console_tail(self, lines: int = 30) -> str:
        text = self.console_text()
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 5.0) -> None:
        """End QEMU by its pid (SIGTERM, then SIGKILL) and remove the temporary folder; idempotent."""
        with _live_lock:
            _live.pop(id(self), None)
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None
        proc = self.process
        if proc is not None and proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.kill(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        if self.workdir is not None:
            self.last_console = self.console_text()
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
