"""CPU templates as review inputs (issue 16): Firecracker custom CPU templates and QEMU CPU models, applied to a
host's KVM_GET_SUPPORTED_CPUID as the VMM applies them; `cpuidkit review TEMPLATE` and `cpuidkit fleet --template`."""

from __future__ import annotations

import json
import os
import random
import shutil

import pytest
from conftest import DUMPS, ROOT

from cpuidkit.analysis.migrate import KVM_PROVIDED
from cpuidkit.analysis.templates import (
    apply_on_host,
    field_rows,
    load_template,
    parse_template_text,
    qemu_model_template,
    recorded_qemu_models,
    template_fleet,
)
from cpuidkit.cli.main import main
from cpuidkit.core.bits import U32
from cpuidkit.core.catalog import catalog, qemu_feature_positions
from cpuidkit.core.hosts import HostProfile
from cpuidkit.core.sources import firecracker, load
from cpuidkit.core.templates import CpuTemplate, Modifier, apply_template
from cpuidkit.core.xsave import supported_xcr0
from cpuidkit.errors import InputError
from cpuidkit.kvm.check import check

TEMPLATES = sorted((ROOT / "data" / "firecracker-templates").glob("*.json"))
HOSTS = ("cascade-lake", "epyc-milan", "sapphire-rapids")
QEMU_MODELS = ("Skylake-Server", "Cascadelake-Server", "Cooperlake", "Icelake-Server", "EPYC-Rome", "EPYC-Milan")


def _bitmaps(path):
    """(leaf, subleaf, register) -> the template's bitmap text, read independently of the importer."""
    doc = json.loads(path.read_text())
    return {
        (int(m["leaf"], 16), int(m["subleaf"], 16), r["register"]): r["bitmap"][2:].replace("_", "")
        for m in doc["cpuid_modifiers"]
        for r in m["modifiers"]
    }


def test_every_firecracker_x86_template_is_here():
    names = {p.name for p in TEMPLATES}
    assert {"T2.json", "T2S.json", "T2CL.json", "T2A.json", "C3.json"} <= names
    assert len(names) == 9
    readme = (ROOT / "data" / "firecracker-templates" / "README.md").read_text()
    assert "Apache" in readme and "81b38b9dad6056d7a48073e95ac5a9aed51cb2ab" in readme


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.stem)
def test_parse_reads_every_bitmap_bit(path):
    t = firecracker.parse_template(path.read_text(), path.name)
    forced = t.forced()
    maps = _bitmaps(path)
    assert set(forced) == set(maps)
    for key, text in maps.items():
        mask, value = forced[key]
        for i, ch in enumerate(reversed(text)):
            assert bool(mask >> i & 1) == (ch != "x"), (key, i)
            if ch != "x":
                assert (value >> i & 1) == int(ch), (key, i)
    doc = json.loads(path.read_text())
    assert [m.address for m in t.msr_modifiers] == [int(m["addr"], 16) for m in doc.get("msr_modifiers", [])]


def _stored_checks(applied, host, kernel="6.18"):
    """The forced bits in the table KVM stores equal the template's, wherever neither KVM (runtime or vendor
    owned) nor the VMM's normalisation owns the field, and no refused modifier was skipped."""
    out = check(
        applied.table, kernel=kernel, vendor=host.vendor_for(None), host=host, state={"xfeature_permission": 1 << 18}
    )
    owners = {}
    for o in out.fields:
        for bit in range(o.field.lo, o.field.hi + 1):
            owners[(o.field.leaf, o.subleaf, o.field.register, bit)] = o.owner
    refused_keys = {
        (m.leaf, m.subleaf) for m in applied.template.modifiers if not _exact(applied.base, m.leaf, m.subleaf)
    }
    compared = 0
    if not out.accepted:
        return out, compared
    for (leaf, sub, reg), (mask, value) in applied.forced.items():
        if (leaf, sub) in refused_keys:
            continue
        entry = _exact(out.stored, leaf, sub)
        assert entry is not None, (leaf, sub)
        stored = entry.reg(reg)
        for bit in range(32):
            if not mask >> bit & 1 or applied.normalised.get((leaf, sub, reg), 0) >> bit & 1:
                continue
            if owners.get((leaf, sub, reg, bit), "passthrough") not in ("passthrough", "unknown"):
                continue
            assert stored >> bit & 1 == value >> bit & 1, (hex(leaf), sub, reg, bit)
            compared += 1
    return out, compared


