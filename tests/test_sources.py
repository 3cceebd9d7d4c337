"""Importers and writers: every real dump in tests/data imports; bad input is an InputError naming file and place."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from conftest import DUMPS, LIVE_DATA, all_dumps, firecracker_dumps, libcpuid_dumps, libvirt_dumps
from cpuidkit import CpuidEntry, CpuidTable, InputError
from cpuidkit.core.sources import detect_format, dumps, load, loads, save

EXPECTED_FORMAT = {".xml": "libvirt-xml", ".test": "libcpuid"}


def test_the_corpus_is_there():
    assert len(libvirt_dumps()) == 28 and len(firecracker_dumps()) == 18 and len(libcpuid_dumps()) == 3


@pytest.mark.parametrize("path", all_dumps(), ids=lambda p: p.name)
def test_every_real_dump_imports(path: Path, tmp_path: Path):
    t = load(path)
    assert len(t) > 10
    assert t.vendor in {"GenuineIntel", "AuthenticAMD", "HygonGenuine", "CentaurHauls", "  Shanghai  "}
    # detection uses the content, not the name: the same bytes under a bland name give the same table
    anon = tmp_path / "dump"
    anon.write_bytes(path.read_bytes())
    assert load(anon) == t
    fmt = EXPECTED_FORMAT.get(path.suffix) or ("firecracker" if "fingerprint" in path.name else "kvm-json")
    assert detect_format(path.read_text()) == fmt


def test_libvirt_values_match_the_xml_text():
    path = DUMPS / "libvirt" / "x86_64-cpuid-EPYC-7502-32-Core.xml"
    t = load(path)
    # <cpuid eax_in='0x00000007' ecx_in='0x00' eax='0x00000000' ebx='0x219c91a9' ecx='0x00400004' .../>
    e = t.get(7, 0)
    assert (e.ebx, e.ecx, e.flags) == (0x219C91A9, 0x00400004, 1)
    assert t.get(0xD, 9).eax == 0x40  # PKRU size, indexed leaf looked up by subleaf


def test_firecracker_bitmaps_decode_msb_first():
    path = DUMPS / "firecracker" / "fingerprint_INTEL_ICELAKE_6.1host.json"
    doc = json.loads(path.read_text())
    mod = doc["guest_cpu_config"]["cpuid_modifiers"][0]
    want = {m["register"]: int(m["bitmap"][2:], 2) for m in mod["modifiers"]}
    got = load(path).get(int(mod["leaf"], 16), int(mod["subleaf"], 16))
    assert {r: got.reg(r) for r in want} == want
    assert load(path).vendor == "GenuineIntel"


def test_libcpuid_dumps_pick_a_cpu():
    path = DUMPS / "libcpuid" / "zhaoxin-kaixian-kx-6000g.test"
    first, second = load(path), load(path, cpu=1)
    assert first.get(1).ebx != second.get(1).ebx  # APIC ids differ per logical CPU
    assert first.get(0xD, 9).ebx == 0xA80  # "[SL 09]" is subleaf 9 (PKRU offset 2688)
    with pytest.raises(InputError, match=r"CPU 99 is not in this dump"):
        load(path, cpu=99)


def test_live_kvm_json_keeps_flags_and_hex_strings():
    t = load(LIVE_DATA / "supported-cpuid.json")
    assert len(t) == 61
    assert t.get(7, 0).flags == 1 and t.get(6).flags == 0


def _host_raw() -> str:
    lines = ["CPU 0:", "   0x00000000 0x00: eax=0x0000000d ebx=0x756e6547 ecx=0x6c65746e edx=0x49656e69",
             "   0x00000007 0x00: eax=0x00000000 ebx=0x00000020 ecx=0x00000000 edx=0x00000000",
             "CPU 1:", "   0x00000000 0x00: eax=0x0000000d ebx=0x756e6547 ecx=0x6c65746e edx=0x49656e69",
             "   0x00000007 0x00: eax=0x00000000 ebx=0x00000000 ecx=0x00000000 edx=0x00000000"]
    return "\n".join(lines) + "\n"


def test_cpuid_raw_all_cpus_and_one_cpu():
    text = _host_raw()
    assert loads(text).get(7, 0).ebx == 0x20
    assert loads(text, cpu=1).get(7, 0).ebx == 0
    assert loads(text).get(7, 0).flags == 1  # leaf 7 is indexed for KVM
    one = "CPU:\n" + "\n".join(text.splitlines()[1:3]) + "\n"
    assert loads(one).get(0).eax == 0xD


BAD_INPUTS = [
    ("kvm-json", '[{"function": 1, "index": 0, "eax": 1, "ebx": 2, "ecx": 3}]', r"entry 0 \(function 0x1\).*missing register\(s\) edx"),
    ("kvm-json", '[{"function": "0x1", "eax": "zz", "ebx": 0, "ecx": 0, "edx": 0}]', r"eax must be a number"),
    ("kvm-json", '[{"function": 1, "eax": 4294967296, "ebx": 0, "ecx": 0, "edx": 0}]', r"fit in 32 bits"),
    ("kvm-json", '[{"function": 1, "eax": true, "ebx": 0, "ecx": 0, "edx": 0}]', r"boolean"),
    ("kvm-json", '[{"function": 1,\n "eax": 0,', r"line 2 column"),
    ("kvm-json", '{"nope": []}', r'"entries"'),
    ("kvm-json", '[{"function": 1, "eax": 0, "ebx": 0, "ecx": 0, "edx": 0, "colour": 1}]', r"unknown key"),
    ("cpuid-raw", "CPU 0:\n   0x00000000 0x00: eax=0x1 ebx=0x2 ecx=0x3 edx=0x4\n   garbage here\n", r"line 3: expected"),
    ("libvirt-xml", "<cpudata arch='x86'><cpuid eax_in='0x1' ecx_in='0x0' eax='0x1' ebx='0x1' ecx='0x1'/></cpudata>", r"element 1 <cpuid>.*missing attribute\(s\) edx"),
    ("libvirt-xml", "<cpudata arch='x86'>\n<cpuid eax_in='0x1'\n", r"line 2 column"),
    ("libvirt-xml", "<notcpudata/>", r"expected a <cpudata> root"),
    ("firecracker", '{"cpuid_modifiers": [{"leaf": "0x1", "subleaf": "0x0", "flags": 0, "modifiers": [{"register": "eax", "bitmap": "0b1x"}]}]}', r"cpuid_modifiers\[0\] \(leaf 0x1.0\) modifiers\[0\].*32 bits"),
    ("firecracker", '{"cpuid_modifiers": [{"leaf": "0x1", "subleaf": "0x0", "flags": 0, "modifiers": [{"register": "eax", "bitmap": "0b' + "x" * 32 + '"}]}]}', r"don't-care"),
    ("libcpuid", "CPUID 00000000: 0000000D-746E6543-736C7561-48727561\nCPUID 0000001: bad\n", r"line 2: expected"),
]


@pytest.mark.parametrize("fmt,text,pattern", BAD_INPUTS)
def test_bad_input_names_file_place_and_expectation(tmp_path, fmt, text, pattern):
    f = tmp_path / "input.dump"
    f.write_text(text)
    with pytest.raises(InputError, match=pattern) as ei:
        load(f, format=fmt)
    assert str(f) in str(ei.value)
    assert isinstance(ei.value, ValueError)


def test_unrecognised_and_unreadable_files(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("hello world\n")
    with pytest.raises(InputError, match="cannot tell the format"):
        load(f)
    with pytest.raises(InputError, match="no such file"):
        load(tmp_path / "missing.json")
    b = tmp_path / "bin"
    b.write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(InputError, match="not UTF-8"):
        load(b)
    with pytest.raises(InputError, match="is a folder"):
        load(tmp_path)


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<cpudata arch='x86'><cpuid eax_in='0x0' ecx_in='0x0' eax='&lol3;' ebx='0x0' ecx='0x0' edx='0x0'/></cpudata>
"""
EXTERNAL = """<?xml version="1.0"?>
<!DOCTYPE cpudata [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<cpudata arch='x86'><cpuid eax_in='0x0' ecx_in='0x0' eax='&xxe;' ebx='0x0' ecx='0x0' edx='0x0'/></cpudata>
"""


