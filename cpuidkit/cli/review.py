"""``cpuidkit review`` (one template on one host, as a report) and ``cpuidkit fleet`` (a pool's migration matrix).

Exit codes: 0 when the report was written (for a CPU template: and the template can run as given), 1 when a
template cannot (its VMM refuses to start, a bit it forces to 1 is not backed by the host, or KVM rejects the
table), 2 on bad input.
"""

from __future__ import annotations

import html
import json
import os
import sys
import time
from pathlib import Path

from cpuidkit._files import atomic_write_text
from cpuidkit.analysis.figures import plot_matrix, plot_template_fleet, png_base64
from cpuidkit.analysis.fleet import Progress, common_baseline, fleet, load_hosts
from cpuidkit.analysis.review import render, review
from cpuidkit.analysis.templates import apply_on_host, is_template_spec, load_template, template_fleet
from cpuidkit.cli.args import kernel_version
from cpuidkit.cli.exits import EXIT_OK, EXIT_VERDICT
from cpuidkit.cli.guest import load_guest_table
from cpuidkit.core.hosts import VENDORS
from cpuidkit.core.kernels import DEFAULT_KERNEL, kernel_profile
from cpuidkit.core.sources import save
from cpuidkit.errors import InputError
from cpuidkit.live import resolve_host


def _write(text: str, output: str | None) -> None:
    if output:
        atomic_write_text(output, text)
    else:
        sys.stdout.write(text)


# -- review -----------------------------------------------------------------------------------------


def _base(spec: str | None):
    """``--base``: None (the host's supported CPUID), ``live`` (this machine's KVM_GET_SUPPORTED_CPUID) or a file."""
    if spec is None:
        return None, None
    if spec == "live":
        return resolve_host("live").supported_cpuid(), "KVM_GET_SUPPORTED_CPUID of this machine (live)"
    table, name = load_guest_table(spec)
    return table, f"`{Path(name).name}`"


def _review(args) -> int:
    kernel_profile(args.kernel)  # a bad version is bad input before anything is read
    host = resolve_host(args.host)
    if is_template_spec(args.template):
        template = load_template(args.template)
        base, label = _base(args.base)
        applied = apply_on_host(
            template, host, kernel=args.kernel, vendor=args.vendor, base=base, base_label=label, vcpus=args.vcpus
        )
        r = review(
            applied.table,
            host,
            kernel=args.kernel,
            vendor=args.vendor,
            template_name=template.name,
            xfeature_permission=not args.no_xfeature_permission,
            applied=applied,
        )
        _write(render(r, args.format), args.output)
        t = r.data["template_application"]
        return EXIT_VERDICT if (t["refused"] or t["unbacked"] or r.data["verdict"] != "accepted") else EXIT_OK
    if args.base is not None:
        raise InputError("--base applies to a CPU template (a Firecracker template or qemu:MODEL), not to a table")
    table, name = load_guest_table(args.template)
    r = review(
        table,
        host,
        kernel=args.kernel,
        vendor=args.vendor,
        template_name=Path(name).name,
        xfeature_permission=not args.no_xfeature_permission,
    )
    _write(render(r, args.format), args.output)
    return EXIT_OK


# -- fleet -------------------------------------------------------------------------------------------


def terminal_progress(stream=None, min_interval: float = 0.1) -> Progress | None:
    """A progress callback for :func:`~cpuidkit.analysis.fleet.fleet` that redraws one line on stderr, or None
    when stderr is not a terminal."""
    out = stream if stream is not None else sys.stderr
    if not getattr(out, "isatty", lambda: False)():
        return None
    last = [0.0]

    def show(done: int, total: int, stage: str) -> None:
        now = time.monotonic()
        if done < total and now - last[0] < min_interval:
            return
        last[0] = now
        pct = 100 * done // total if total else 100
        out.write(f"\rfleet: {stage} {done}/{total} ({pct}%)\x1b[K")
        if done >= total and stage == "pairs":
            out.write("\r\x1b[K")
        out.flush()

    return show