def _exact(table, leaf, sub):
    return next((e for e in table if e.function == leaf and e.index == sub), None)


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.stem)
def test_forced_bits_reach_the_stored_table(path, host):
    h = HostProfile.builtin(host)
    t = firecracker.parse_template(path.read_text(), path.name)
    applied = apply_on_host(t, h, kernel="6.18")
    _out, compared = _stored_checks(applied, h)
    assert _out.accepted, _out.errno  # KVM takes every Firecracker template on these hosts
    assert compared > 20


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.stem)
def test_cli_review_every_template_exits_0_or_1(path, host, capsys, tmp_path):
    out = tmp_path / "r.json"
    code = main(["review", str(path), "--host", host, "--format", "json", "-o", str(out)])
    assert code in (0, 1), capsys.readouterr().err
    doc = json.loads(out.read_text())
    app = doc["template_application"]
    assert app["kind"] == "firecracker" and app["name"] == path.name
    cannot = bool(app["refused"] or app["unbacked"] or doc["verdict"] != "accepted")
    assert code == (1 if cannot else 0)
    # the JSON's forced bits are the template's own
    maps = _bitmaps(path)
    for key, text in maps.items():
        entry = app["forced"][f"{key[0]:#x}.{key[1]}.{key[2]}"]
        assert entry["mask"] == int(text.replace("0", "1").replace("x", "0"), 2)


def test_normalisation_overrides_the_template_as_firecracker_documents():
    h = HostProfile.builtin("cascade-lake")
    text = json.dumps(
        {
            "cpuid_modifiers": [
                {
                    "leaf": "0x1",
                    "subleaf": "0x0",
                    "flags": 0,
                    "modifiers": [{"register": "ecx", "bitmap": "0b0xxxxxx0xxxxxxxx1xxxxxxxxxxxxxxx"}],
                }
            ]
        }
    )
    t = parse_template_text(text, "mine.json")
    applied = apply_on_host(t, h, kernel="6.18")
    ecx = _exact(applied.table, 1, 0).ecx
    assert ecx >> 31 & 1 == 1  # HYPERVISOR set after the template cleared it
    assert ecx >> 24 & 1 == 1  # TSC_DEADLINE set
    assert ecx >> 15 & 1 == 0  # PDCM cleared after the template set it
    assert applied.provenance(1, 0, "ecx", 1 << 31) == "vmm"
    leaf0 = _exact(applied.table, 0, 0)
    assert (leaf0.ebx, leaf0.ecx, leaf0.edx) == (h.cpuid.get(0).ebx, h.cpuid.get(0).ecx, h.cpuid.get(0).edx)
    assert _exact(applied.table, 0xB, 1) is not None  # inserted
    leaf_a = _exact(applied.table, 0xA, 0)
    assert leaf_a is None or (leaf_a.eax, leaf_a.ebx, leaf_a.ecx, leaf_a.edx) == (0, 0, 0, 0)


def test_amd_normalisation_differs():
    h = HostProfile.builtin("epyc-milan")
    t = CpuTemplate("empty", "firecracker", ())
    applied = apply_on_host(t, h, kernel="6.18", vcpus=4)
    assert _exact(applied.table, 0x80000001, 0).ecx >> 22 & 1 == 1  # TOPOEXT
    assert _exact(applied.table, 7, 0).edx >> 29 & 1 == 0  # ARCH_CAPABILITIES
    assert _exact(applied.table, 0x80000008, 0).ecx & 0xFF == 3  # vcpus - 1
    assert _exact(applied.table, 1, 0).edx >> 28 & 1 == 1  # HTT with 4 vCPUs
    assert (_exact(applied.table, 1, 0).ebx >> 16) & 0xFF == 4


