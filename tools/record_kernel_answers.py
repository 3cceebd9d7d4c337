"""Regenerate data/kernel-answers.json: real kernels' answers to the questions notebook 08 asks (run from the repo root).

    .venv/bin/python tools/record_kernel_answers.py [--series 6.1,6.12] [--cpu EPYC-Rome] [--no-live]
    make kernel-answers
    make kernels        # --fetch-only: fetch, unpack and prepare the lab kernels, boot nothing

Boots each lab kernel (cpuidkit.lab: Debian's newest 6.1 / 6.12 package, fetched by apt into the lab's
cache on first use) and asks it every question of cpuidkit.analysis.kernel_answers.QUESTIONS, then asks
this machine's /dev/kvm.  Each record names the exact kernel (Debian package and version, or uname -r)
and keeps the host its KVM ran on, so the model's answer can be computed again without QEMU.  A kernel
that cannot be asked here (no QEMU, no /dev/kvm) keeps its old record.  Prints, per kernel, whether the
model agrees with the answers just recorded (it writes them either way: the recording is the kernel's).
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cpuidkit.analysis.kernel_answers import (  # noqa: E402
    QUESTIONS,
    RECORD_FILE,
    KernelRecord,
    ask_lab,
    ask_live,
    differences,
    load_records,
    save_records,
)
from cpuidkit.errors import CpuidkitError  # noqa: E402


def _report(r: KernelRecord) -> None:
    for q in QUESTIONS.values():
        diff = differences(r.model_answer(q), r.answers[q.name], r.masks())
        print(f"  {q.name:<14} model {'agrees' if not diff else 'DISAGREES: ' + '; '.join(diff[:3])}")


def fetch(series_list: list[str]) -> int:
    """``make kernels``: each lab kernel in the cache (apt-get download on first use) with its initramfs."""
    from cpuidkit.lab import LabUnavailable, cache_root, ensure_kernel, missing_requirements
    from cpuidkit.lab.initramfs import ensure_initramfs
    from cpuidkit.lab.kernels import _locked

    missing = missing_requirements()
    if missing:
        print("the kernel lab cannot run here: " + "; ".join(missing))
        return 2
    for series in series_list:
        t = time.monotonic()
        try:
            build = ensure_kernel(series, log=print)
            with _locked(cache_root()):
                ensure_initramfs(build)
        except LabUnavailable as e:
            print(f"{series}: {e}")
            return 2
        print(
            f"{series}: {build.package} {build.version} ready ({time.monotonic() - t:.1f} s) in {build.directory.parent}"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--series", default="6.1,6.12", help="lab kernels to boot (comma-separated X.Y)")
    p.add_argument("--cpu", default=None, help="QEMU CPU model (default: the lab's)")
    p.add_argument("--no-live", action="store_true", help="do not ask this machine's /dev/kvm")
    p.add_argument("-o", "--output", default=str(ROOT / "data" / RECORD_FILE))
    p.add_argument("--fetch-only", action="store_true", help="fetch and prepare the lab kernels; boot nothing")
    args = p.parse_args(argv)
    from cpuidkit.lab import KernelLab

    series_list = [s.strip() for s in args.series.split(",") if s.strip()]
    if args.fetch_only:
        return fetch(series_list)

    out = Path(args.output)
    old = {(r.series, r.vendor, r.backend): r for r in (load_records(out) if out.exists() else [])}
    new: dict = {}
    for series in series_list:
        t = time.monotonic()
        try:
            kw = {"cpu": args.cpu} if args.cpu else {}
            with KernelLab(series, log=print, **kw) as lab:
                print(f"{lab.label}: booted in {lab.boot_seconds:.1f} s")
                r = ask_lab(lab)
        except CpuidkitError as e:
            print(f"lab {series}: not asked ({e}); keeping the old record if there is one")
            continue
        print(f"{r.label} {r.build}: asked in {time.monotonic() - t:.1f} s")
        _report(r)
        new[(r.series, r.vendor, r.backend)] = r
    if not args.no_live:
        try:
            r = ask_live()
        except CpuidkitError as e:
            print(f"live: not asked ({e}); keeping the old record if there is one")
        else:
            print(f"{r.label} {r.build} (live)")
            _report(r)
            new[(r.series, r.vendor, r.backend)] = r
    records = {**old, **new}
    if not records:
        print("nothing to write")
        return 1
    ordered = sorted(records.values(), key=lambda r: (r.backend != "lab", [int(x) for x in r.series.split(".")]))
    save_records(ordered, out, datetime.date.today().isoformat())  # records kept from the old file keep their date
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