def _matrix_text(f, limit: int = 40) -> list[str]:
    n = len(f)
    if n > limit:
        return [f"(matrix not drawn for {n} hosts; use --format json or html)"]
    v = f.verdicts()
    mark = {0: ".", 1: "w", 2: "X"}
    lines = ["source \\ destination: . ok, w warnings only, X blocked (rows: guest from that host)"]
    lines.append("      " + "".join(f"{j % 100:>3}" for j in range(n)))
    for i in range(n):
        lines.append(f"  {i:>3} " + "".join(f"{mark[int(v[i, j])]:>3}" for j in range(n)) + f"  {f.names[i]}")
    return lines


def _fleet_text(f, b) -> str:
    s = f.summary()
    out = [
        f"{s['hosts']} hosts, kernel {f.kernel}, vendor module {f.vendor or 'per host'}: {s['pairs']} moves, "
        f"{s['ok']} ok, {s['ok_with_warnings']} ok with warnings, {s['blocked']} blocked"
    ]
    out.append("guest: each host's own CPUID (host-passthrough); rules and ids of `cpuidkit migrate`")
    counts = f.rule_counts()
    out.append(
        "blocked moves by rule: "
        + (", ".join(f"{r} {c['blocker']}" for r, c in counts.items() if c["blocker"]) or "none")
    )
    out.append(
        "warnings by rule: " + (", ".join(f"{r} {c['warning']}" for r, c in counts.items() if c["warning"]) or "none")
    )
    if s["self_blocked"]:
        out.append("hosts whose own CPUID is blocked even on themselves: " + ", ".join(s["self_blocked"]))
    out.append("")
    out += _matrix_text(f)
    out.append("")
    out.append("destinations reachable without a blocker:")
    n = len(f)
    for i, name in enumerate(f.names):
        out.append(f"  {name:<44} {len(f.destinations(i)):>4} of {n - 1}")
    out.append("")
    out.append(
        f"common baseline (from {b.base_host}): XCR0 {b.xcr0:#x}, MAXPHYADDR {b.maxphyaddr}, "
        f"{b.linear_bits}-bit linear; {len(b.dropped_features)} feature(s) of {b.base_host} dropped"
        + (f": {', '.join(b.dropped_features)}" if b.dropped_features else "")
    )
    if b.dropped_xcr0:
        out.append(f"  XSAVE components dropped: {', '.join(b.dropped_xcr0)}")
    for note in b.notes:
        out.append(f"  note: {note}")
    return "\n".join(out) + "\n"


def fleet_html(f, b) -> str:
    """An HTML page: the matrix plot (PNG, base64), the summary and the baseline.  Imports matplotlib."""

    png = png_base64(plot_matrix(f))
    s = f.summary()
    rows = "".join(
        f"<tr><td>{html.escape(r)}</td><td>{c['blocker']}</td><td>{c['warning']}</td></tr>"
        for r, c in f.rule_counts().items()
    )
    hosts = "".join(
        f"<tr><td>{i}</td><td>{html.escape(n)}</td><td>{html.escape(h.vendor or '?')}</td>"
        f"<td>{h.maxphyaddr}</td><td>{len(f.destinations(i))}</td></tr>"
        for i, (n, h) in enumerate(zip(f.names, f.hosts))
    )
    notes = "".join(f"<li>{html.escape(x)}</li>" for x in b.notes)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>cpuidkit fleet: {s["hosts"]} hosts</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 6px;font-size:.9em}}</style></head><body>