def test_a_modifier_on_a_leaf_kvm_does_not_offer_makes_firecracker_refuse(capsys, tmp_path):
    h = HostProfile.builtin("cascade-lake")
    base = h.supported_cpuid(kernel="6.18")
    absent = next(leaf for leaf in range(0x14, 0x40) if not any(e.function == leaf for e in base))
    mod = {
        "leaf": hex(absent),
        "subleaf": "0x0",
        "flags": 0,
        "modifiers": [{"register": "eax", "bitmap": "0b" + "x" * 31 + "1"}],
    }
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"cpuid_modifiers": [mod]}))
    code = main(["review", str(path), "--host", "cascade-lake", "--format", "json", "-o", str(tmp_path / "o.json")])
    assert code == 1
    doc = json.loads((tmp_path / "o.json").read_text())
    assert any(f"leaf {absent:#x}" in r for r in doc["template_application"]["refused"])


# Firecracker's normalisation owns these leaf 1/7 bits whatever a template says (data/firecracker-normalisation.csv)
NORMALISED_BITS = {
    "intel": {
        (1, "ecx", 15),
        (1, "ecx", 24),
        (1, "ecx", 31),
        (1, "edx", 28),
        (7, "ebx", 6),
        (7, "ebx", 13),
        (7, "ecx", 5),
    },
    "amd": {(1, "ecx", 15), (1, "ecx", 24), (1, "ecx", 31), (1, "edx", 28), (7, "edx", 29), (0x80000001, "ecx", 22)},
}


def test_unbacked_is_exactly_the_forced_ones_kvm_does_not_offer():
    """A forced 1 is "not backed" when the base lacks it, unless the VMM's normalisation owns the bit (it sets or
    clears it whatever the template says: WAITPKG, PDCM, HYPERVISOR …)."""
    rng = random.Random(16)
    cat = catalog()
    flags = [f for f in cat if f.is_flag and f.leaf in (1, 7, 0x80000001) and f.sub_lo == 0]
    for host in HOSTS:
        h = HostProfile.builtin(host)
        base = h.supported_cpuid(xfeature_perm=U32, kernel="6.18")
        for _ in range(20):
            picked = rng.sample(flags, 12)
            mods = tuple(Modifier(f.leaf, 0, f.register, f.mask, f.mask) for f in picked)
            applied = apply_template(CpuTemplate("random", "firecracker", mods), base, host_cpuid=h.cpuid)
            got = {(k, b) for k, m in applied.unbacked().items() for b in range(32) if m >> b & 1}
            owned = NORMALISED_BITS["amd" if h.cpuid.vendor == "AuthenticAMD" else "intel"]
            want = set()
            for f in picked:
                e = _exact(base, f.leaf, 0)
                if (f.leaf, f.register, f.lo) in owned:
                    continue
                if e is None or not e.reg(f.register) & f.mask:
                    want.add(((f.leaf, 0, f.register), f.lo))
            assert got == want


def test_bad_templates_are_bad_input(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "cpuid_modifiers": [
                    {"leaf": "0x1", "subleaf": "0x0", "flags": 0, "modifiers": [{"register": "ecx", "bitmap": "0b12"}]}
                ]
            }
        )
    )
    assert main(["review", str(bad), "--host", "cascade-lake"]) == 2
    err = capsys.readouterr().err
    assert "bad.json" in err and "cpuid_modifiers[0]" in err
    arm = tmp_path / "arm.json"
    arm.write_text(json.dumps({"cpuid_modifiers": [], "reg_modifiers": []}))
    t = firecracker.parse_template(arm.read_text(), "arm.json")  # an empty x86 list is a (do-nothing) template
    assert t.modifiers == ()
    arm.write_text(json.dumps({"reg_modifiers": [{"addr": "0x1", "bitmap": "0b1"}]}))
    with pytest.raises(InputError, match="aarch64"):
        firecracker.parse_template(arm.read_text(), "arm.json")
    assert main(["review", "qemu:No-Such-CPU", "--host", "cascade-lake"]) == 2
    assert main(["review", "qemu:bad name;rm", "--host", "cascade-lake"]) == 2
    assert main(["review", str(ROOT / "data/hosts/cascade-lake.json"), "--host", "cascade-lake", "--base", "live"]) == 2


