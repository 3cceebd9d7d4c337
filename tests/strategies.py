"""Shared fuzzing material: seed corpora, a mutator, Hypothesis strategies, the outcome rule.

The mutator is written against a tiny "chooser" (``randint``, ``choice``,
``random``) so the same mutations serve two masters:

* the Hypothesis tests, where the chooser draws from Hypothesis (so failures
  shrink to a small input), see :func:`fuzzed_input`;
* ``bench/bench_fuzz.py``, where the chooser is a seeded ``random.Random``
  (100,000 inputs per format in minutes).

The rule every importer must keep (:func:`check_outcome`): the only outcomes
are a :class:`CpuidTable` or an :class:`InputError` whose message names the
source and says where (line, column, entry, element, key) or what was expected.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Callable, Protocol, Sequence

from cpuidkit import CpuidEntry, CpuidTable, InputError
from cpuidkit.core.bits import FLAG_SIGNIFICANT_INDEX

from conftest import DUMPS, LIVE_DATA, TEST_DATA

FORMATS = ("kvm-json", "cpuid-raw", "libvirt-xml", "firecracker", "libcpuid", "proc-cpuinfo")


class Chooser(Protocol):
    def randint(self, a: int, b: int) -> int: ...
    def choice(self, seq: Sequence): ...
    def random(self) -> float: ...


# -- seed corpora -----------------------------------------------------------------


def _trim_libcpuid(text: str, cpus: int) -> str:
    """The first ``cpus`` logical-CPU blocks of a libcpuid dump, then its trailer (the expected decode)."""
    lines = text.splitlines()
    out, seen, in_regs = [], 0, True
    for ln in lines:
        if ln.startswith("------[") and "Logical CPU" in ln:
            seen += 1
            in_regs = seen <= cpus
            if in_regs:
                out.append(ln)
            continue
        if ln.startswith("---") and "Logical CPU" not in ln:
            in_regs = True  # the trailer starts: keep it all
            out.append(ln)
            continue
        if in_regs:
            out.append(ln)
    return "\n".join(out) + "\n"


def proc_cpuinfo_text(table: CpuidTable, processor: int = 0) -> str:
    """A /proc/cpuinfo block Linux could have printed for ``table`` (flags from the catalog's names)."""
    from cpuidkit.core.catalog import catalog

    cat = catalog()
    e1 = table.get(1)
    eax = e1.eax if e1 else 0
    fam = (eax >> 8) & 0xF
    if fam == 0xF:
        fam += (eax >> 20) & 0xFF
    model = ((eax >> 4) & 0xF) | ((eax >> 12) & 0xF0)
    e8 = table.get(0x8000_0008)
    lines = [
        f"processor\t: {processor}",
        f"vendor_id\t: {table.vendor or 'GenuineIntel'}",
        f"cpu family\t: {fam}",
        f"model\t\t: {model}",
        "model name\t: fuzz seed",
        f"stepping\t: {eax & 0xF}",
        "cpu MHz\t\t: 2400.000",
        f"flags\t\t: {' '.join(cat.features(table))}",
        "bogomips\t: 4800.00",
    ]
    if e8 is not None:
        lines.append(f"address sizes\t: {e8.eax & 0xFF} bits physical, {(e8.eax >> 8) & 0xFF} bits virtual")
    lines.append("power management:")
    return "\n".join(lines) + "\n\n"


@functools.cache
def seeds() -> dict[str, tuple[str, ...]]:
    """Real inputs for each format: the dumps in tests/data, and texts made from them where no dump exists."""
    from cpuidkit.core.sources import dumps, load

    libvirt = sorted((DUMPS / "libvirt").glob("*.xml"))
    firecracker = sorted((DUMPS / "firecracker").glob("*.json"))
    libcpuid = sorted((DUMPS / "libcpuid").glob("*.test"))
    live = sorted(LIVE_DATA.glob("*.json"))
    if not (libvirt and firecracker and libcpuid and live):
        raise FileNotFoundError(f"the real dumps are expected under {TEST_DATA} (part of the repository)")
    tables = [load(p) for p in libvirt[::4]] + [load(p) for p in live]
    out: dict[str, list[str]] = {f: [] for f in FORMATS}
    out["kvm-json"] += [p.read_text() for p in live]
    out["kvm-json"] += [dumps(t, "kvm-json") for t in tables[:3]]
    out["kvm-json"].append(json.dumps({"entries": tables[-1].as_dicts()[:12]}))
    out["cpuid-raw"] += [dumps(t, "cpuid-raw") for t in tables]
    two = dumps(tables[0][:10], "cpuid-raw") + dumps(tables[1][:10], "cpuid-raw").replace("CPU 0:", "CPU 1:")
    out["cpuid-raw"].append(two)
    out["cpuid-raw"].append(dumps(tables[2][:8], "cpuid-raw").replace("CPU 0:", "CPU:"))
    out["libvirt-xml"] += [p.read_text() for p in libvirt[::3]]
    out["firecracker"] += [p.read_text() for p in firecracker[::3]]
    out["libcpuid"] += [_trim_libcpuid(p.read_text(), 2) for p in libcpuid]
    out["libcpuid"].append(libcpuid[0].read_text())
    out["proc-cpuinfo"] += [proc_cpuinfo_text(t) for t in tables]
    out["proc-cpuinfo"].append(proc_cpuinfo_text(tables[0]) + proc_cpuinfo_text(tables[0], 1))
    return {k: tuple(v) for k, v in out.items()}


# -- the mutator -----------------------------------------------------------------------

HUGE_DIGITS = "9" * 5000  # more digits than Python's int() accepts from text by default

NUMBER_TOKENS = (
    "-1", "0", "-0x1", "0x", "0x100000000", "0xffffffffffffffff", "4294967296", "18446744073709551616",
    HUGE_DIGITS, "0x" + "f" * 40, "1e999", "-1e999", "1.5", "NaN", "Infinity", "true", "null", '""',
    '"0x1f"', '"zz"', "[]", "{}", "0b101", "00000000", "0x0g", "+5", " 7 ", "٣",
)
CHAR_POOL = '0123456789abcdefABCDEFx:-=[]{}<>"\',\n\r\t \\&;#%!?/\x00\x0b\x1b\ufeff\u2028é𝕏\ud800'
TOKENS = (
    '"', "{", "}", "[", "]", ",", ":", "null", "true", "false", '"function"', '"entries": ', '"cpuid_modifiers": ',
    '"guest_cpu_config": ', '"bitmap": "0b' + "x" * 32 + '"', '"register": "eax"', "\n", "\r\n", "\x00", "\ufeff",
    "<!DOCTYPE cpudata [<!ENTITY a \"b\">]>", "&a;", "&lt;", "<![CDATA[x]]>", "<?pi x?>", "<!-- c -->", "<cpuid/>",
    "<msr index='0x10a' edx='0x0' eax='0x0'/>", "<cpudata>", "</cpudata>", "xmlns='urn:x'",
    "CPU 0:\n", "CPU:\n", "CPU 1:\n", "CPU " + HUGE_DIGITS + ":\n", "   0x00000007 0x00: eax=0x0 ebx=0x0 ecx=0x0 edx=0x0\n",
    "------[ CPUID Registers / Logical CPU #1 ]------\n", "------[ Logical CPU #" + HUGE_DIGITS + " ]------\n",
    "CPUID 00000001: 00000000-00000000-00000000-00000000 [SL 99999999999]\n", "--------------------\n",
    "processor\t: 0\n", "vendor_id\t: GenuineIntel\n", "flags\t\t: fpu avx512f nosuchflag\n",
    "cpu family\t: -1\n", "model\t\t: " + HUGE_DIGITS + "\n", "address sizes\t: 999 bits physical, 48 bits virtual\n",
    "address sizes\t: " + HUGE_DIGITS + " bits physical, 48 bits virtual\n", " " * 3000, "\t" * 300,
)
_NUMBER = re.compile(r"0x[0-9a-fA-F]+|0b[01x]+|-?\d+")


def _pos(r: Chooser, text: str) -> int:
    return r.randint(0, len(text))


def _truncate(r, text, others):
    return text[: _pos(r, text)]


def _cut(r, text, others):
    i = _pos(r, text)
    return text[:i] + text[i + r.randint(1, 200):]


def _flip(r, text, others):
    chars = list(text)
    for _ in range(r.randint(1, 8)):
        if not chars:
            break
        chars[r.randint(0, len(chars) - 1)] = r.choice(CHAR_POOL)
    return "".join(chars)


def _insert(r, text, others):
    i = _pos(r, text)
    return text[:i] + r.choice(TOKENS) + text[i:]


def _number(r, text, others):
    spans = [m.span() for m in _NUMBER.finditer(text, 0, 200_000)]
    if not spans:
        return _insert(r, text, others)
    a, b = spans[r.randint(0, len(spans) - 1)]
    return text[:a] + r.choice(NUMBER_TOKENS) + text[b:]


def _lines_op(r, text, others):
    lines = text.split("\n")
    if len(lines) < 2:
        return _insert(r, text, others)
    i = r.randint(0, len(lines) - 1)
    op = r.randint(0, 4)
    if op == 0:
        del lines[i]
    elif op == 1:
        lines.insert(i, lines[r.randint(0, len(lines) - 1)])
    elif op == 2:
        j = r.randint(0, len(lines) - 1)
        lines[i], lines[j] = lines[j], lines[i]
    elif op == 3:
        lines[i:i + 1] = [lines[i]] * r.randint(2, 300)
    else:
        lines[i] = lines[i].upper() if r.randint(0, 1) else lines[i].lower()
    return "\n".join(lines)


def _splice(r, text, others):
    other = r.choice(others)
    return text[: _pos(r, text)] + other[_pos(r, other):]


def _mix(r, text, others):
    other = r.choice(others)
    return other + text if r.randint(0, 1) else text + other


def _bytes_noise(r, text, others):
    n = r.randint(0, 64)
    noise = "".join(chr(r.randint(0, 0x10FFFF) if r.randint(0, 3) == 0 else r.randint(0, 0xFF)) for _ in range(n))
    if r.randint(0, 3) == 0:
        return noise
    i = _pos(r, text)
    return text[:i] + noise + text[i:]


_JSON_VALUES = (None, True, False, -1, 0, 1.5, 2**32, 2**64, -(2**40), "", "0x", "zz", "0xffffffff", "0b" + "1" * 32,
                "0b" + "2" * 32, [], {}, [[]], {"function": 1}, "eax")


def _json_tree(r, text, others):
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        return _flip(r, text, others)
    holder, key = None, None
    node = doc
    for _ in range(r.randint(0, 6)):  # a short random walk into the document
        if isinstance(node, dict) and node:
            key = r.choice(sorted(node))
        elif isinstance(node, list) and node:
            key = r.randint(0, len(node) - 1)
        else:
            break
        holder, node = node, node[key]
    op = r.randint(0, 6)
    if holder is None:
        if op == 0:
            doc = [doc]
        elif op == 1:
            doc = {"entries": doc}
        else:
            doc = r.choice(_JSON_VALUES)
    elif op == 0:
        del holder[key]
    elif op == 1:
        holder[key] = r.choice(_JSON_VALUES)
    elif op == 2 and isinstance(holder, list):
        holder.insert(key, holder[key])  # a duplicated element
    elif op == 2 and isinstance(holder, dict):
        holder[str(key) + "_"] = holder[key]  # an unknown key
    elif op == 3:
        holder[key] = [node]
    elif op == 4:
        holder[key] = {"x": node}
    elif op == 5 and isinstance(node, (int, float)) and not isinstance(node, bool):
        holder[key] = r.choice((-node, node * 2**40, str(node), hex(int(node)) if node == node else "nan"))
    else:
        depth = r.randint(1, 3000)
        return json.dumps(doc).replace(json.dumps(node), "[" * depth + json.dumps(node) + "]" * depth, 1)
    return json.dumps(doc, indent=r.choice((None, 1)))


_ATTR = re.compile(r"\s(\w+)='[^']*'")
_ELEM = re.compile(r"<cpuid [^>]*/>")


def _xml_op(r, text, others):
    op = r.randint(0, 7)
    if op == 0:  # drop an attribute
        spans = [m.span() for m in _ATTR.finditer(text, 0, 100_000)]
        if spans:
            a, b = r.choice(spans)
            return text[:a] + text[b:]
    elif op == 1:  # duplicate an element, or many
        spans = [m.span() for m in _ELEM.finditer(text, 0, 100_000)]
        if spans:
            a, b = r.choice(spans)
            return text[:b] + (text[a:b] + "\n") * r.randint(1, 400) + text[b:]
    elif op == 2:  # deep nesting
        depth = r.randint(1, 50_000)
        i = text.find("<cpuid ")
        if i >= 0:
            return text[:i] + "<x>" * depth + "</x>" * depth + text[i:]
    elif op == 3:  # a huge attribute
        return text.replace("<cpuid ", "<cpuid junk='" + "A" * r.randint(1, 2_000_000) + "' ", 1)
    elif op == 4:  # a DTD or entity
        return r.choice(('<?xml version="1.0"?>\n<!DOCTYPE cpudata [<!ENTITY e "x">]>\n',
                         '<!DOCTYPE cpudata SYSTEM "http://localhost/x.dtd">\n',
                         '<?xml version="1.0" encoding="UTF-16"?>\n', '<?xml version="1.1"?>\n')) + text
    elif op == 5:  # a namespaced or renamed root
        return text.replace("<cpudata", r.choice(("<cpudata xmlns='urn:x'", "<CPUDATA", "<cpu:data")), 1)
    elif op == 6:  # an attribute given twice
        return text.replace("<cpuid ", "<cpuid eax='0x1' ", 1)
    return _number(r, text, others)


_GENERIC = (_truncate, _cut, _flip, _insert, _number, _lines_op, _splice, _mix, _bytes_noise)
OPS: dict[str, tuple[Callable, ...]] = {
    "kvm-json": _GENERIC + (_json_tree,) * 4,
    "firecracker": _GENERIC + (_json_tree,) * 4,
    "libvirt-xml": _GENERIC + (_xml_op,) * 4,
    "cpuid-raw": _GENERIC + (_lines_op, _number),
    "libcpuid": _GENERIC + (_lines_op, _number),
    "proc-cpuinfo": _GENERIC + (_lines_op, _number),
}


def mutate(r: Chooser, fmt: str) -> str:
    """One fuzzed input derived from a seed of ``fmt`` (1-3 stacked mutations; sometimes a seed as is)."""
    pool = seeds()
    text = r.choice(pool[fmt])
    others = [t for f in FORMATS for t in pool[f][:2]]
    for _ in range(r.randint(0, 3)):
        text = r.choice(OPS[fmt])(r, text, others)
    return text


# -- the outcome rule ----------------------------------------------------------------

_WHERE = re.compile(
    r"line \d+|column \d+|entry \d+|element \d+|cpuid_modifiers|guest_cpu_config|byte \d+|offset \d+|"
    r"\b(?:function|index|flags|eax|ebx|ecx|edx|eax_in|ecx_in|leaf|subleaf|register|bitmap)\b"
)
_EXPECT = re.compile(
    r"expected|must|refused|limit|cannot|not |no |only|unknown|missing|twice|too deep|nested"
)


def message_problem(err: InputError, source: str | None) -> str | None:
    """Why ``err`` does not meet the rule (names the source, and where or what), or None."""
    text = str(err)
    if "\n" in text or "\r" in text:
        return "the message spans several lines"
    if len(text) > 600:
        return f"the message is {len(text)} characters long"
    if source is not None and not text.startswith(f"{source}:"):
        return "the message does not start with the source"
    if not (_WHERE.search(err.detail) or err.where) and not _EXPECT.search(err.detail):
        return "the message says neither where nor what was expected"
    return None


def check_outcome(parse: Callable[[], object], source: str | None) -> tuple[str, str | None]:
    """Run ``parse``; ``("table", None)``, ``("input-error", None)`` or ``("other", why)``."""
    try:
        result = parse()
    except InputError as e:
        why = message_problem(e, source)
        return ("input-error", None) if why is None else ("other", f"InputError with a bad message ({why}): {e!s:.300}")
    except Exception as e:  # noqa: BLE001 - that is what we are counting
        return "other", f"{type(e).__name__}: {e!s:.300}"
    if not isinstance(result, CpuidTable):
        return "other", f"returned {type(result).__name__}, not a CpuidTable"
    return "table", None


# -- Hypothesis strategies -----------------------------------------------------------------

try:
    from hypothesis import strategies as st
except ImportError:  # the bench can run without Hypothesis
    st = None


class _DrawChooser:
    """A :class:`Chooser` whose choices are Hypothesis draws (so failures shrink)."""

    def __init__(self, draw):
        self._draw = draw

    def randint(self, a: int, b: int) -> int:
        return self._draw(st.integers(a, b))

    def choice(self, seq):
        return self._draw(st.sampled_from(seq))

    def random(self) -> float:
        return self._draw(st.floats(0, 1, exclude_max=True))


if st is not None:

    @st.composite
    def fuzzed_input(draw, fmt: str) -> str:
        """A mutated real input of ``fmt``."""
        return mutate(_DrawChooser(draw), fmt)

    u32 = st.integers(0, 0xFFFF_FFFF)
    small = st.integers(0, 0x40)
    # functions near the interesting ranges, and any u32
    functions = st.one_of(st.integers(0, 0x24), st.integers(0x4000_0000, 0x4000_0010),
                          st.integers(0x8000_0000, 0x8000_0028), u32)
    flags = st.one_of(st.sampled_from((0, FLAG_SIGNIFICANT_INDEX, 2, 4, 7)), u32)

    entries = st.builds(CpuidEntry, functions, st.one_of(small, u32), flags, u32, u32, u32, u32)

    def tables(max_size: int = 256) -> "st.SearchStrategy[CpuidTable]":
        """Any table: random function, index, flags and registers, 0..max_size entries (duplicates allowed)."""
        sizes = st.one_of(st.integers(0, 8), st.integers(0, max_size))  # small tables, and any size up to the limit
        return sizes.flatmap(lambda n: st.lists(entries, min_size=n, max_size=n)).map(CpuidTable)

    random_text = st.text(alphabet=st.characters(codec=None), max_size=400)
    random_bytes = st.binary(max_size=400)
else:  # pragma: no cover
    fuzzed_input = tables = None
