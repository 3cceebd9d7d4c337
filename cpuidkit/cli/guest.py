"""``cpuidkit xcr0``, ``cpuidkit migrate``, ``cpuidkit xsave`` and ``cpuidkit maxphyaddr``: what the guest meets.

Exit codes as everywhere: 0 success, 1 "the answer is no" (a value KVM
refuses, a migration blocker), 2 bad input.
"""

from __future__ import annotations

import json
import sys

from cpuidkit._files import display_name, path_exists, read_input_text
from cpuidkit.analysis.addressing import (
    classify,
    host_has_five_level_tdp,
    layout_from_dicts,
    paging_reserved_bits,
    parse_layout_spec,
)
from cpuidkit.analysis.migrate import migrate
from cpuidkit.cli.args import kernel_version
from cpuidkit.cli.exits import EXIT_OK, EXIT_VERDICT
from cpuidkit.core.hosts import VENDORS, builtin_hosts
from cpuidkit.core.kernels import DEFAULT_KERNEL
from cpuidkit.core.sources import load
from cpuidkit.core.sources._common import load_json
from cpuidkit.core.table import CpuidTable
from cpuidkit.core.xsave import (
    XFEATURE_MASK_XTILE_DATA,
    area_sizes,
    compacted_layout,
    component_table,
    components_of,
    mask_names,
    parse_bits,
    parse_value,
    standard_layout,
    supported_xcr0,
    supported_xss,
)
from cpuidkit.errors import InputError, KvmError, LookupFailed
from cpuidkit.kvm.vcpu import SimulatedVcpu
from cpuidkit.kvm.xcr import accept_set, evaluate_xcr0, values_over
from cpuidkit.live import host_profile, resolve_host


def _hex(n) -> str:
    return "-" if n is None else f"{n:#x}"


def _parse_ptes(text: str) -> list[int]:
    """``--pte 0x8000000000000067,0x67``: page-table entries as numbers."""
    out = []
    for part in text.split(","):
        try:
            value = int(part.strip(), 0)
        except ValueError:
            raise InputError(
                f"--pte takes comma-separated numbers like 0x8000000000000067, got {part.strip()!r}"
            ) from None
        if not 0 <= value < 1 << 64:
            raise InputError(f"--pte {part.strip()} does not fit in 64 bits")
        out.append(value)
    return out


def load_guest_table(spec: str):
    """A guest table: a dump file in any importable format, a built-in host's name (its own CPUID), or ``live``
    (this machine's CPUID, as the CPUID instruction reports it)."""

    if path_exists(spec):
        return load(spec), spec
    hosts = builtin_hosts()
    if spec in hosts:
        return CpuidTable(hosts[spec].cpuid, source=f"built-in host {spec}"), spec
    if spec == "live":
        return CpuidTable(host_profile().cpuid, source="this machine's CPUID"), spec
    raise LookupFailed(f"{spec!r} is neither a file, a built-in host ({', '.join(sorted(hosts))}), nor 'live'")


def build_xcr0_vcpu(
    table, *, host=None, kernel: str = DEFAULT_KERNEL, vendor: str | None = None, permission: bool = True
):
    """A simulated vCPU holding ``table``, as a VMM would set it up (dynamic-feature permission asked first)."""

    h = resolve_host(host)
    v = SimulatedVcpu(kernel=kernel, vendor=h.vendor_for(vendor), host=h)
    if permission and supported_xcr0(table) & XFEATURE_MASK_XTILE_DATA:
        try:
            v.grant_xfeature_permission(XFEATURE_MASK_XTILE_DATA)
        except KvmError:
            pass  # the host cannot grant it: KVM_SET_CPUID2 will say EPERM
    v.set_cpuid(table)
    return v


# -- xcr0 ---------------------------------------------------------------------------------------