def test_a_fingerprint_is_still_a_table_and_an_x_bitmap_still_says_template():
    fp = DUMPS / "firecracker" / "fingerprint_INTEL_CASCADELAKE_6.18host.json"
    assert len(load(fp)) > 10
    with pytest.raises(InputError, match="CPU template to apply"):
        load(TEMPLATES[0])


# -- QEMU models ------------------------------------------------------------------------------------------


def test_qemu_feature_table_positions_are_catalog_fields():
    cat = catalog()
    bits = qemu_feature_positions()
    assert len(bits) > 200
    named = [n for n, (leaf, sub, reg, bit) in bits.items() if cat.at(leaf, sub, reg, bit) is not None]
    assert len(named) / len(bits) > 0.9
    # spot facts from the SDM: AVX-512F is 7.0.EBX[16], SSE4.2 is 1.ECX[20], LM is 0x80000001.EDX[29]
    assert bits["avx512f"] == (7, 0, "ebx", 16)
    assert bits["sse4.2"] == (1, 0, "ecx", 20)
    assert bits["lm"] == (0x80000001, 0, "edx", 29)


@pytest.mark.parametrize("model", QEMU_MODELS)
def test_recorded_qemu_model_applies(model):
    t = qemu_model_template(model, use_qemu=False)
    props = recorded_qemu_models()["models"][model]["props"]
    h = HostProfile.builtin("cascade-lake")
    applied = apply_on_host(t, h, kernel="6.18")
    for name, (leaf, sub, reg, bit) in qemu_feature_positions().items():
        key = name.replace("_", "-")
        value = props.get(key, props.get(name))
        if not isinstance(value, bool):
            continue
        e = _exact(applied.table, leaf, sub)
        if e is None:  # only leaves beyond the model's level / xlevel are missing
            top = max(props["xlevel"], props.get("min-xlevel", 0)) if leaf >= 0x80000000 else props["level"]
            assert leaf > top, (model, name)
            continue
        assert (e.reg(reg) >> bit & 1) == int(value), (model, name)
    e1 = _exact(applied.table, 1, 0)
    family = (e1.eax >> 8) & 0xF
    family += (e1.eax >> 20) & 0xFF if family == 0xF else 0
    assert family == props["family"]
    assert applied.table.vendor == props["vendor"]


@pytest.mark.qemu
@pytest.mark.parametrize("host", ("cascade-lake", "epyc-milan"))
@pytest.mark.parametrize("model", QEMU_MODELS[:5])
def test_cli_review_qemu_models_on_hosts(model, host, tmp_path, capsys):
    out = tmp_path / "r.json"
    code = main(["review", f"qemu:{model}", "--host", host, "--format", "json", "-o", str(out)])
    assert code in (0, 1), capsys.readouterr().err
    doc = json.loads(out.read_text())
    app = doc["template_application"]
    assert app["kind"] == "qemu" and "recorded" not in app["source"]
    h = HostProfile.builtin(host)
    t = load_template(f"qemu:{model}")
    applied = apply_on_host(t, h, kernel="6.18")
    _out, compared = _stored_checks(applied, h)
    assert compared > 100 or not _out.accepted
    rows = field_rows(applied, _out)
    assert {r.name for r in rows if r.unbacked} == set(app["unbacked"])


@pytest.mark.qemu
@pytest.mark.kvm
def test_live_qemu_expansion_matches_the_record():
    from cpuidkit.lab.qmp import expand_cpu_model

    rec = recorded_qemu_models()
    live = expand_cpu_model("Cascadelake-Server", accel="kvm")
    assert live["props"]["vme"] is True and live["props"]["kvmclock"] is True  # KVM's defaults, not TCG's
    if live["qemu_version"] == rec["qemu_version"]:
        assert live["props"] == rec["models"]["Cascadelake-Server"]["props"]


