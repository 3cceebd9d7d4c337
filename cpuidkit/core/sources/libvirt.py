"""libvirt cputestdata XML: ``<cpudata arch='x86'><cpuid eax_in= ecx_in= eax= ebx= ecx= edx=/>…``.

Parsed with defusedxml: entity declarations (billion laughs), external
entities and DTD tricks are refused with an InputError.  ``<msr>`` elements are
accepted and ignored.  The parser keeps only the root's tag and its children's
attributes (no tree), and refuses elements nested deeper than
:data:`MAX_DEPTH` as soon as it meets them, so a hostile file costs time in
proportion to what is read up to there and no more memory than its size.
"""

from __future__ import annotations

from xml.etree.ElementTree import ParseError

import defusedxml
import defusedxml.ElementTree as DET

from cpuidkit.core.sources._common import flag_dump, number, raw_entry
from cpuidkit.core.table import CpuidEntry
from cpuidkit.errors import InputError

_ATTRS = ("eax_in", "ecx_in", "eax", "ebx", "ecx", "edx")
MAX_DEPTH = 32  # a <cpudata> file is 2 deep
_CHUNK = 1 << 20  # characters handed to expat at a time


class _TooDeep(Exception):
    pass


class _Collect:
    """An ElementTree parser target that records the root tag and its children (tag, attributes)."""

    def __init__(self) -> None:
        self.depth = 0
        self.root: str | None = None
        self.children: list[tuple[str, dict]] = []

    def start(self, tag: str, attrib: dict) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _TooDeep
        if self.depth == 1:
            self.root = tag
        elif self.depth == 2:
            self.children.append((tag, attrib))

    def end(self, tag: str) -> None:
        self.depth -= 1

    def close(self) -> _Collect:
        return self


def _tag(tag: object) -> str:
    text = str(tag)  # comments and processing instructions have a function as their tag
    if not isinstance(tag, str):
        return "!--" if "Comment" in text else "?…?"
    return text if len(text) <= 40 else text[:40] + "…"


def parse(text: str, source: str | None) -> list[CpuidEntry]:
    root = _Collect()
    parser = DET.DefusedXMLParser(target=root, forbid_dtd=True)
    try:
        for i in range(0, len(text), _CHUNK):
            parser.feed(text[i : i + _CHUNK])
        parser.close()
    except _TooDeep:
        raise InputError(
            f"refused: elements nested deeper than {MAX_DEPTH} levels; a <cpudata> file is 2 deep",
            source=source,
        ) from None
    except defusedxml.DefusedXmlException as e:
        raise InputError(
            f"refused: the XML uses a DTD or entities ({type(e).__name__}); CPUID dumps never need them",
            source=source,
        ) from None
    except ParseError as e:
        line, col = getattr(e, "position", (None, None))
        what = str(e).split(":", 1)[0]  # expat's reason, without its own copy of the position
        raise InputError(f"not well-formed XML: {what}", source=source, where=f"line {line} column {col}") from None
    if root.root != "cpudata":
        raise InputError(f"expected a <cpudata> root element, got <{_tag(root.root)}>", source=source)
    out = []
    for n, (tag, attrib) in enumerate(root.children, start=1):
        if tag == "msr":
            continue
        if tag == "cpuid":
            try:  # the common case, fast: six "0x" + at most 8 hex digits (so within 32 bits)
                vals = [int(v, 16) for v in (attrib[a] for a in _ATTRS) if v[:2] == "0x" and 3 <= len(v) <= 10]
            except (KeyError, ValueError):
                vals = []
            if len(vals) == 6:
                out.append(raw_entry(*vals))
                continue
        where = f"element {n} <{_tag(tag)}>"
        if tag != "cpuid":
            raise InputError("expected <cpuid> or <msr>", source=source, where=where)
        missing = [a for a in _ATTRS if a not in attrib]
        if missing:
            raise InputError(f"missing attribute(s) {', '.join(missing)}", source=source, where=where)
        vals = [number(attrib[a], field=a, where=where, source=source) for a in _ATTRS]
        out.append(raw_entry(*vals))
    if not out:
        raise InputError("no <cpuid> elements", source=source)
    return flag_dump(out)  # several different subleaves of a leaf (0x80000020 on AMD): flagged
