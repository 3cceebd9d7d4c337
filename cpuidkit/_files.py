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

import csv
import functools
import io
import os
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


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``.

    Raises :class:`WriteFailed` (an ``OSError``) when anything goes wrong, with
    the old file intact and no temporary file left behind.
    """
    target = Path(path)
    if target.is_symlink():
        target = Path(os.path.realpath(target))
    folder = target.parent if str(target.parent) else Path(".")
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if target.exists():
            os.chmod(tmp, target.stat().st_mode & 0o7777)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
        tmp = None
    except OSError as e:
        raise WriteFailed(str(path), e.strerror or str(e) or type(e).__name__, e.errno) from e
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    _sync_folder(folder)
    return target


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))