@pytest.mark.qemu
def test_qemu_names_are_properties_of_the_real_binary():
    import subprocess

    cmds = [
        {"execute": "qmp_capabilities"},
        {"execute": "qom-list-properties", "arguments": {"typename": "max-x86_64-cpu"}},
        {"execute": "quit"},
    ]
    done = subprocess.run(
        ["qemu-system-x86_64", "-machine", "none", "-accel", "tcg", "-nodefaults", "-display", "none", "-qmp", "stdio"],
        input="".join(json.dumps(c) + "\n" for c in cmds),
        capture_output=True,
        text=True,
        timeout=60,
    )
    props = set()
    for line in done.stdout.splitlines():
        msg = json.loads(line)
        if isinstance(msg.get("return"), list):
            props |= {p["name"] for p in msg["return"]}
    missing = [n for n in qemu_feature_positions() if n not in props and n.replace("_", "-") not in props]
    assert not missing


# -- template x fleet --------------------------------------------------------------------------------------


def test_template_fleet_runs_iff_every_forced_one_is_backed(tmp_path, capsys):
    folder = tmp_path / "hosts"
    folder.mkdir()
    for name in ("Cooperlake", "EPYC-7502-32-Core", "Core-i7-8700", "Xeon-Platinum-8268"):
        shutil.copy(DUMPS / "libvirt" / f"x86_64-cpuid-{name}.xml", folder)
    for path in TEMPLATES:
        t = firecracker.parse_template(path.read_text(), path.name)
        hosts = [HostProfile.from_file(p) for p in sorted(folder.iterdir())]
        tf = template_fleet(t, hosts, kernel="6.18")
        for r, h in zip(tf.runs, hosts):
            a = apply_on_host(t, h, kernel="6.18")
            perm = 1 << 18 if supported_xcr0(a.table) & (1 << 18) else 0  # the VMM asks for AMX first
            verdict = check(
                a.table, kernel="6.18", vendor=h.vendor_for(None), host=h, state={"xfeature_permission": perm}
            )
            assert r.runs == (not a.refused and not a.unbacked(KVM_PROVIDED) and verdict.accepted)
            for col, cell in zip(tf.columns(), tf.matrix()[tf.runs.index(r)]):
                assert (cell == "!") == (col in r.unbacked)
        code = main(["fleet", str(folder), "--template", str(path), "--format", "json", "-o", str(tmp_path / "f.json")])
        doc = json.loads((tmp_path / "f.json").read_text())
        assert code == (0 if all(h["runs"] for h in doc["hosts"]) else 1)
        assert doc["runs_on"] == sum(r.runs for r in tf.runs)
    # a Cascade Lake template forces ERMS, which the Zen 2 EPYC 7502 lacks
    t2cl = firecracker.parse_template((ROOT / "data/firecracker-templates/T2CL.json").read_text(), "T2CL.json")
    tf = template_fleet(t2cl, [HostProfile.from_file(p) for p in sorted(folder.iterdir())], kernel="6.18")
    epyc = next(r for r in tf.runs if "EPYC" in r.host)
    assert "erms" in epyc.unbacked and not epyc.runs
    assert main(
        ["fleet", str(folder), "--template", str(TEMPLATES[0]), "--format", "html", "-o", str(tmp_path / "f.html")]
    ) in (0, 1)
    assert "data:image/png;base64," in (tmp_path / "f.html").read_text()


