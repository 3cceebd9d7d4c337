"""Fill the owner column of data/fields.csv by experiment on the model (run from the repo root).

Each field is classified by ``cpuidkit.kvm.ownership.classify_field`` for the
reference configuration (upstream 6.18, vmx, the sapphire-rapids host):
runtime / checked / derived / passthrough.  tests/test_ownership.py checks the
column still matches.  Re-run after changing the model or the catalog:
    python tools/fill_owner_column.py
"""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cpuidkit._files import atomic_write_text  # noqa: E402

from cpuidkit.core.catalog import catalog  # noqa: E402
from cpuidkit.kvm.ownership import classify_field  # noqa: E402


def main() -> None:
    path = ROOT / "data" / "fields.csv"
    lines = path.read_text().splitlines(keepends=True)
    comments = [ln for ln in lines if ln.lstrip().startswith("#")]
    body = [ln for ln in lines if not ln.lstrip().startswith("#")]
    rows = list(csv.DictReader(io.StringIO("".join(body))))
    owners = [classify_field(f) for f in catalog()]
    assert len(owners) == len(rows)
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    for row, owner in zip(rows, owners):
        row["owner"] = owner
        w.writerow(row)
    atomic_write_text(path, "".join(comments) + out.getvalue())
    from collections import Counter

    print(Counter(owners))


if __name__ == "__main__":
    main()
