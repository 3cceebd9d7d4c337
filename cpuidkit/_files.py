"""Files: where the data tables live, the one hardened reader for user inputs, atomic writes.

Data tables
    ``data/`` in a checkout, ``cpuidkit/_data`` in a wheel (:func:`data_dir`, :func:`read_csv`).

Writes
    Atomic file writes: a reader sees the old file or the new one, never half of one.

    Every file cpuidkit writes goes through :func:`atomic_write_bytes`: the data is
    written to a temporary file in the same folder, flushed to disk, given the
    old file's permissions (or the umask's for a new file), and renamed over the
    target with ``os.replace``; the folder is then synced so the rename itself
    survives a crash.  A failure at any step removes the temporary file and leaves
    the old file as it was.  A target that is a symbolic link is resolved first,
    so the file the link points to is replaced and the link stays a link.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import functools
import io
import os
import re
import stat
import tempfile
from pathlib import Path

from cpuidkit.errors import InputError, WriteFailed

MAX_INPUT_BYTES = 16 * 1024 * 1024  # inputs larger than this are refused (a CPUID dump is < 1 MiB)

_PKG = Path(__file__).resolve().parent


@functools.cache
def data_dir() -> Path:
    """The folder holding cpuidkit's data tables.

    An installed wheel carries them as ``cpuidkit/_data`` (hatch force-include);
    a checkout or an editable install reads ``data/`` beside the package.
    """
    for candidate in (_PKG / "_data", _PKG.parent / "data"):
        if (candidate / "fields.csv").is_file():
            return candidate
    raise FileNotFoundError(
        "cpuidkit's data tables were not found: expected cpuidkit/_data (installed wheel) "
        f"or data/ beside the package ({_PKG.parent / 'data'})"
    )


def data_path(name: str) -> Path:
    return data_dir() / name


def read_csv(name: str) -> list[dict[str, str]]:
    """Rows of a data CSV; lines starting with ``#`` are comments for reviewers."""
    path = data_path(name)
    text = path.read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines(keepends=True) if not ln.lstrip().startswith("#")]
    reader = csv.DictReader(io.StringIO("".join(lines)))
    rows = []
    for n, row in enumerate(reader, start=2):
        if None in row or any(v is None for v in row.values()):
            raise InputError("wrong number of columns", source=str(path), where=f"data row {n - 1}")
        rows.append({k.strip(): v.strip() for k, v in row.items()})
    return rows


def _sync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot sync a folder; the rename has still happened
        pass
    finally:
        os.close(fd)


def _temp_prefix(target: Path) -> str:
    return f".{target.name}.cpuidkit-"