@pytest.mark.parametrize(
    "fingerprint", sorted((DUMPS / "firecracker").glob("fingerprint_*host.json")), ids=lambda p: p.stem
)
def test_normalisation_matches_firecrackers_own_fingerprints(fingerprint):
    """Firecracker's fingerprints (`cpu-template-helper fingerprint dump`, 1 vCPU, no template) are what its
    normalisation produced on real hosts: every field the model normalises without reading the host must hold the
    fingerprint's value, whatever host the base comes from."""
    fp = load(fingerprint)
    amd = fp.vendor == "AuthenticAMD"
    hosts = {"GENOA": "epyc-genoa", "MILAN": "epyc-milan", "CASCADELAKE": "cascade-lake", "ICELAKE": "ice-lake"}
    hosts |= {"SAPPHIRE_RAPIDS": "sapphire-rapids", "GRANITE_RAPIDS": "granite-rapids"}
    h = HostProfile.builtin(next(v for k, v in hosts.items() if k in fingerprint.name))  # the same CPU model
    applied = apply_on_host(CpuTemplate("none", "firecracker", ()), h, kernel="6.1")
    host_valued = {0x0, 0x80000005, 0x80000006} | (set() if amd else {0x80000002, 0x80000003, 0x80000004})
    host_valued |= {0x8000001D, 0x8000001E} if amd else set()  # copied from the host (another chip of the model)
    compared = 0
    for (leaf, sub, reg), mask in applied.normalised.items():
        if leaf in host_valued:
            continue
        mine, theirs = _exact(applied.table, leaf, sub), _exact(fp, leaf, sub)
        assert theirs is not None, (hex(leaf), sub)
        assert mine.reg(reg) & mask == theirs.reg(reg) & mask, (hex(leaf), sub, reg, hex(mask))
        compared += 1
    assert compared >= 15
    brand = catalog().strings(fp)["brand"]
    assert brand == "AMD EPYC" if amd else brand.startswith("Intel(R) Xeon(R) Processor")


def _qemu_feature_words(names: list[str], accel: str) -> set[tuple[int, int, str, int]]:
    """The CPUID bits QEMU sets (or filters) for ``-cpu base,NAME=on,...`` (QOM feature-words and
    filtered-features of the CPU, no guest)."""
    import subprocess

    cmds = [{"execute": "qmp_capabilities"}]
    cmds += [
        {"execute": "qom-get", "arguments": {"path": "/machine/unattached/device[0]", "property": p}}
        for p in ("feature-words", "filtered-features")
    ]
    cmds.append({"execute": "quit"})
    cpu = ",".join(["base", "apic-id=0", *(f"{n}=on" for n in names)])
    done = subprocess.run(
        ["qemu-system-x86_64", "-machine", "none", "-accel", accel, "-nodefaults", "-display", "none"]
        + ["-cpu", cpu, "-qmp", "stdio"],
        input="".join(json.dumps(c) + "\n" for c in cmds),
        capture_output=True,
        text=True,
        timeout=60,
    )
    bits = set()
    for line in done.stdout.splitlines():
        ret = json.loads(line).get("return")
        if not isinstance(ret, list):
            continue
        for w in ret:
            for b in range(32):
                if w["features"] >> b & 1:
                    bits.add((w["cpuid-input-eax"], w.get("cpuid-input-ecx", 0), w["cpuid-register"].lower(), b))
    return bits


@pytest.mark.qemu
def test_qemu_column_positions_are_the_binarys_own():
    """QEMU's own feature table, asked of the binary: with ``-cpu base,NAME=on`` QEMU's CPU reports (in its
    feature-words, or filtered-features where TCG cannot give it) exactly the bit the catalog's QEMU column names.
    Names go in batches holding at most one name per register, so every bit is attributed to one name."""
    bits = qemu_feature_positions()
    by_word: dict = {}
    for name in sorted(bits):
        by_word.setdefault(bits[name][:3], []).append(name)
    side_effects = {(0xD, 0, "eax", 0), (0xD, 0, "eax", 1)}  # xsave turns on x87/SSE state components
    checked = 0
    for accel, names_of in (("tcg", lambda n: not n.startswith("kvm")), ("kvm", lambda n: n.startswith("kvm"))):
        if accel == "kvm" and not os.access("/dev/kvm", os.R_OK | os.W_OK):
            continue
        words = {w: [n for n in ns if names_of(n)] for w, ns in by_word.items()}
        base = _qemu_feature_words([], accel)
        for i in range(max((len(v) for v in words.values()), default=0)):
            batch = [ns[i] for ns in words.values() if i < len(ns)]
            got = _qemu_feature_words(batch, accel) - base - side_effects
            want = {bits[n] for n in batch}
            if "kvmclock" in batch:
                want |= {(0x40000001, 0, "eax", 0), (0x40000001, 0, "eax", 3)}
            assert got == want, (accel, sorted(got ^ want))
            checked += len(batch)
    assert checked >= 190


