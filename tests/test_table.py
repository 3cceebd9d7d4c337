"""CpuidEntry / CpuidTable: 32-bit checks, KVM's lookup rules, immutability, diff, named fields."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from cpuidkit import CpuidEntry, CpuidTable, InputError, LookupFailed, diff
from cpuidkit.core.bits import FLAG_SIGNIFICANT_INDEX, extract_bits, insert_bits, parse_field_spec


@pytest.mark.parametrize("field", ["function", "index", "flags", "eax", "ebx", "ecx", "edx"])
@pytest.mark.parametrize("bad", [-1, 1 << 32, 1.5, "0x1", True, None])
def test_entry_rejects_values_that_are_not_u32(field, bad):
    kwargs = {"function": 1, field: bad}
    with pytest.raises(InputError) as ei:
        CpuidEntry(**kwargs)
    assert field in str(ei.value)


def test_entry_accepts_the_full_u32_range():
    e = CpuidEntry(0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0, 0xFFFFFFFF, 0)
    assert e.eax == 0xFFFFFFFF and e.significant_index


def test_entry_is_immutable():
    e = CpuidEntry(1)
    with pytest.raises(AttributeError):
        e.eax = 5  # type: ignore[misc]


def test_lookup_first_match_wins_and_index_counts_only_with_the_flag():
    t = CpuidTable(
        [
            CpuidEntry(7, 1, FLAG_SIGNIFICANT_INDEX, eax=0x71),
            CpuidEntry(7, 0, FLAG_SIGNIFICANT_INDEX, ebx=0x70),
            CpuidEntry(6, 5, 0, eax=0x6A),  # index not significant: matches any subleaf
            CpuidEntry(6, 0, 0, eax=0x6B),  # shadowed duplicate
        ]
    )
    assert t.get(7, 0).ebx == 0x70
    assert t.get(7, 1).eax == 0x71
    assert t.get(7, 2) is None
    assert t.get(6, 0).eax == 0x6A and t.get(6, 99).eax == 0x6A
    assert t.get_any(7).eax == 0x71  # KVM_CPUID_INDEX_NOT_SIGNIFICANT: first of the function
    assert t.get(0x8000_0000) is None


def test_edits_return_new_tables_and_leave_the_old_alone():
    t = CpuidTable([CpuidEntry(1, ecx=0)])
    t2 = t.set_field("1.ecx[28]", 1)
    assert t.get(1).ecx == 0 and t2.get(1).ecx == 1 << 28
    t3 = t2.set_field("0x7.0.ebx[5]", 1)
    assert len(t2) == 1 and len(t3) == 2
    assert t3.get(7, 0).flags == FLAG_SIGNIFICANT_INDEX  # indexed leaves get the flag when added
    assert t3.without(7).get(7) is None and t3.get(7) is not None


def test_named_fields_use_the_catalog():
    t = CpuidTable([CpuidEntry(1), CpuidEntry(7, 0, 1)])
    t = t.set_field("avx2", 1).set_field("pni", 1)
    assert t.get(7, 0).ebx == 1 << 5
    assert t.get(1).ecx == 1
    assert t.get_field("avx2") == 1 and t.get_field("sse4_2") == 0
    assert CpuidTable().get_field("avx2") is None


def test_unknown_field_names_are_clear_errors():
    with pytest.raises(LookupFailed, match="no CPUID field named 'not_a_feature'"):
        CpuidTable().set_field("not_a_feature", 1)
    with pytest.raises(InputError, match="does not fit"):
        CpuidTable([CpuidEntry(1)]).set_field("1.eax[3:0]", 16)


def test_field_spec_parsing():
    r = parse_field_spec("0x80000008.0.eax[15:8]")
    assert (r.leaf, r.subleaf, r.register, r.hi, r.lo) == (0x80000008, 0, "eax", 15, 8)
    assert parse_field_spec("1.ecx").width == 32
    assert parse_field_spec("avx2") is None
    with pytest.raises(InputError):
        parse_field_spec("1.ecx[3:7]")


def test_vendor_and_max_leaves():
    ebx, edx, ecx = (int.from_bytes(s, "little") for s in (b"Genu", b"ineI", b"ntel"))
    t = CpuidTable([CpuidEntry(0, eax=0x1F, ebx=ebx, ecx=ecx, edx=edx), CpuidEntry(0x80000000, eax=0x80000008)])
    assert t.vendor == "GenuineIntel" and t.max_basic_leaf == 0x1F and t.max_extended_leaf == 0x80000008


def test_diff_reports_registers_entries_and_flags():
    a = CpuidTable([CpuidEntry(1, ecx=1), CpuidEntry(6), CpuidEntry(7, 0, 1)])
    b = CpuidTable([CpuidEntry(1, ecx=3), CpuidEntry(7, 0, 0), CpuidEntry(0xD, 0, 1)])
    got = {(c.function, c.index, c.register, c.kind) for c in diff(a, b)}
    assert got == {
        (1, 0, "ecx", "changed"),
        (6, 0, None, "removed"),
        (7, 0, "flags", "changed"),
        (0xD, 0, None, "added"),
    }
    assert diff(a, a) == []


def test_equality_is_positional_like_kvm():
    a = CpuidTable([CpuidEntry(1), CpuidEntry(6)])
    b = CpuidTable([CpuidEntry(6), CpuidEntry(1)])
    assert a != b and diff(a, b) == []
    assert a == CpuidTable(list(a)) and hash(a) == hash(CpuidTable(list(a)))


@given(st.integers(0, 2**32 - 1), st.integers(0, 31), st.integers(0, 31), st.data())
def test_insert_then_extract_round_trips(value, a, b, data):
    hi, lo = max(a, b), min(a, b)
    field = data.draw(st.integers(0, (1 << (hi - lo + 1)) - 1))
    new = insert_bits(value, hi, lo, field)
    assert extract_bits(new, hi, lo) == field
    mask = ((1 << (hi - lo + 1)) - 1) << lo
    assert new & ~mask == value & ~mask