def _xcr0(args) -> int:
    values = [parse_value(v) for v in args.values]
    over = parse_bits(args.over) if args.over else None
    if not values and over is None and not args.accept_set:
        raise InputError("give XCR0 values, --over BITS, or --accept-set")
    if over is not None and bin(over).count("1") > 20:
        raise InputError("--over may name at most 20 bits (2^20 values)")
    table, name = load_guest_table(args.table)
    v = build_xcr0_vcpu(
        table, host=args.host, kernel=args.kernel, vendor=args.vendor, permission=not args.no_xfeature_permission
    )
    head = {
        "table": name,
        "host": v.host.name,
        "kernel": v.kernel,
        "vendor": v.vendor,
        "guest_supported_xcr0": v.derived.guest_supported_xcr0,
    }
    if args.accept_set:
        acc = accept_set(v, over)
        doc = dict(
            head,
            over=over if over is not None else v.derived.guest_supported_xcr0 | 1,
            evaluated=1 << bin(over if over is not None else v.derived.guest_supported_xcr0 | 1).count("1"),
            count=len(acc),
            accept_set=acc,
        )
        if args.format == "json":
            sys.stdout.write(json.dumps(doc) + "\n")
        else:
            print(
                f"{name}: kernel {v.kernel}, vendor {v.vendor}, host {v.host.name}, "
                f"guest_supported_xcr0 {v.derived.guest_supported_xcr0:#x}"
            )
            print(
                f"{len(acc)} of {doc['evaluated']} values over {doc['over']:#x} are accepted "
                "(KVM_SET_XCRS, and XSETBV at CPL 0 with CR4.OSXSAVE=1):"
            )
            for x in acc:
                print(f"  {x:#x}")
        return EXIT_OK
    todo = values + (values_over(over) if over is not None else [])
    refused = False
    rows = []
    for x in todo:
        d = evaluate_xcr0(v, x, cr4_osxsave=bool(args.cr4_osxsave), cpl=args.cpl, index=args.xcr_index)
        rows.append(d)
        if x in values and (d["set_xcrs"] != "ok" or d["xsetbv"] != "ok"):
            refused = True
    if args.format == "json":
        out = sys.stdout
        for d in rows:
            out.write(json.dumps(dict(d, table=name, host=v.host.name, kernel=v.kernel, vendor=v.vendor)) + "\n")
    else:
        print(
            f"{name}: kernel {v.kernel}, vendor {v.vendor}, host {v.host.name}, "
            f"guest_supported_xcr0 {v.derived.guest_supported_xcr0:#x}; XSETBV with CR4.OSXSAVE={args.cr4_osxsave}, "
            f"CPL {args.cpl}, ECX {args.xcr_index}"
        )
        print(f"{'value':>10}  {'XSETBV':<6} {'SET_XCRS':<8} {'standard':>8} {'compacted':>9}  why")
        for d in rows:
            why = d["explanation"] if d["rule"] else ", ".join(d["components"])
            print(
                f"{d['value']:#10x}  {d['xsetbv']:<6} {d['set_xcrs']:<8} {d['standard_size']:>8} "
                f"{d['compacted_size']:>9}  {why}"
            )
    return EXIT_VERDICT if refused else EXIT_OK


# -- migrate ------------------------------------------------------------------------------------


def _migrate(args) -> int:
    table, name = load_guest_table(args.guest)
    dest = resolve_host(args.to)
    src = resolve_host(args.source) if args.source else None
    report = migrate(
        table,
        dest,
        source=src,
        kernel=args.kernel,
        vendor=args.vendor,
        guest_xcr0=parse_value(args.xcr0) if args.xcr0 else None,
        guest_name=name,
    )
    d = report.as_dict()
    if args.format == "json":
        sys.stdout.write(json.dumps(d) + "\n")
    else:
        print(
            f"{d['guest']} -> {d['destination']} (kernel {d['kernel']}, vendor {d['vendor']}): {d['verdict'].upper()}"
        )
        for f in d["findings"]:
            print(f"  [{f['severity']}] {f['rule']}: {f['explanation']}")
            if f["fields"]:
                print(f"      fields: {', '.join(f['fields'])}")
    return EXIT_VERDICT if report.blockers else EXIT_OK


# -- xsave --------------------------------------------------------------------------------------