@pytest.mark.parametrize("doc", [BILLION_LAUGHS, EXTERNAL], ids=["billion-laughs", "external-entity"])
def test_hostile_xml_is_refused(doc, tmp_path):
    f = tmp_path / "evil.xml"
    f.write_text(doc)
    with pytest.raises(InputError, match="refused: the XML uses a DTD or entities"):
        load(f)


def test_oversized_input_is_refused_with_the_limit(tmp_path):
    f = tmp_path / "huge.json"
    with open(f, "wb") as fh:
        fh.truncate(17 * 1024 * 1024)
    with pytest.raises(InputError, match="limit is 16777216"):
        load(f)


def _random_table(rng: random.Random) -> CpuidTable:
    return CpuidTable(
        CpuidEntry(rng.getrandbits(32), rng.getrandbits(32), rng.getrandbits(32),
                   rng.getrandbits(32), rng.getrandbits(32), rng.getrandbits(32), rng.getrandbits(32))
        for _ in range(rng.randint(0, 40))
    )


def test_kvm_json_round_trips_exactly():
    rng = random.Random(2)
    for _ in range(50):
        t = _random_table(rng)
        assert loads(dumps(t, "kvm-json"), format="kvm-json") == t


def test_cpuid_raw_round_trips_registers_and_order():
    rng = random.Random(3)
    for _ in range(50):
        t = CpuidTable(e.replace(flags=1 if e.function in (4, 7, 0xD) else 0) for e in _random_table(rng))
        back = loads(dumps(t, "cpuid-raw"), format="cpuid-raw")
        assert [(e.function, e.index, e.eax, e.ebx, e.ecx, e.edx) for e in back] == [
            (e.function, e.index, e.eax, e.ebx, e.ecx, e.edx) for e in t
        ]


