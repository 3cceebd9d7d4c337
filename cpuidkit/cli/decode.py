"""``cpuidkit decode``: a CPUID dump, field by field."""

from __future__ import annotations

import json
import sys

from cpuidkit.cli.exits import EXIT_OK
from cpuidkit.core.catalog import catalog, qemu_name
from cpuidkit.core.sources import load


def _decode(args) -> int:
    table = load(args.file, cpu=args.cpu, format=args.input_format)
    cat = catalog()
    values = cat.decode(table)
    strings = cat.strings(table)
    if args.format == "json":
        doc = {
            "source": args.file,
            "vendor": table.vendor,
            "strings": strings,
            "entries": table.as_dicts(),
            "features": cat.features(table),
            "fields": [
                {
                    "leaf": fv.field.leaf,
                    "subleaf": fv.subleaf,
                    "register": fv.field.register,
                    "bits": fv.field.bits,
                    "name": fv.field.name,
                    "qemu": qemu_name(fv.field, fv.subleaf),
                    "value": fv.value,
                }
                for fv in values
            ],
        }
        json.dump(doc, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return EXIT_OK
    out = [f"{args.file}: {len(table)} entries, vendor {table.vendor or '?'}"]
    out.append(f"{'leaf':>10} {'sub':>4} {'flags':>5}  {'eax':>10} {'ebx':>10} {'ecx':>10} {'edx':>10}")
    for e in table:
        out.append(
            f"{e.function:#10x} {e.index:>4} {e.flags:>5}  {e.eax:#010x} {e.ebx:#010x} {e.ecx:#010x} {e.edx:#010x}"
        )
    out.append("")
    if strings:
        out.append("strings:")
        # JSON quoting shows the exact text: leading and trailing blanks, and any control byte escaped
        out += [f"  {name:<18} {json.dumps(text)}" for name, text in strings.items()]
        out.append("")
    out.append("fields:")
    # for people: subleaf by subleaf (each cache, each topology level together), catalog order within one
    for fv in sorted(values, key=lambda fv: (fv.field.leaf, fv.subleaf)):
        f = fv.field
        if f.is_flag and not fv.value:
            continue
        val = "yes" if f.is_flag else f"{fv.value:#x}"
        out.append(f"  {f.leaf:#x}.{fv.subleaf}.{f.register}[{f.bits}]".ljust(34) + f"{f.name:<28} {val}")
    out.append("")
    out.append("features: " + " ".join(cat.features(table)))
    print("\n".join(out))
    return EXIT_OK


def register(sub) -> None:
    d = sub.add_parser(
        "decode", help="decode a CPUID dump (KVM JSON, cpuid -r, libvirt XML, Firecracker, libcpuid, /proc/cpuinfo)"
    )
    d.add_argument("file")
    d.add_argument("--cpu", type=int, default=None, help="which CPU of a multi-CPU dump (default: the first)")
    d.add_argument("--format", choices=("table", "json"), default="table")
    d.add_argument("--input-format", default=None, help="skip detection (kvm-json, cpuid-raw, libvirt-xml, …)")
    d.set_defaults(func=_decode)