def _xsave(args) -> int:
    table, name = load_guest_table(args.cpu)
    comps = components_of(table)
    xcr0 = parse_bits(args.xcr0) if args.xcr0 else supported_xcr0(table)
    xss = parse_bits(args.xss) if args.xss else 0
    e0 = table.get(0xD, 0)
    sizes = area_sizes(comps, xcr0, xss)
    info = component_table()
    rows = []
    for bit in sorted(
        set(comps) | set(b for b in range(64) if (supported_xcr0(table) | supported_xss(table)) >> b & 1)
    ):
        c = comps.get(bit)
        ref = info.get(bit)
        rows.append(
            {
                "bit": bit,
                "name": mask_names(1 << bit)[0],
                "kind": ref.kind if ref else ("supervisor" if c and c.supervisor else "user"),
                "size": c.size if c else None,
                "offset": c.offset if c else None,
                "align64": c.aligned64 if c else None,
                "xfd": c.xfd if c else None,
                "table_size": ref.size if ref else None,
                "table_offset_intel": ref.std_offset if ref else None,
                "group": ref.group if ref else None,
            }
        )
    doc = {
        "cpu": name,
        "vendor": table.vendor,
        "xcr0": xcr0,
        "xss": xss,
        "components": rows,
        "sizes": sizes.as_dict(),
        "reported_max_standard_size": None if e0 is None else e0.ecx,
        "standard_layout": standard_layout(comps, xcr0),
        "compacted_layout": compacted_layout(comps, xcr0 | xss),
    }
    if args.format == "json":
        sys.stdout.write(json.dumps(doc) + "\n")
        return EXIT_OK
    print(f"{name} ({table.vendor or '?'}): XCR0 {xcr0:#x} ({', '.join(mask_names(xcr0))}), XSS {xss:#x}")
    print(
        f"{'bit':>3} {'name':<18} {'kind':<10} {'size':>6} {'offset':>6} {'a64':>3} {'xfd':>3}  "
        f"{'table size':>10} {'Intel off':>9}"
    )
    for r in rows:
        print(
            f"{r['bit']:>3} {r['name']:<18} {r['kind']:<10} {_n(r['size']):>6} {_n(r['offset']):>6} "
            f"{_yn(r['align64']):>3} {_yn(r['xfd']):>3}  {_n(r['table_size']):>10} {_n(r['table_offset_intel']):>9}"
        )
    print(
        f"standard size {sizes.standard} (0xD.0 ECX reports {doc['reported_max_standard_size']} for all of "
        f"0xD.0), compacted {sizes.compacted} ({sizes.compacted_unaligned} without 64-byte alignment)"
    )
    return EXIT_OK


def _n(v) -> str:
    return "-" if v is None else str(v)


def _yn(v) -> str:
    return "-" if v is None else ("y" if v else "n")


# -- maxphyaddr ------------------------------------------------------------------------------------


def _maxphyaddr(args) -> int:

    host_bits = None
    five = None
    tdp = not args.no_tdp
    if args.host.isdigit():
        host_bits = int(args.host)
    else:
        h = resolve_host(args.host)
        host_bits = h.maxphyaddr

        five = host_has_five_level_tdp(h)
    layout = []
    if args.layout:
        if path_exists(args.layout):
            layout = layout_from_dicts(load_json(read_input_text(args.layout), display_name(args.layout)))
        else:
            layout = parse_layout_spec(args.layout)
    ptes = _parse_ptes(args.pte) if args.pte else []
    res = classify(
        args.guest_bits,
        host_bits,
        args.mode,
        layout,
        ptes,
        tdp=tdp,
        vendor=args.vendor,
        allow_smaller_maxphyaddr=args.allow_smaller_maxphyaddr,
        five_level_tdp=five,
        kernel=args.kernel,
    )
    masks = paging_reserved_bits(args.guest_bits, args.mode)
    if args.format == "json":
        sys.stdout.write(
            json.dumps(
                {
                    "guest_bits": args.guest_bits,
                    "host_bits": host_bits,
                    "mode": args.mode,
                    "tdp": tdp,
                    "vendor": args.vendor,
                    "reserved_bits": {k: v for k, v in masks.items()},
                    "accesses": [a.as_dict() for a in res],
                }
            )
            + "\n"
        )
        return EXIT_OK
    print(
        f"guest MAXPHYADDR {args.guest_bits}, host {host_bits}, {args.mode} paging, "
        f"{'TDP' if tdp and args.vendor != 'pvm' else 'shadow paging'}, {args.vendor}"
    )
    print("guest paging-structure reserved bits:")
    for k, v in masks.items():
        print(f"  {k:<38} {v:#018x}")
    for a in res:
        where = f"[{a.start:#x}, {a.end:#x})" if a.start is not None else ""
        print(
            f"  {a.target:<28} {where:<36} {a.outcome:<22} {'' if a.faithful else '(not as on hardware) '}"
            f"{a.explanation}"
        )
    return EXIT_OK


