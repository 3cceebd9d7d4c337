"""Regenerate docs/examples/: reviews of the Firecracker fingerprints on libvirt hosts of the same CPU family.

Each of the 18 fingerprints (tests/data/cpuid-dumps/firecracker, recorded by Firecracker on host kernels
5.10, 6.1 and 6.18) is reviewed as a template on a libvirt cputestdata dump of its CPU family
(tests/data/cpuid-dumps/libvirt), with the fingerprint's own host kernel as --kernel:

    .venv/bin/python tools/make_examples.py [--data DIR] [--out DIR]

Writes one Markdown review per fingerprint, one HTML review, the fleet matrix of the libvirt dumps as text,
and README.md (an index).  The output depends on nothing but the inputs (no dates, no paths), so
tests/test_review.py regenerates it into a temporary folder and compares.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cpuidkit._files import atomic_write_text  # noqa: E402
from cpuidkit.analysis.fleet import common_baseline, fleet, load_hosts  # noqa: E402
from cpuidkit.analysis.review import render_html, render_markdown, review  # noqa: E402
from cpuidkit.cli.review import _fleet_text  # noqa: E402
from cpuidkit.core.hosts import HostProfile  # noqa: E402
from cpuidkit.core.kernels import parse_version  # noqa: E402
from cpuidkit.core.sources import load  # noqa: E402

# Firecracker's CPU family name → the libvirt dump of a CPU of that family
FAMILY_HOSTS = {
    "INTEL_CASCADELAKE": "x86_64-cpuid-Xeon-Platinum-8268.xml",
    "INTEL_ICELAKE": "x86_64-cpuid-Ice-Lake-Server.xml",
    "INTEL_SAPPHIRE_RAPIDS": "x86_64-cpuid-Xeon-w7-3465X.xml",
    "INTEL_GRANITE_RAPIDS": "x86_64-cpuid-Xeon-6788P.xml",
    "AMD_MILAN": "x86_64-cpuid-EPYC-7713-64-Core.xml",
    "AMD_GENOA": "x86_64-cpuid-EPYC-9334-32-Core.xml",
}
HTML_EXAMPLE = "fingerprint_INTEL_SAPPHIRE_RAPIDS_6.18host.json"


def family_of(name: str) -> str:
    for fam in sorted(FAMILY_HOSTS, key=len, reverse=True):
        if f"_{fam}_" in f"_{name}":
            return fam
    raise SystemExit(f"no host family for {name}")


def fingerprint_kernel(path: Path) -> str:
    doc = json.loads(path.read_text(encoding="utf-8"))
    major, minor = parse_version(doc["kernel_version"])
    return f"{major}.{minor}"


def example_name(fp: Path, host_file: str) -> str:
    host = host_file.removeprefix("x86_64-cpuid-").removesuffix(".xml")
    return f"{fp.stem}-on-{host}"


def generate(data: Path, out: Path) -> list[Path]:
    dumps = data / "cpuid-dumps"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    index = [
        "# Example reviews",
        "",
        "`cpuidkit review` of the 18 Firecracker CPU fingerprints (recorded by Firecracker on host kernels "
        "5.10, 6.1 and 6.18, so each is what KVM_GET_SUPPORTED_CPUID offered there, after Firecracker's own "
        "normalisation) used as templates on libvirt test dumps of a CPU of the same family, with the "
        "fingerprint's own kernel. Regenerate with `.venv/bin/python tools/make_examples.py`; "
        "`tests/test_review.py` checks these files are up to date. See `docs/review.md` for how to read them.",
        "",
        "| template | host | kernel | KVM | runtime-owned fields set | beyond KVM here | lint (illegal/insane/info) "
        "| migrate blockers |",
        "|---|---|---|---|---|---|---|---|",
    ]
    hosts = {}
    for fp in sorted((dumps / "firecracker").glob("*.json")):
        host_file = FAMILY_HOSTS[family_of(fp.stem)]
        if host_file not in hosts:
            hosts[host_file] = HostProfile.from_file(dumps / "libvirt" / host_file)
        kernel = fingerprint_kernel(fp)
        r = review(load(fp), hosts[host_file], kernel=kernel, template_name=fp.name)
        name = example_name(fp, host_file)
        md = out / f"{name}.md"
        atomic_write_text(md, render_markdown(r))
        written.append(md)
        if fp.name == HTML_EXAMPLE:
            page = out / f"{name}.html"
            atomic_write_text(page, render_html(r))
            written.append(page)
        d = r.data
        lint = d["lint"]
        blockers = sorted({f["rule"] for f in d["migration"]["findings"] if f["severity"] == "blocker"})
        index.append(
            f"| [{fp.stem}]({name}.md) | {hosts[host_file].name.removeprefix('x86_64-cpuid-')} | {kernel} "
            f"| {d['verdict']}{' ' + d['errno'] if d['errno'] else ''} "
            f"| {sum(1 for x in d['runtime_fields'] if x['template'] != x['stored'])} of "
            f"{len(d['runtime_fields'])} differ from what KVM stores "
            f"| {', '.join(d['beyond']) or '-'} | {lint['illegal']}/{lint['insane']}/{lint['info']} "
            f"| {', '.join(blockers) or '-'} |"
        )
    index += [
        "",
        f"One review is also rendered as HTML with its figures: [{example_name(Path(HTML_EXAMPLE), FAMILY_HOSTS['INTEL_SAPPHIRE_RAPIDS'])}.html]"
        f"({example_name(Path(HTML_EXAMPLE), FAMILY_HOSTS['INTEL_SAPPHIRE_RAPIDS'])}.html).",
        "",
        "[fleet-libvirt.txt](fleet-libvirt.txt) is `cpuidkit fleet` over the 28 libvirt dumps (kernel 6.18).",
        "",
    ]
    pool = load_hosts(dumps / "libvirt")
    f = fleet(pool, kernel="6.18")
    b = common_baseline(pool, kernel="6.18")
    txt = out / "fleet-libvirt.txt"
    atomic_write_text(txt, _fleet_text(f, b))
    written.append(txt)
    readme = out / "README.md"
    atomic_write_text(readme, "\n".join(index))
    written.append(readme)
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data",
        type=Path,
        default=ROOT / "tests" / "data",
        help="the folder holding cpuid-dumps/ (default: tests/data)",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "examples")
    args = ap.parse_args(argv)
    for p in generate(args.data, args.out):
        print(p.relative_to(args.out.parent) if args.out.parent in p.parents else p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