<h1>Migration matrix: {s["hosts"]} hosts, kernel {html.escape(f.kernel)}</h1>
<p>{s["pairs"]} moves: {s["ok"]} ok, {s["ok_with_warnings"]} ok with warnings, {s["blocked"]} blocked. The guest on
each host is given that host's own CPUID; the rules are <code>cpuidkit migrate</code>'s.</p>
<img alt="migration matrix" src="data:image/png;base64,{png}">
<h2>Moves by rule</h2><table><tr><th>rule</th><th>blocked</th><th>warnings</th></tr>{rows}</table>
<h2>Hosts</h2><table><tr><th>#</th><th>host</th><th>vendor</th><th>MAXPHYADDR</th><th>reachable</th></tr>{hosts}</table>
<h2>Common baseline</h2><p>From {html.escape(b.base_host)}: XCR0 {b.xcr0:#x}, MAXPHYADDR {b.maxphyaddr},
{b.linear_bits}-bit linear; dropped: {html.escape(", ".join(b.dropped_features) or "nothing")}.</p><ul>{notes}</ul>
</body></html>
"""


def _inside(folder: str, path: str | None) -> bool:
    if not path:
        return False
    return os.path.dirname(os.path.abspath(path)) == os.path.abspath(folder)


def _template_fleet_text(tf) -> str:
    out = [
        f"template {tf.template.name} ({tf.template.kind}) on {len(tf.runs)} hosts, kernel {tf.kernel}, vendor module "
        f"{tf.vendor or 'per host'}: runs on {sum(r.runs for r in tf.runs)}",
        "base: each host's KVM_GET_SUPPORTED_CPUID (predicted unless measured), applied as the VMM applies it",
        "",
    ]
    for r in tf.runs:
        why = []
        if r.refused:
            why.append(f"VMM refuses: {r.refused[0]}" + (f" (+{len(r.refused) - 1})" if len(r.refused) > 1 else ""))
        if r.unbacked:
            why.append("forced 1 not backed: " + ", ".join(r.unbacked))
        if r.verdict != "accepted":
            why.append(f"KVM_SET_CPUID2 {r.verdict} ({r.errno})")
        out.append(f"  {'runs   ' if r.runs else 'CANNOT '} {r.host:<40} " + ("; ".join(why) or "ok"))
    cols = tf.columns()
    out.append("")
    out.append(
        "what a guest sees (1 yes, . no, ! forced 1 not backed by the host), features that differ or are forced:"
    )
    for i, c in enumerate(cols):
        out.append(f"  {i:>3} {c}")
    out.append("      " + "".join(f"{i % 10}" for i in range(len(cols))))
    for r, row in zip(tf.runs, tf.matrix()):
        out.append(f"      {''.join(row)}  {r.host}")
    return "\n".join(out) + "\n"


def _template_fleet_html(tf) -> str:
    png = png_base64(plot_template_fleet(tf))
    text = html.escape(_template_fleet_text(tf))
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>cpuidkit fleet: '
        f"{html.escape(tf.template.name)}</title></head><body><h1>{html.escape(tf.template.name)} across "
        f'{len(tf.runs)} hosts</h1><img alt="template across the fleet" src="data:image/png;base64,{png}">'
        f"<pre>{text}</pre></body></html>\n"
    )


def _fleet(args) -> int:
    kernel_profile(args.kernel)
    if args.template is not None and args.baseline:
        raise InputError("--baseline is for the migration matrix; leave it out with --template")
    for option, path in (("-o", args.output), ("--baseline", args.baseline)):
        if _inside(args.folder, path):
            raise InputError(
                f"{option} {path} is inside the host folder {args.folder}: the next run would read it as a host; "
                "write it elsewhere"
            )
    if args.template is not None:
        template = load_template(args.template)
        tf = template_fleet(template, load_hosts(args.folder), kernel=args.kernel, vendor=args.vendor)
        if args.format == "json":
            _write(json.dumps(tf.as_dict()) + "\n", args.output)
        elif args.format == "html":
            _write(_template_fleet_html(tf), args.output)
        else:
            _write(_template_fleet_text(tf), args.output)
        return EXIT_OK if all(r.runs for r in tf.runs) else EXIT_VERDICT
    progress = terminal_progress()
    hosts = load_hosts(args.folder, progress=progress)
    f = fleet(hosts, kernel=args.kernel, vendor=args.vendor, progress=progress)
    b = common_baseline(hosts, kernel=args.kernel, vendor=args.vendor)
    if args.format == "json":
        doc = f.as_dict()
        doc["baseline"] = b.as_dict()
        _write(json.dumps(doc) + "\n", args.output)
    elif args.format == "html":
        _write(fleet_html(f, b), args.output)
    else:
        _write(_fleet_text(f, b), args.output)
    if args.baseline:
        save(b.table, args.baseline)
    return EXIT_OK


def register(sub) -> None:
    r = sub.add_parser(
        "review",
        help="a design-review report: one CPU template on one host (verdict, runtime fields, "
        "unvirtualized features, lint, XSAVE, address widths, kernel notes)",
        description="Review a CPU template (any dump format) on a host for a kernel version: KVM's verdict, the "
        "fields KVM owns at run time, features beyond what KVM virtualizes there, lint findings, XSAVE sizes, "
        "MAXPHYADDR and linear width, and the kernel-version notes that matter for this template. Markdown or "
        "HTML (with inline SVG figures), written atomically with -o.",
    )
    r.add_argument(
        "template",
        metavar="TEMPLATE",
        help="the guest CPUID: a dump file, a built-in host name, or live; or a CPU template applied to the host "
        "as its VMM applies it: a Firecracker custom CPU template (JSON with cpuid_modifiers) or qemu:MODEL "
        "(e.g. qemu:Cascadelake-Server, expanded by the real QEMU)",
    )
    r.add_argument(
        "--base",
        default=None,
        metavar="FILE|live",
        help="for a template: the CPUID it is applied to (default: the host's KVM_GET_SUPPORTED_CPUID, predicted "
        "for --kernel and --vendor unless measured)",
    )
    r.add_argument(
        "--vcpus", type=int, default=1, choices=range(1, 33), metavar="N", help="for a template: vCPUs (default 1)"
    )
    r.add_argument(
        "--host",
        default=None,
        metavar="NAME|FILE|live",
        help="the host: a built-in name, a dump file, or live (default sapphire-rapids)",
    )
    r.add_argument(
        "--kernel", type=kernel_version, default=DEFAULT_KERNEL, help=f"host kernel X.Y (default {DEFAULT_KERNEL})"
    )
    r.add_argument(
        "--vendor",
        choices=VENDORS,
        default=None,
        help="vendor module (default: the live host's, else vmx for Intel and svm for AMD hosts)",
    )
    r.add_argument("--format", choices=("markdown", "html", "json"), default="markdown")
    r.add_argument("-o", "--output", default=None, metavar="FILE", help="write here (atomically) instead of stdout")
    r.add_argument(
        "--no-xfeature-permission",
        action="store_true",
        help="the VMM does not request AMX permission before KVM_SET_CPUID2",
    )
    r.set_defaults(func=_review)

    f = sub.add_parser(
        "fleet",
        help="the migration matrix of a pool of hosts (a folder of dumps), and their common baseline CPUID",
        description="Every ordered pair of hosts in DIR (one dump per file, any format): can a guest given the "
        "source host's CPUID move to the destination? The rules and ids are `cpuidkit migrate`'s, computed for all "
        "pairs at once. Also the largest CPUID every host can take a guest with.",
    )
    f.add_argument("folder", metavar="DIR")
    f.add_argument(
        "--template",
        default=None,
        metavar="TEMPLATE",
        help="instead of the migration matrix: can this CPU template (a Firecracker template or qemu:MODEL) run on "
        "each host, and what does a guest see there (exit 1 when some host cannot run it)",
    )
    f.add_argument(
        "--kernel",
        type=kernel_version,
        default=DEFAULT_KERNEL,
        help=f"kernel X.Y of the hosts (default {DEFAULT_KERNEL})",
    )
    f.add_argument("--vendor", choices=VENDORS, default=None, help="vendor module of every host (default per host)")
    f.add_argument("--format", choices=("table", "json", "html"), default="table")
    f.add_argument("-o", "--output", default=None, metavar="FILE", help="write here (atomically) instead of stdout")
    f.add_argument("--baseline", default=None, metavar="FILE", help="also save the common baseline as KVM JSON")
    f.set_defaults(func=_fleet)
