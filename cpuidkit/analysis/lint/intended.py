"""Intended findings: the insane values a test table means to have, so they are reported as such, not as faults."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from cpuidkit._files import display_name, read_input_text
from cpuidkit.analysis.lint.model import Finding, rules
from cpuidkit.core.sources._common import load_json
from cpuidkit.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    pass


# -- intended findings ---------------------------------------------------------------------------


def parse_intended(spec, source: str | None = None) -> dict[str, str]:
    """``{key: note}`` from a set/list of keys, a mapping, or None; keys are ``rule`` or ``rule@field``."""
    if spec is None:
        return {}
    if isinstance(spec, str):
        spec = [spec]
    if isinstance(spec, Mapping):
        items = list(spec.items())
    else:
        items = [(k, "") for k in spec]
    known = rules()
    out: dict[str, str] = {}
    for key, note in items:
        if not isinstance(key, str) or not key:
            raise InputError(f"an intended key must be a rule id or rule@field, got {key!r}", source=source)
        if note is None:
            note = ""
        if not isinstance(note, str):
            raise InputError(f"the note for {key!r} must be a string", source=source, where=key)
        rid = key.partition("@")[0]
        if rid not in known:
            raise InputError(f"unknown lint rule {rid!r} in intended key {key!r}", source=source, where=key)
        out[key] = note
    return out


def load_intended(path: str | Path) -> dict[str, str]:
    """Read an ``--intended`` file: ``{"intended": {"rule" or "rule@field": "note", ...}}``."""
    doc = load_json(read_input_text(path), display_name(path))
    if not isinstance(doc, dict) or set(doc) - {"intended", "comment"} or not isinstance(doc.get("intended"), dict):
        raise InputError(
            'expected {"intended": {"rule or rule@field": "note", ...}} (and optionally "comment")', source=str(path)
        )
    return parse_intended(doc["intended"], source=str(path))


def intended_note(intended: dict[str, str], f: Finding) -> str | None:
    if f.rule in intended:
        return intended[f.rule]
    for fld in f.fields:
        key = f"{f.rule}@{fld}"
        if key in intended:
            return intended[key]
    return None
