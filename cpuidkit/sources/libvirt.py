"""libvirt cputestdata XML: ``<cpudata arch='x86'><cpuid eax_in= ecx_in= eax= ebx= ecx= edx=/>…``.

Parsed with defusedxml: entity declarations (billion laughs), external
entities and DTD tricks are refused with an InputError.  ``<msr>`` elements are
accepted and ignored.
"""

from __future__ import annotations

from xml.etree.ElementTree import ParseError

import defusedxml
import defusedxml.ElementTree as DET

from .._errors import InputError
from ..table import CpuidEntry
from ._common import number, raw_entry

_ATTRS = ("eax_in", "ecx_in", "eax", "ebx", "ecx", "edx")


def parse(text: str, source: str | None) -> list[CpuidEntry]:
    try:
        root = DET.fromstring(text, forbid_dtd=True)
    except defusedxml.DefusedXmlException as e:
        raise InputError(
            f"refused: the XML uses a DTD or entities ({type(e).__name__}); CPUID dumps never need them",
            source=source,
        ) from None
    except ParseError as e:
        line, col = getattr(e, "position", (None, None))
        raise InputError(f"not well-formed XML: {e}", source=source, where=f"line {line} column {col}") from None
    if root.tag != "cpudata":
        raise InputError(f"expected a <cpudata> root element, got <{root.tag}>", source=source)
    out = []
    for n, el in enumerate(root, start=1):
        if el.tag == "msr":
            continue
        where = f"element {n} <{el.tag}>"
        if el.tag != "cpuid":
            raise InputError("expected <cpuid> or <msr>", source=source, where=where)
        missing = [a for a in _ATTRS if a not in el.attrib]
        if missing:
            raise InputError(f"missing attribute(s) {', '.join(missing)}", source=source, where=where)
        vals = [number(el.attrib[a], field=a, where=where, source=source) for a in _ATTRS]
        out.append(raw_entry(*vals))
    if not out:
        raise InputError("no <cpuid> elements", source=source)
    return out
