"""Where the data tables live: ``data/`` in a checkout, ``cpuidkit/_data`` in a wheel."""

from __future__ import annotations

import csv
import functools
import io
from pathlib import Path

from ._errors import InputError

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