def _remove_stale_temps(target: Path, folder: Path) -> None:
    """Remove temporary files an earlier write to ``target`` left behind when it was killed (its pid is gone)."""
    prefix = _temp_prefix(target)
    try:
        names = [n for n in os.listdir(folder) if n.startswith(prefix) and n.endswith(".tmp")]
    except OSError:
        return
    for name in names:
        pid_text = name[len(prefix) :].split(".", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        try:
            os.kill(int(pid_text), 0)
            continue  # its writer is alive: not ours to remove
        except ProcessLookupError:
            pass
        except OSError:  # alive, owned by someone else
            continue
        with contextlib.suppress(OSError):
            os.unlink(folder / name)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``.

    Only a regular file is ever replaced: a FIFO, a device node, a socket or a folder (also behind a
    symbolic link) is refused with :class:`WriteFailed`, untouched.  A link to a regular file stays a
    link and its target is replaced.  The new file keeps the old one's mode and (where allowed) owner.
    Raises :class:`WriteFailed` (an ``OSError``) when anything goes wrong, with the old file intact
    and no temporary file left behind; temporary files of an earlier, killed write are removed.
    """
    target = Path(path)
    try:
        if target.is_symlink():
            target = Path(os.path.realpath(target))
        try:
            old = target.stat()
        except FileNotFoundError:
            old = None
    except OSError as e:
        raise WriteFailed(display_name(path), e.strerror or type(e).__name__, e.errno) from e
    except ValueError as e:  # a NUL byte in the name
        raise WriteFailed(display_name(path), f"not a usable file name ({e})", errno.EINVAL) from e
    if old is not None and not stat.S_ISREG(old.st_mode):
        raise WriteFailed(
            display_name(path),
            f"is {_kind(old.st_mode)}, not a regular file: refusing to replace it",
            errno.EEXIST,
        )
    folder = target.parent if str(target.parent) else Path(".")
    _remove_stale_temps(target, folder)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f"{_temp_prefix(target)}{os.getpid()}.", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if old is not None:
            os.chmod(tmp, old.st_mode & 0o7777)
            if (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
                with contextlib.suppress(PermissionError):
                    os.chown(tmp, old.st_uid, old.st_gid)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
        tmp = None
    except OSError as e:
        raise WriteFailed(display_name(path), e.strerror or str(e) or type(e).__name__, e.errno) from e
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    _sync_folder(folder)
    return target


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


# -- the one hardened reader for every input a user names -------------------------------------------------

MAX_JSON_DEPTH = 64  # deeper nesting is refused before parsing (a CPUID document nests 3 or 4 levels)


def display_name(path: object) -> str:
    """How a file is named in messages: its path, with control characters and the like escaped (one line)."""
    name = os.fsdecode(path) if isinstance(path, bytes) else str(path)
    if len(name) > 300:
        name = name[:150] + "…" + name[-100:]
    return name if name.isprintable() else repr(name)[1:-1]


def _kind(mode: int) -> str:
    for test, what in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return what
    return "not a regular file"


def path_exists(spec: str | os.PathLike) -> bool:
    """Whether ``spec`` names something on disk; a name no file could have (too long, a NUL byte) is no file."""
    try:
        return os.path.lexists(spec)
    except (OSError, ValueError):
        return False


_OS_ERRORS = {
    errno.ENOENT: "no such file",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EISDIR: "is a folder, expected a file",
    errno.ENOTDIR: "no such file (a part of the path is not a folder)",
    errno.ENAMETOOLONG: "the file name is too long",
    errno.ELOOP: "too many levels of symbolic links",
}


def read_input_bytes(path: str | os.PathLike, *, limit: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of a file a user named, or an :class:`InputError` naming it.

    Regular files only: the file is opened non-blocking and checked with ``fstat`` before anything
    is read, so a FIFO, a device or a folder is refused at once instead of hanging or filling memory.
    At most ``limit`` bytes are read (also from ``/proc`` files, which report size 0).
    """
    name = display_name(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    except OSError as e:
        raise InputError(_OS_ERRORS.get(e.errno or 0) or f"cannot read the file: {e.strerror}", source=name) from None
    except (ValueError, TypeError) as e:  # a NUL byte in the name, a path that is not a path
        raise InputError(f"not a usable file name ({e})", source=name) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"is {_kind(st.st_mode)}, expected a regular file", source=name)
        if st.st_size > limit:
            raise InputError(f"file is {st.st_size} bytes; the limit is {limit} ({limit // 2**20} MiB)", source=name)
        chunks = []
        total = 0
        while total <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as e:
        raise InputError(f"cannot read the file: {e.strerror or type(e).__name__}", source=name) from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:
        raise InputError(f"file is larger than {limit} bytes, the limit ({limit // 2**20} MiB)", source=name)
    return data


def decode_text(data: bytes, source: str | None) -> str:
    """UTF-8 text without NUL bytes, or an :class:`InputError` naming the first bad byte."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"not UTF-8 text (byte {e.start}: {data[e.start : e.start + 1]!r})", source=source) from None
    if "\x00" in text:
        raise InputError(f"contains a NUL byte at offset {text.index(chr(0))}: not a text file", source=source)
    return text


def read_input_text(path: str | os.PathLike, *, limit: int = MAX_INPUT_BYTES) -> str:
    """:func:`read_input_bytes` as UTF-8 text (see :func:`decode_text`)."""
    return decode_text(read_input_bytes(path, limit=limit), display_name(path))


_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def check_json_depth(text: str, source: str | None, limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse JSON nested deeper than ``limit`` before any parser recurses into it."""
    depth = 0
    for m in _JSON_TOKENS.finditer(text):
        c = m.group(0)
        if c in "[{":
            depth += 1
            if depth > limit:
                line = text.count("\n", 0, m.start()) + 1
                raise InputError(f"JSON nested more than {limit} levels deep", source=source, where=f"line {line}")
        elif c in "]}":
            depth -= 1
