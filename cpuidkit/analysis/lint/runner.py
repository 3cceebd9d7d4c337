"""Running the lint on a table: findings sorted by class, summaries, the rules as Markdown."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

from cpuidkit.analysis.lint.checks import View, implementations
from cpuidkit.analysis.lint.intended import intended_note, parse_intended
from cpuidkit.analysis.lint.model import CLASSES, HOST_RULES, RANK, Finding, dependencies, rules
from cpuidkit.core.hosts import HostProfile
from cpuidkit.core.table import CpuidTable
from cpuidkit.errors import InputError
from cpuidkit.live import resolve_host

if TYPE_CHECKING:  # pragma: no cover
    from cpuidkit.core.hosts import HostProfile


# -- running the lint ------------------------------------------------------------------------------


def _resolve_host(host) -> HostProfile | None:
    if host is None:
        return None

    if isinstance(host, CpuidTable):
        return HostProfile.from_table(host)
    return resolve_host(host)


def lint_table(table: CpuidTable, host=None, intended=None) -> list[Finding]:
    """Every finding for ``table``, worst class first (rules in data order within a class).

    ``host`` (a HostProfile, a built-in host name, a dump path, ``"live"`` or a
    CpuidTable) enables the rules that compare the guest with its host;
    ``intended`` marks findings as insane on purpose (see :func:`parse_intended`).
    """
    if not isinstance(table, CpuidTable):
        raise InputError(f"lint_table needs a CpuidTable, got {type(table).__name__}")
    marks = parse_intended(intended)
    view = View(table, _resolve_host(host))
    impl = implementations()
    order = {rid: n for n, rid in enumerate(rules())}
    out: list[Finding] = []
    for rid, rule in rules().items():
        if rid in HOST_RULES and view.host is None:
            continue
        for hit in impl[rid](view):
            f = Finding(
                rid,
                rule.severity,
                hit.fields,
                rule.explanation,
                rule.reference,
                hit.detail,
                rule.kvm_checks,
                rule.if_ignored,
            )
            note = intended_note(marks, f)
            if note is not None:
                f = replace(f, intended=True, note=note)
            out.append(f)
    out.sort(key=lambda f: (RANK[f.severity], order[f.rule]))
    return out


def rules_markdown() -> str:
    """The rules as a Markdown table (docs/lint.md carries this text; a test keeps the two equal)."""
    deps: dict[str, list[str]] = {}
    for d in dependencies():
        deps.setdefault(d.rule, []).append(f"{d.feature} → {d.requires}")

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| id | class | KVM checks | what it says | reference | if ignored |", "|---|---|---|---|---|---|"]
    for r in rules().values():
        what = r.explanation
        if r.id in deps:
            what += " Edges: " + ", ".join(deps[r.id]) + "."
        lines.append(
            f"| `{r.id}` | {r.severity} | {'yes' if r.kvm_checks else 'no'} | {cell(what)} | "
            f"{cell(r.reference)} | {cell(r.if_ignored)} |"
        )
    return "\n".join(lines)


def summarize(findings: Iterable[Finding]) -> dict[str, int]:
    """Counts by class, and how many findings are marked intended."""
    counts = {c: 0 for c in CLASSES}
    counts["intended"] = 0
    for f in findings:
        counts[f.severity] += 1
        counts["intended"] += f.intended
    return counts


MATRIX_VERDICTS = ("accepted", "rejected")
MATRIX_CLASSES = ("clean", "info", "insane", "insane on purpose", "illegal")


def lint_axes(findings: Iterable[Finding]) -> tuple[str, str]:
    """Where a table stands on the two axes the lint judges: ``(legal or illegal, sane or insane)``.

    *illegal*: some finding of class ``illegal`` (the architecture forbids it, or a guest following the
    SDM/APM faults).  *insane*: some finding of class ``illegal`` or ``insane``, intended or not (a
    guest or a migration cannot use the table as it stands; "on purpose" marks it, it does not make it
    sane).  ``info`` findings move neither.  The third axis, accepted or rejected, is KVM's
    (:func:`cpuidkit.kvm.check.check`), never the lint's.
    """
    fs = list(findings)
    legal = "illegal" if any(f.severity == "illegal" for f in fs) else "legal"
    sane = "insane" if any(f.severity in ("illegal", "insane") for f in fs) else "sane"
    return legal, sane


def lint_class(findings: Iterable[Finding]) -> str:
    """The matrix column of a table: its worst finding that is not intended.

    ``illegal`` or ``insane`` when such a finding is not marked intended;
    ``insane on purpose`` when every insane or illegal finding is intended;
    ``info`` or ``clean`` otherwise.
    """
    fs = list(findings)
    for c in ("illegal", "insane"):
        if any(f.severity == c and not f.intended for f in fs):
            return c
    if any(f.severity in ("illegal", "insane") for f in fs):
        return "insane on purpose"
    return "info" if fs else "clean"