def test_bits_kvm_backs_outside_its_supported_table_are_not_flagged():
    """TSC deadline and HYPERVISOR are absent from KVM_GET_SUPPORTED_CPUID before 6.14 (userspace learns TSC
    deadline from KVM_CAP_TSC_DEADLINE_TIMER; the VMM sets HYPERVISOR), yet KVM backs them: a template forcing
    them is not "not backed"; a feature KVM never offers (MONITOR) is."""
    h = HostProfile.builtin("cascade-lake")
    bits = "0b" + "".join("1" if b in (31, 24, 3) else "x" for b in range(31, -1, -1))
    text = json.dumps(
        {
            "cpuid_modifiers": [
                {"leaf": "0x1", "subleaf": "0x0", "flags": 0, "modifiers": [{"register": "ecx", "bitmap": bits}]}
            ]
        }
    )
    t = parse_template_text(text, "t.json")
    a = apply_on_host(t, h, kernel="6.1")
    base1 = _exact(a.base, 1, 0).ecx
    assert not base1 >> 24 & 1 and not base1 >> 31 & 1  # the 6.1 prediction lacks both
    names = {r.name for r in field_rows(a) if r.unbacked}
    assert names == {"monitor"}


def test_review_findings_that_a_reviewer_caught():
    """Four cases from a review of this feature: a leaf with no register modifier is still looked up (Firecracker
    refuses a missing one); a forced 1 the normalisation clears (WAITPKG) is not "not backed"; QEMU's kvmclock sets
    both of its bits; an AMX host runs an empty template in the fleet (the VMM asks for AMX permission first)."""
    h = HostProfile.builtin("cascade-lake")
    empty_leaf = json.dumps({"cpuid_modifiers": [{"leaf": "0x99", "subleaf": "0x0", "flags": 1, "modifiers": []}]})
    a = apply_on_host(parse_template_text(empty_leaf, "e.json"), h, kernel="6.18")
    assert any("leaf 0x99" in r for r in a.refused)
    flags_only = json.dumps({"cpuid_modifiers": [{"leaf": "0x7", "subleaf": "0x0", "flags": 0, "modifiers": []}]})
    a = apply_on_host(parse_template_text(flags_only, "f.json"), h, kernel="6.18")
    assert _exact(a.table, 7, 0).flags == 0 and not a.refused
    waitpkg = "0b" + "".join("1" if b == 5 else "x" for b in range(31, -1, -1))
    text = json.dumps(
        {
            "cpuid_modifiers": [
                {"leaf": "0x7", "subleaf": "0x0", "flags": 1, "modifiers": [{"register": "ecx", "bitmap": waitpkg}]}
            ]
        }
    )
    a = apply_on_host(parse_template_text(text, "w.json"), h, kernel="6.18")
    assert not _exact(a.table, 7, 0).ecx >> 5 & 1 and not a.unbacked()
    t = qemu_model_template("Cascadelake-Server", use_qemu=False)
    assert recorded_qemu_models()["models"]["Cascadelake-Server"]["props"]["kvmclock"] is True
    assert t.forced()[(0x40000001, 0, "eax")][1] & 0b1001 == 0b1001
    amx = [HostProfile.builtin(n) for n in ("sapphire-rapids", "granite-rapids", "emerald-rapids")]
    tf = template_fleet(CpuTemplate("none", "firecracker", ()), amx, kernel="6.18")
    assert all(r.runs and r.verdict == "accepted" for r in tf.runs), [(r.host, r.errno) for r in tf.runs]
