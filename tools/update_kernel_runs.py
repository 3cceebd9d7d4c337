"""Update data/kernel-runs.csv from bench/results.json (run from the repo root, after `make bench`).

    .venv/bin/python tools/update_kernel_runs.py [--results bench/results.json] [--dry-run]

data/kernel-runs.csv says which (kernel series, vendor module) pairs the model has been run against a
real kernel (cpuidkit.core.confirmed; every surface's "confirmed on a real kernel / read from source
only" line).  This rewrites the rows bench/results.json has figures for: each lab kernel of
``lab_agreement`` (bench/bench_lab_agreement.py) and this machine's kernel from ``agreement_*``
(bench/bench_agreement.py).  Other rows (kernels not measured in that run, the ``none`` rows saying why a
vendor module was never run) and the comment lines are kept.  Prints what changed.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import io
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cpuidkit._files import atomic_write_text  # noqa: E402
from cpuidkit.core.kernels import parse_version  # noqa: E402

CSV = ROOT / "data" / "kernel-runs.csv"
LAB_COMPARED = (
    "errno of every step; every register of the stored table; state read back (XCR0, APIC base, MISC_ENABLE, "
    "IA32_XSS, GET_CPUID2 nent, CR4 bits and XCR0 values accepted)"
)
LIVE_COMPARED = "errno of every step; the stored table"


def _row(series: str, vendor: str, backend: str, build: str, package: str, cases: int, agreed: int,
         scripted: int, scripted_agreed: int, compared: str, tool: str, today: str) -> dict:
    """One row of data/kernel-runs.csv (its columns, in order)."""
    return {
        "series": series, "vendor": vendor, "backend": backend, "build": build, "package": package, "cases": cases,
        "agreed": agreed, "scripted": scripted, "scripted_agreed": scripted_agreed, "compared": compared,
        "tool": tool, "measured": today, "note": "",
    }  # fmt: skip


def rows_from_results(results: dict, today: str) -> list[dict]:
    """The rows bench/results.json has figures for."""
    out = []
    for series, r in sorted((results.get("lab_agreement") or {}).items()):
        if not r or not r.get("cases"):
            continue
        major, minor = parse_version(r.get("kernel") or series)
        out.append(
            _row(
                f"{major}.{minor}", r.get("vendor") or "svm", "lab", f"Debian {r['package_version']}",
                f"{r['package']} (kvm_amd)", r["cases"], r["agreed"], r.get("scripted") or 0,
                r.get("scripted_agreed") or 0, LAB_COMPARED, f"bench/bench_lab_agreement.py (seed {r.get('seed', 1)})",
                today,
            )  # fmt: skip
        )
    if results.get("agreement_cases") and results.get("agreement_kernel") and results.get("agreement_vendor"):
        major, minor = parse_version(results["agreement_kernel"])
        vendor = results["agreement_vendor"]
        out.append(
            _row(
                f"{major}.{minor}", vendor, "live", results.get("agreement_release") or f"{major}.{minor}",
                f"the project machine's own kernel with its {vendor} vendor module", results["agreement_cases"],
                results["agreement_agreed"], results.get("agreement_scripted") or 0,
                results.get("agreement_scripted_agreed") or 0, LIVE_COMPARED,
                f"bench/bench_agreement.py {results['agreement_cases']}", today,
            )  # fmt: skip
        )
    return out


def merge(text: str, new_rows: list[dict]) -> tuple[str, list[str]]:
    """The CSV ``text`` with ``new_rows`` replacing the rows of the same (series, vendor, backend); what changed."""
    lines = text.splitlines(keepends=True)
    comments = [ln for ln in lines if ln.lstrip().startswith("#")]
    body = [ln for ln in lines if not ln.lstrip().startswith("#")]
    reader = csv.DictReader(io.StringIO("".join(body)))
    fields = list(reader.fieldnames or [])
    rows = list(reader)
    changes = []
    for new in new_rows:
        key = (new["series"], new["vendor"], new["backend"])
        new = {k: str(v) for k, v in new.items()}
        at = next((i for i, r in enumerate(rows) if (r["series"], r["vendor"], r["backend"]) == key), None)
        if at is None:
            # a new pair goes before the "none" rows
            at_none = next((i for i, r in enumerate(rows) if r["backend"] == "none"), len(rows))
            rows.insert(at_none, new)
            changes.append(f"added {key[0]}/{key[1]} ({key[2]}): {new['build']}, {new['agreed']}/{new['cases']}")
        elif {k: rows[at].get(k, "") for k in fields if k != "measured"} != {
            k: new.get(k, "") for k in fields if k != "measured"
        }:
            changes.append(
                f"updated {key[0]}/{key[1]} ({key[2]}): {rows[at]['build']} {rows[at]['agreed']}/{rows[at]['cases']} -> "
                f"{new['build']} {new['agreed']}/{new['cases']}"
            )
            rows[at] = new
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    w.writerows({k: r.get(k, "") for k in fields} for r in rows)
    return "".join(comments) + buf.getvalue(), changes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", default=str(ROOT / "bench" / "results.json"))
    p.add_argument("--dry-run", action="store_true", help="print what would change, write nothing")
    args = p.parse_args(argv)
    path = Path(args.results)
    if not path.exists():
        print(f"{path.name} does not exist: run `make bench` (or bench/run_all.py --only lab_agreement,agreement)")
        return 2
    results = json.loads(path.read_text(encoding="utf-8"))
    new_rows = rows_from_results(results, datetime.date.today().isoformat())
    if not new_rows:
        print(f"{path.name} has no agreement figures (lab_agreement, agreement_*): nothing to update")
        return 0
    text, changes = merge(CSV.read_text(encoding="utf-8"), new_rows)
    for c in changes or ["no change"]:
        print(c)
    if changes and not args.dry_run:
        atomic_write_text(CSV, text)
        print(f"wrote {CSV.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
