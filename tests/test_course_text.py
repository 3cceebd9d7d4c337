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


GLOSSARY = ROOT / "docs" / "glossary.md"
# the terms issue 13 asked for, and the words every notebook leans on
REQUIRED_TERMS = (
    "accepted / rejected", "legal / illegal", "sane / insane", "EPT, NPT, TDP", "dynamic XSAVE feature, XFD",
    "quirk", "pvm (kvm_pvm)", "vendor module", "MAXPHYADDR, reserved GPA bits", "guest_supported_xcr0", "call path",
    "arch_prctl(ARCH_REQ_XCOMP_GUEST_PERM)", "owner: passthrough, runtime, vendor, not-virtualized",
)


def _terms() -> dict[str, str]:
    text = GLOSSARY.read_text(encoding="utf-8")
    return {m.group(1): m.group(2) for m in re.finditer(r"^\*\*(.+?)\*\* (.+?)(?=\n\n|\Z)", text, re.M | re.S)}


def test_glossary_defines_the_terms_the_course_uses():
    terms = _terms()
    missing = [t for t in REQUIRED_TERMS if t not in terms]
    assert not missing, missing
    assert list(terms) == sorted(terms, key=str.lower), "keep the glossary in alphabetical order"
    assert all(len(d) > 40 for d in terms.values()), "every term has a definition"


def test_glossary_uses_the_one_vocabulary():
    terms = _terms()
    assert "KVM" in terms["accepted / rejected"] and "architecture" in terms["legal / illegal"]
    assert "guest" in terms["sane / insane"] and "never by KVM" in terms["legal / illegal"]


def test_trainer_guide_covers_remote_trainees_ports_and_demo_states():
    guide = (ROOT / "docs" / "trainer-guide.md").read_text(encoding="utf-8")
    for words in ("ssh -N -L", "make lab PORT=", "make present NB=09 PORT=", "8866", "8888",
                  "Which demo starts from which state", "answer-key.md", "glossary.md", "call-path.svg",
                  "Presenting with Voilà"):
        assert words in guide, words
    makefile = (ROOT / "Makefile").read_text()
    assert "--ServerApp.port=$(PORT)" in makefile and "--Voila.port=$(PORT)" in makefile
    notebooks = {p.name[:2] for p in (ROOT / "notebooks").glob("*.ipynb")}
    demo_rows = set(re.findall(r"^\| (\d\d) \| ", guide.split("Which demo starts from which state")[1], re.M))
    assert notebooks - demo_rows <= {"08"}, f"demo states missing for {sorted(notebooks - demo_rows)}"
