"""``cpuidkit lint``: the sanity lint on the command line.

Exit codes: 0 when no table has an illegal finding (intended ones aside),
1 otherwise, 2 on bad input (a table, the host or the --intended file).
"""

from __future__ import annotations

import json
import sys

from cpuidkit.analysis.lint import lint_table, load_intended, summarize
from cpuidkit.cli.exits import EXIT_OK, EXIT_VERDICT
from cpuidkit.core.sources import load
from cpuidkit.live import resolve_host

_INTENDED_HELP = (
    'JSON file {"intended": {"RULE or RULE@FIELD": "note", ...}}: findings to report as insane on purpose; '
    "they no longer fail the exit code"
)


def _summary_text(counts: dict) -> str:
    parts = [f"{counts[c]} {c}" for c in ("illegal", "insane", "info")]
    text = ", ".join(parts)
    if counts["intended"]:
        text += f" ({counts['intended']} intended)"
    return text


def _render_text(path: str, vendor: str | None, host: str | None, findings) -> str:
    head = f"{path}: {_summary_text(summarize(findings))}"
    context = [f"vendor {vendor or '?'}"]
    if host:
        context.append(f"host {host}")
    lines = [f"{head}  [{', '.join(context)}]"]
    explained: set[str] = set()
    for f in findings:
        mark = f"  (intended: {f.note})" if f.intended and f.note else ("  (intended)" if f.intended else "")
        sev = f.severity.upper() if f.severity == "illegal" and not f.intended else f.severity
        lines.append(f"  {sev:<8}{f.rule}{mark}")
        if f.fields:
            lines.append(f"          fields: {', '.join(f.fields)}")
        if f.detail:
            lines.append(f"          {f.detail}")
        if f.rule in explained:
            continue  # the rule's own text once per table
        explained.add(f.rule)
        lines.append(f"          why: {f.explanation}")
        lines.append(f"          if ignored: {f.if_ignored}")
        lines.append(f"          ref: {f.reference}{' (KVM checks this)' if f.kvm_checks else ''}")
    return "\n".join(lines)


def _lint(args) -> int:
    intended = load_intended(args.intended) if args.intended else None
    host = None
    if args.host is not None:
        host = resolve_host(args.host)
    tables = [(p, load(p, cpu=args.cpu)) for p in args.tables]  # every input parsed before any output
    failed = False
    for path, table in tables:
        findings = lint_table(table, host=host, intended=intended)
        failed |= any(f.severity == "illegal" and not f.intended for f in findings)
        if args.format == "json":
            doc = {
                "table": path,
                "vendor": table.vendor,
                "host": host.name if host else None,
                "summary": summarize(findings),
                "findings": [f.as_dict() for f in findings],
            }
            sys.stdout.write(json.dumps(doc) + "\n")
        else:
            print(_render_text(path, table.vendor, host.name if host else None, findings))
            print()
    return EXIT_VERDICT if failed else EXIT_OK


def register(sub) -> None:
    p = sub.add_parser(
        "lint",
        help="sanity lint of CPUID tables: illegal / insane / info findings, independent of KVM's verdict",
        description="Judge CPUID tables the way KVM does not: what the architecture forbids (illegal), what is "
        "legal but unusable or self-contradictory (insane), and what is worth knowing (info). Rules: "
        "data/lint-rules.csv. Exit 0 without illegal findings, 1 with, 2 on bad input.",
    )
    p.add_argument("tables", nargs="+", metavar="TABLE", help="any format `cpuidkit decode` reads")
    p.add_argument(
        "--host",
        default=None,
        metavar="NAME|FILE|live",
        help="the host the guest runs on (enables the host rules: MAXPHYADDR, XCR0 support)",
    )
    p.add_argument(
        "--format",
        choices=("table", "json"),
        default="table",
        help="table (default) or json: one object per table per line",
    )
    p.add_argument("--intended", default=None, metavar="FILE", help=_INTENDED_HELP)
    p.add_argument("--cpu", type=int, default=None, help="which CPU of a multi-CPU dump (default: the first)")
    p.set_defaults(func=_lint)