def test_save_is_atomic_and_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    t = load(LIVE_DATA / "supported-cpuid.json")
    out = tmp_path / "cpu.json"
    save(t, out)
    before = out.read_bytes()
    assert load(out) == t

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        save(t.without(7), out)
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["cpu.json"]  # no temp file left behind


# -- flags of raw dumps: KVM's indexed leaves, and leaves the dump shows to be indexed (issue 15) -------------


def _xml(rows: list[tuple[int, int, int]]) -> str:
    lines = [f"  <cpuid eax_in='{fn:#010x}' ecx_in='{idx:#04x}' eax='{a:#010x}' ebx='0x0' ecx='0x0' edx='0x0'/>" for fn, idx, a in rows]
    return "<cpudata arch='x86'>\n" + "\n".join(lines) + "\n</cpudata>\n"


def test_libvirt_flags_a_leaf_whose_subleaves_differ():
    """EPYC 7502's dump holds two different subleaves of 0x80000020 (PQoS), a leaf KVM does not index: both are
    flagged, so KVM's lookup (first match, index only where flagged) finds subleaf 1 as subleaf 1."""
    from cpuidkit.core.indexed import INDEXED_FUNCTIONS, indexed_in_dump

    t = load(DUMPS / "libvirt" / "x86_64-cpuid-EPYC-7502-32-Core.xml")
    subs = [e for e in t if e.function == 0x80000020]
    assert [e.index for e in subs] == [0, 1] and subs[0].ebx != subs[1].ebx
    assert 0x80000020 not in INDEXED_FUNCTIONS and 0x80000020 in indexed_in_dump(t)
    assert all(e.flags & 1 for e in subs)
    assert t.get(0x80000020, 1) == subs[1] and t.get(0x80000020, 0) == subs[0]
    # the same for Intel's 0x1B (PCONFIG) and 0x23 where a dump has several different subleaves
    for name, fn in (("Xeon-6788P", 0x23), ("Core-i7-1270P", 0x1B)):
        t = load(DUMPS / "libvirt" / f"x86_64-cpuid-{name}.xml")
        assert all(e.flags & 1 for e in t if e.function == fn), name


def test_alike_subleaves_stay_unflagged_and_kvm_leaves_stay_flagged(tmp_path):
    p = tmp_path / "d.xml"
    # leaf 6 twice alike (a CPU that ignores ECX there), 0x80000020 twice different, leaf 7 once (KVM indexes it)
    p.write_text(_xml([(0, 0, 0x20), (6, 0, 4), (6, 1, 4), (7, 0, 0), (0x80000020, 0, 0), (0x80000020, 1, 0xB)]))
    flags = {(e.function, e.index): e.flags for e in load(p)}
    assert flags[(6, 0)] == flags[(6, 1)] == 0
    assert flags[(7, 0)] == 1
    assert flags[(0x80000020, 0)] == flags[(0x80000020, 1)] == 1


def test_flags_of_a_dump_survive_cpuid_raw(tmp_path):
    """`cpuid -r` text carries no flags: the writer notes only those the reader would not find by the same rule."""
    t = load(DUMPS / "libvirt" / "x86_64-cpuid-EPYC-9334-32-Core.xml")
    text = dumps(t, "cpuid-raw")
    assert " f=" not in text  # every flag follows the rule
    assert list(loads(text)) == list(t)
    odd = CpuidTable(e.replace(flags=0) if e.function == 0x80000020 else e for e in t)  # unflagged on purpose
    assert list(loads(dumps(odd, "cpuid-raw"))) == list(odd)
