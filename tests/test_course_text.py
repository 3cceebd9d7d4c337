"""The course's vocabulary: accepted/rejected (KVM), legal/illegal (architecture), sane/insane (usable).

"legal" must never stand for what KVM does; these patterns are the known ways it slipped.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MISUSE = [
    re.compile(p, re.IGNORECASE)
    for p in (
        r"legal \(KVM",
        r"KVM (says|calls it|finds it) legal",
        r"legal\s*=\s*accepted",
        r"accepted\s*=\s*legal",
        r"sane_but_legal",
    )
]


def _texts():
    for folder, pattern in (("notebooks", "*.ipynb"), ("docs", "*.md"), ("cpuidkit", "*.py")):
        for path in sorted((ROOT / folder).rglob(pattern)):
            if "examples" in path.parts:
                continue
            yield path, path.read_text(encoding="utf-8")


def test_legal_means_the_architecture_not_kvm():
    bad = []
    for path, text in _texts():
        for rx in MISUSE:
            for m in rx.finditer(text):
                bad.append(f"{path.relative_to(ROOT)}: {m.group(0)!r}")
    assert not bad, "\n".join(bad)
