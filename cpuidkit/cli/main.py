"""The ``cpuidkit`` command.

Exit codes: 0 success, 1 "the answer is no" (a rejection, a finding), 2 bad
input or usage (one line on stderr, never a traceback).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence

from cpuidkit.core.catalog import catalog
from cpuidkit.core.sources import load
from cpuidkit.errors import CpuidkitError, KvmError, KvmUnavailable

EXIT_OK, EXIT_NO, EXIT_BAD_INPUT = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse exits 2 too; keep its one-line style
        self.print_usage(sys.stderr)
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def _decode(args) -> int:
    table = load(args.file, cpu=args.cpu, format=args.input_format)
    cat = catalog()
    values = cat.decode(table)
    if args.format == "json":
        doc = {
            "source": args.file,
            "vendor": table.vendor,
            "entries": table.as_dicts(),
            "features": cat.features(table),
            "fields": [
                {
                    "leaf": fv.field.leaf,
                    "subleaf": fv.subleaf,
                    "register": fv.field.register,
                    "bits": fv.field.bits,
                    "name": fv.field.name,
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
    out.append("fields:")
    for fv in values:
        f = fv.field
        if f.is_flag and not fv.value:
            continue
        val = "yes" if f.is_flag else f"{fv.value:#x}"
        out.append(f"  {f.leaf:#x}.{fv.subleaf}.{f.register}[{f.bits}]".ljust(34) + f"{f.name:<28} {val}")
    out.append("")
    out.append("features: " + " ".join(cat.features(table)))
    print("\n".join(out))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="cpuidkit", description="Make Linux KVM's CPUID contract visible.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    d = sub.add_parser(
        "decode", help="decode a CPUID dump (KVM JSON, cpuid -r, libvirt XML, Firecracker, libcpuid, /proc/cpuinfo)"
    )
    d.add_argument("file")
    d.add_argument("--cpu", type=int, default=None, help="which CPU of a multi-CPU dump (default: the first)")
    d.add_argument("--format", choices=("table", "json"), default="table")
    d.add_argument("--input-format", default=None, help="skip detection (kvm-json, cpuid-raw, libvirt-xml, …)")
    d.set_defaults(func=_decode)

    _register_more(sub)
    return p


# Modules that add subcommands: each has ``register(subparsers)`` and is imported only to build the parser.
SUBCOMMAND_MODULES = (
    "cpuidkit.cli.check",  # check, live
    "cpuidkit.cli.guest",  # xcr0, migrate
    "cpuidkit.cli.lint",  # lint
    "cpuidkit.cli.review",  # review, fleet
)


def _register_more(sub) -> None:
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:
                continue  # not there yet
            raise
        module.register(sub)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CpuidkitError as e:
        print(f"cpuidkit {args.command}: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT if not _is_kvm_refusal(e) else EXIT_NO
    except BrokenPipeError:
        return EXIT_OK
    except KeyboardInterrupt:
        print("cpuidkit: interrupted", file=sys.stderr)
        return 130


def _is_kvm_refusal(e: Exception) -> bool:
    return isinstance(e, KvmError) and not isinstance(e, KvmUnavailable)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
