"""Sanity lint for CPUID tables: sane is not legal, and KVM judges almost neither.

KVM checks almost nothing in a table (the entry count, the linear-address
width, AMX permission) and leaves sanity to userspace.  This module judges it,
rule by rule, with three classes of finding:

==========  ==================================================================
``illegal`` the architecture forbids it, or a guest that follows the SDM/APM
            faults (a linear width other than 48/57, supervisor components in
            0xD.0, YMM without SSE …)
``insane``  legal, but unusable or self-contradictory (TILECFG without
            TILEDATA, AVX-512F without its XCR0 components, PKU without PKRU,
            guest MAXPHYADDR above the host's, dead or shadowed entries …)
``info``    worth knowing, harmless by itself (values KVM overwrites at run
            time, a MAXPHYADDR smaller than the host's …)
==========  ==================================================================

Every rule's words live in ``data/lint-rules.csv`` (id, class, fields,
explanation, reference, whether KVM checks it, what happens in a guest); the
feature dependency graph lives in ``data/feature-deps.csv``.  The logic of a
rule is a function here with the rule's id, or, for dependency rules, the
generic walk over the graph.

A finding can be marked **intended** ("insane on purpose", e.g. for a test VM):
pass ``intended`` as a set of keys or a ``{key: note}`` mapping, where a key is
a rule id or ``rule@field``.  Intended findings are still reported, with
``intended=True`` and the note.

:func:`matrix` sets KVM's verdict (the model in :mod:`cpuidkit.kvm.check`)
beside the lint class, with :func:`example_cases` giving a table for every
cell.

The lint reads a table the way a guest does: a leaf above the maximum leaf of
its range, or a leaf-7 subleaf above 7.0.EAX, counts as absent.  Rules about
KVM's lookup (duplicates, flags) look at every entry.
"""

from __future__ import annotations

from cpuidkit.analysis.lint.checks import implementations
from cpuidkit.analysis.lint.intended import load_intended, parse_intended
from cpuidkit.analysis.lint.matrix import Case, Matrix, MatrixRow, example_cases, guest_ready, guest_template, matrix
from cpuidkit.analysis.lint.model import ARCH_INDEXED_FUNCTIONS, CLASSES, Dependency, Finding, Rule, dependencies, rules
from cpuidkit.analysis.lint.runner import lint_axes, lint_class, lint_table, rules_markdown, summarize

__all__ = [
    "CLASSES",
    "Rule",
    "Dependency",
    "Finding",
    "rules",
    "dependencies",
    "implementations",
    "lint_table",
    "load_intended",
    "parse_intended",
    "summarize",
    "rules_markdown",
    "lint_class",
    "lint_axes",
    "Case",
    "MatrixRow",
    "Matrix",
    "matrix",
    "example_cases",
    "guest_ready",
    "guest_template",
    "ARCH_INDEXED_FUNCTIONS",
]