def register(sub) -> None:
    x = sub.add_parser("xcr0", help="XCR0 values: what guest XSETBV and KVM_SET_XCRS do, and the XSAVE sizes")
    x.add_argument("values", nargs="*", metavar="VALUE", help="XCR0 values (0x7, 7, 0b111)")
    x.add_argument("--table", required=True, help="the guest's CPUID: a dump file or a built-in host name")
    x.add_argument(
        "--host", default=None, help="a built-in host name, a dump file, or 'live' (default sapphire-rapids)"
    )
    x.add_argument(
        "--kernel", type=kernel_version, default=DEFAULT_KERNEL, help=f"kernel version X.Y (default {DEFAULT_KERNEL})"
    )
    x.add_argument(
        "--vendor",
        choices=VENDORS,
        default=None,
        help="vendor module (default: the live host's, else vmx for Intel and svm for AMD hosts)",
    )
    x.add_argument("--format", choices=("table", "json"), default="table")
    x.add_argument(
        "--accept-set",
        action="store_true",
        help="list every value KVM accepts (over guest_supported_xcr0|FP, or over --over BITS)",
    )
    x.add_argument(
        "--over",
        default=None,
        metavar="BITS",
        help="also evaluate every value over these bits, e.g. 0-9,17,18 (at most 20 bits)",
    )
    x.add_argument(
        "--cr4-osxsave", type=int, choices=(0, 1), default=1, help="guest CR4.OSXSAVE for XSETBV (default 1)"
    )
    x.add_argument("--cpl", type=int, choices=(0, 1, 2, 3), default=0, help="guest CPL for XSETBV (default 0)")
    x.add_argument("--xcr-index", type=int, default=0, help="ECX for XSETBV (default 0 = XCR0)")
    x.add_argument(
        "--no-xfeature-permission",
        action="store_true",
        help="do not request AMX permission before KVM_SET_CPUID2 (then bit 18 in 0xD.0 gives EPERM)",
    )
    x.set_defaults(func=_xcr0)

    m = sub.add_parser("migrate", help="can a guest with this CPUID move to that host? findings with severities")
    m.add_argument("guest", metavar="GUEST", help="the guest's CPUID: a dump file or a built-in host name")
    m.add_argument(
        "--to", required=True, metavar="HOST", help="destination: a built-in host name, a dump file or 'live'"
    )
    m.add_argument(
        "--from",
        dest="source",
        default=None,
        metavar="HOST",
        help="source host (limits the guest's XCR0 to what KVM offered there)",
    )
    m.add_argument(
        "--kernel",
        type=kernel_version,
        default=DEFAULT_KERNEL,
        help=f"destination kernel X.Y (default {DEFAULT_KERNEL})",
    )
    m.add_argument("--vendor", choices=VENDORS, default=None, help="destination vendor module (default from the host)")
    m.add_argument("--xcr0", default=None, help="the XCR0 the guest runs with (default: all it is offered)")
    m.add_argument("--format", choices=("table", "json"), default="table")
    m.set_defaults(func=_migrate)

    s = sub.add_parser("xsave", help="a CPU's XSAVE components and area sizes")
    s.add_argument("cpu", metavar="CPU", help="a dump file or a built-in host name")
    s.add_argument("--xcr0", default=None, help="mask (0x602e7, or bits/names like 0-2,pkru); default: 0xD.0's")
    s.add_argument("--xss", default=None, help="IA32_XSS mask for the compacted size (default 0)")
    s.add_argument("--format", choices=("table", "json"), default="table")
    s.set_defaults(func=_xsave)

    p = sub.add_parser("maxphyaddr", help="guest vs host physical width: which accesses work, fault or slip through")
    p.add_argument("--guest-bits", type=int, required=True, help="the guest's MAXPHYADDR (CPUID 0x80000008.EAX[7:0])")
    p.add_argument("--host", required=True, help="host MAXPHYADDR (a number) or a host (built-in name, file, live)")
    p.add_argument("--mode", choices=("4-level", "5-level", "pae"), default="4-level")
    p.add_argument(
        "--layout",
        default=None,
        help="LAYOUT.json ([{name,start,size,kind,memslot}]) or NAME:KIND:START:SIZE,... (kind ram|bar64|hole)",
    )
    p.add_argument("--pte", default=None, help="address bits to test in a guest PTE, e.g. 40,46,47,51")
    p.add_argument("--vendor", choices=VENDORS, default="vmx")
    p.add_argument("--no-tdp", action="store_true", help="shadow paging instead of EPT/NPT")
    p.add_argument("--allow-smaller-maxphyaddr", action="store_true", help="kvm_intel.allow_smaller_maxphyaddr=1")
    p.add_argument("--kernel", type=kernel_version, default=DEFAULT_KERNEL)
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=_maxphyaddr)
