"""``cpuidkit check`` and ``cpuidkit live …``: KVM's verdict from the model, and from the real kernel."""

from __future__ import annotations

import json
import sys

from cpuidkit.analysis.lint import lint_table
from cpuidkit.cli.args import kernel_version
from cpuidkit.cli.exits import EXIT_OK, EXIT_VERDICT
from cpuidkit.core.confirmed import confirmation
from cpuidkit.core.hosts import VENDORS
from cpuidkit.core.kernels import DEFAULT_KERNEL
from cpuidkit.core.sources import dumps, load, save
from cpuidkit.core.table import diff
from cpuidkit.errors import KvmError
from cpuidkit.kvm.check import check, load_state
from cpuidkit.live import LiveVcpu, host_profile, resolve_host, supported_cpuid


def _hex(n: int | None) -> str:
    return "-" if n is None else f"{n:#x}"


def _render_text(path: str, d: dict, markdown: bool) -> str:
    lines = []
    head = f"{path}: {d['verdict'].upper()}"
    if d["errno"]:
        head += f" ({d['errno']}, rule {d['rule']})"
    lines.append(("## " if markdown else "") + head)
    lines.append(f"kernel {d['kernel']}, vendor {d['vendor']}, host {d['host']}")
    lines.append(d["confirmation"]["badge"])  # confirmed on a real kernel, or read from source only
    lines.append(d["explanation"])
    if d["source"]:
        lines.append(f"source: {d['source']}")
    dv = d["derived"]
    lines.append(
        f"derived: MAXPHYADDR {dv['maxphyaddr']}, reserved GPA bits {_hex(dv['reserved_gpa_bits'])}, "
        f"guest_supported_xcr0 {_hex(dv['guest_supported_xcr0'])}, CR4 reserved {_hex(dv['cr4_reserved_bits'])}"
    )
    owned = [f for f in d["fields"] if f["owner"] != "passthrough"]
    if owned:
        lines.append("")
        if markdown:
            lines += ["| field | value | owner | driver |", "|---|---|---|---|"]
            lines += [f"| {f['name']} | {_hex(f['value'])} | {f['owner']} | {f['driver'] or ''} |" for f in owned]
        else:
            lines.append("fields KVM or the vendor module decide (everything else passes through):")
            lines += [f"  {f['name']:<28} {_hex(f['value']):>12}  {f['owner']:<16} {f['driver'] or ''}" for f in owned]
    for e in d["state_errors"]:
        lines.append(f"state step {e['step']}: {e['errno']}: {e['explanation']}")
    for f in d.get("lint", []):
        lines.append(f"lint {f['severity']}: {f['rule']}: {f['explanation']}")
    return "\n".join(lines)


def _check(args) -> int:
    host = resolve_host(args.host)
    state = load_state(args.state) if args.state else None
    tables = [(p, load(p)) for p in args.tables]  # all inputs parsed first: bad input exits 2 before any output
    rejected = False
    for path, table in tables:
        out = check(table, kernel=args.kernel, vendor=args.vendor, host=host, state=state)
        d = out.as_dict()
        d["lint"] = [f.as_dict() for f in lint_table(table, host=host)]  # the lint beside KVM's answer, not inside it
        d["confirmation"] = confirmation(out.kernel, out.vendor).as_dict()  # has a real kernel confirmed such answers?
        d["table"] = path
        rejected |= not out.accepted
        if args.format == "json":
            sys.stdout.write(json.dumps(d) + "\n")
        else:
            print(_render_text(path, d, args.format == "markdown"))
            print()
    return EXIT_VERDICT if rejected else EXIT_OK


def _live_supported(args) -> int:
    table = supported_cpuid()
    if args.output:
        save(table, args.output)
    else:
        sys.stdout.write(dumps(table))
    return EXIT_OK


def _live_check(args) -> int:
    tables = [(p, load(p)) for p in args.tables]
    host = host_profile()
    rejected = False
    for path, table in tables:
        with LiveVcpu() as lv:
            try:
                lv.set_cpuid(table)
                live_err = None
            except KvmError as e:
                live_err = e
            live_stored = lv.get_cpuid()
            vendor = lv.vendor
        model = check(table, kernel=args.kernel or lv.kernel, vendor=vendor, host=host)
        changes = diff(model.stored, live_stored)
        agree = (live_err.errno_name if live_err else None) == model.errno
        rejected |= live_err is not None
        d = {
            "table": path,
            "kernel": {
                "verdict": "rejected" if live_err else "accepted",
                "errno": live_err.errno_name if live_err else None,
            },
            "model": {
                "verdict": model.verdict,
                "errno": model.errno,
                "rule": model.error.rule if model.error else None,
            },
            "errno_agrees": agree,
            "stored_differences": [str(c) for c in changes],
        }
        if args.format == "json":
            sys.stdout.write(json.dumps(d) + "\n")
        else:
            print(f"{path}:")
            print(f"  kernel: {d['kernel']['verdict']} {d['kernel']['errno'] or ''}")
            print(f"  model : {d['model']['verdict']} {d['model']['errno'] or ''} {d['model']['rule'] or ''}")
            print(f"  verdicts {'agree' if agree else 'DISAGREE'}; stored tables differ in {len(changes)} register(s)")
            for c in changes[:20]:
                print(f"    {c}")
    return EXIT_VERDICT if rejected else EXIT_OK


def register(sub) -> None:
    c = sub.add_parser("check", help="what KVM does with CPUID tables (the model)")
    c.add_argument("tables", nargs="+", metavar="TABLE")
    c.add_argument(
        "--kernel", type=kernel_version, default=DEFAULT_KERNEL, help=f"kernel version X.Y (default {DEFAULT_KERNEL})"
    )
    c.add_argument("--vendor", choices=VENDORS, default="vmx")
    c.add_argument("--host", default=None, help="a built-in host name, a dump file, or 'live'")
    c.add_argument(
        "--state",
        default=None,
        help="STATE.json: cr4, xcr0, xss, apic_base, misc_enable, quirks_disabled, "
        "hlt_exits_disabled, has_run, previous, xfeature_permission",
    )
    c.add_argument("--format", choices=("table", "json", "markdown"), default="table")
    c.set_defaults(func=_check)

    live = sub.add_parser("live", help="ask the real kernel through /dev/kvm")
    lsub = live.add_subparsers(dest="live_command", required=True, parser_class=sub._parser_class)
    s = lsub.add_parser("supported", help="write KVM_GET_SUPPORTED_CPUID as KVM JSON")
    s.add_argument("-o", "--output", default=None)
    s.set_defaults(func=_live_supported)
    lc = lsub.add_parser("check", help="the real kernel and the model side by side")
    lc.add_argument("tables", nargs="+", metavar="TABLE")
    lc.add_argument(
        "--kernel", type=kernel_version, default=None, help="model kernel version (default: the running kernel)"
    )
    lc.add_argument("--format", choices=("table", "json"), default="table")
    lc.set_defaults(func=_live_check)
