"""Issue 14, writes and reads: never replace what is not a regular file of ours, one hardened reader for every input."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading

import pytest
from conftest import LIVE_DATA, ROOT

from cpuidkit._files import MAX_JSON_DEPTH, atomic_write_text, read_input_bytes
from cpuidkit.cli.main import main
from cpuidkit.errors import InputError, WriteFailed

TABLE = LIVE_DATA / "supported-cpuid.json"


def _cli(capsys, *argv) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


def _char_device(tmp_path):
    """A character device node of the test's own (/dev/null's numbers), never a system one."""
    node = tmp_path / "null-node"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("creating a device node needs root")
    return node


@pytest.mark.parametrize("kind", ["fifo", "device", "link-to-device", "folder"])
def test_output_refuses_anything_but_a_regular_file(kind, tmp_path, capsys):
    if kind == "fifo":
        target = tmp_path / "fifo"
        os.mkfifo(target)
    elif kind == "device":
        target = _char_device(tmp_path)
    elif kind == "link-to-device":
        target = tmp_path / "link"
        target.symlink_to(_char_device(tmp_path))
    else:
        target = tmp_path / "folder"
        target.mkdir()
    before = os.lstat(target)
    code, err = _cli(capsys, "review", str(TABLE), "--host", "cascade-lake", "-o", str(target))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "not a regular file" in err
    after = os.lstat(target)
    assert (after.st_mode, after.st_ino, after.st_rdev) == (before.st_mode, before.st_ino, before.st_rdev)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_link_to_a_regular_file_stays_a_link_and_mode_and_owner_are_kept(tmp_path):
    real = tmp_path / "real.json"
    real.write_text("old")
    os.chmod(real, 0o640)
    if os.geteuid() == 0:
        os.chown(real, 12345, 23456)
    link = tmp_path / "link.json"
    link.symlink_to(real.name)
    atomic_write_text(link, "new")
    assert link.is_symlink() and real.read_text() == "new"
    st = real.stat()
    assert stat.S_IMODE(st.st_mode) == 0o640
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (12345, 23456)


def test_temp_files_of_a_killed_writer_are_removed_by_the_next_write(tmp_path):
    out = tmp_path / "out.json"
    # a writer killed while writing: its temp file stays behind (its pid is gone)
    script = (
        "import os, sys, cpuidkit._files as f\n"
        "real = os.replace\n"
        "def stop(*a): os.kill(os.getpid(), 9)\n"
        "os.replace = stop\n"
        f"f.atomic_write_text({str(out)!r}, 'half')\n"
    )
    r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True)
    assert r.returncode == -9
    stale = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(stale) == 1 and not out.exists()
    # a live writer's temp file (this process's parent pid) is not touched
    alive = tmp_path / f".out.json.cpuidkit-{os.getppid()}.x.tmp"
    alive.write_text("busy")
    atomic_write_text(out, "whole")
    assert out.read_text() == "whole"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out.json", alive.name])


@pytest.mark.parametrize("option", ["--state", "--intended"])
def test_state_and_intended_inputs_use_the_hardened_reader(option, tmp_path, capsys):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    command = "check" if option == "--state" else "lint"
    cases = {
        str(fifo): "is a FIFO",
        "/dev/zero": "is a character device",
        str(tmp_path): "is a folder",
        str(tmp_path / ("n" * 300)): "too long",
    }
    bad = tmp_path / "latin1.json"
    bad.write_bytes(b'{"cr4": "\xe9"}')
    cases[str(bad)] = "not UTF-8"
    deep = tmp_path / "deep.json"
    deep.write_text("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1))
    cases[str(deep)] = "nested more than"
    for path, expected in cases.items():
        result: dict = {}
        t = threading.Thread(target=lambda p=path: result.update(code=_cli(capsys, command, str(TABLE), option, p)))
        t.start()
        t.join(timeout=60)
        assert not t.is_alive(), f"{option} {path} hangs"
        code, err = result["code"]
        assert code == 2 and expected in err and "Traceback" not in err, (path, err)


def test_read_input_bytes_reads_proc_files_that_report_size_zero():
    data = read_input_bytes("/proc/self/status")
    assert os.stat("/proc/self/status").st_size == 0 and b"Name:" in data


def test_a_long_inline_layout_is_parsed_not_opened(capsys):
    regions = ",".join(f"region{i}:ram:{i << 36:#018x}:0x1000" for i in range(7))
    assert len(regions) > 255  # longer than any file name: once tried as a file, "File name too long"
    code, err = _cli(capsys, "maxphyaddr", "--guest-bits", "46", "--host", "46", "--layout", regions)
    assert code == 0, err


@pytest.mark.parametrize(
    "layout, expected",
    [("ram:ram:0:0", "is not a 64-bit range"), ("r:weird:0:0x1000", "kind must be"), ("r:ram:x:1", "numbers")],
)
def test_bad_layout_items_say_what_is_wrong(layout, expected, capsys):
    code, err = _cli(capsys, "maxphyaddr", "--guest-bits", "46", "--host", "46", "--layout", layout)
    assert code == 2 and expected in err


def test_bad_pte_is_bad_input(capsys):
    code, err = _cli(capsys, "maxphyaddr", "--guest-bits", "46", "--host", "46", "--pte", "40-47")
    assert code == 2 and "--pte" in err


@pytest.mark.parametrize("option", ["--host", "-o"])
def test_names_longer_than_any_file_are_one_line_errors(option, capsys):
    argv = ["review", str(TABLE), option, "z" * 300]
    code, err = _cli(capsys, *argv)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("kernel", ["0.0", "99.99", "6.18x", "six"])
def test_kernels_outside_the_model_are_refused_with_the_list(kernel, capsys):
    code, err = _cli(capsys, "check", str(TABLE), "--kernel", kernel)
    assert code == 2 and len(err.strip().splitlines()) == 1
    if kernel in ("0.0", "99.99"):
        assert "not modelled" in err and "5.10" in err and "6.18" in err


@pytest.mark.parametrize("kernel", ["6.12", "6.1.170", "6.18.44-fc-v1147", "v5.15.0"])
def test_kernels_as_users_meet_them_are_taken(kernel, capsys):
    code = main(["check", str(TABLE), "--kernel", kernel, "--format", "json"])
    out = json.loads(capsys.readouterr().out.splitlines()[0])
    assert code in (0, 1) and out["kernel"] == ".".join(kernel.lstrip("v").split("-")[0].split(".")[:2])


def test_fleet_output_inside_the_host_folder_is_refused(tmp_path, capsys):
    code, err = _cli(capsys, "fleet", str(tmp_path), "-o", str(tmp_path / "matrix.json"))
    assert code == 2 and "inside the host folder" in err
    code, err = _cli(capsys, "fleet", str(tmp_path), "--baseline", str(tmp_path / "base.json"))
    assert code == 2 and "inside the host folder" in err
    assert list(tmp_path.iterdir()) == []


def test_a_crash_is_not_a_verdict_for_any_subcommand(monkeypatch, capsys):
    from cpuidkit.cli import check as check_cli

    def boom(*a, **k):
        raise KeyError("a bug")

    monkeypatch.setattr(check_cli, "check", boom)
    code, err = _cli(capsys, "check", str(TABLE))
    assert code == 3 and "internal error" in err


def test_write_failed_names_the_file(tmp_path):
    with pytest.raises(WriteFailed, match="no-such-folder"):
        atomic_write_text(tmp_path / "no-such-folder" / "x.json", "{}")
    with pytest.raises(InputError):
        read_input_bytes(tmp_path / "missing")
