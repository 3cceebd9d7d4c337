"""The fleet migration matrix: it agrees with `cpuidkit migrate` pair by pair, the common baseline moves
everywhere, and `cpuidkit fleet` works on a folder of dumps."""

from __future__ import annotations

import io
import json
import random
import subprocess
import sys

import pytest
from conftest import DUMPS, ROOT, libvirt_dumps
from synthetic_hosts import synthetic_fleet

import cpuidkit.analysis.fleet as fleet_module
import cpuidkit.analysis.migrate as migrate_module
from cpuidkit.analysis.figures import plot_matrix
from cpuidkit.analysis.fleet import (
    BIT,
    RULES,
    common_baseline,
    fleet,
    load_hosts,
)
from cpuidkit.analysis.lint import lint_table
from cpuidkit.analysis.migrate import migrate
from cpuidkit.cli.main import main
from cpuidkit.cli.review import terminal_progress
from cpuidkit.core.catalog import catalog
from cpuidkit.core.hosts import HostProfile, builtin_hosts
from cpuidkit.core.sources import load
from cpuidkit.errors import InputError
from cpuidkit.live import host_profile


@pytest.fixture(scope="module")
def libvirt_hosts():
    return load_hosts(DUMPS / "libvirt")


@pytest.fixture(scope="module")
def pool(libvirt_hosts):
    """The 28 libvirt dumps, the built-in hosts (one with a measured KVM_GET_SUPPORTED_CPUID) and 60 perturbed."""
    synthetic = synthetic_fleet([h.cpuid for h in libvirt_hosts], 88, seed=7)[len(libvirt_hosts) :]
    return libvirt_hosts + list(builtin_hosts().values()) + synthetic


def _expected(guest_host, dest, kernel, vendor):
    r = migrate(guest_host.cpuid, dest, source=guest_host, kernel=kernel, vendor=vendor)
    return (
        {f.rule for f in r.findings if f.severity == "blocker"},
        {f.rule for f in r.findings if f.severity == "warning"},
        r.verdict,
    )


@pytest.mark.parametrize("kernel,vendor", [("6.18", None), ("5.10", None), ("6.1", "svm"), ("6.18", "pvm")])
def test_matrix_agrees_with_migrate_on_sampled_pairs(pool, kernel, vendor):
    f = fleet(pool, kernel=kernel, vendor=vendor)
    n = len(pool)
    assert f.blockers.shape == f.warnings.shape == (n, n)
    rnd = random.Random(f"{kernel}{vendor}")
    pairs = rnd.sample([(i, j) for i in range(n) for j in range(n)], 400)
    pairs += [(i, i) for i in range(0, n, 9)]
    for i, j in pairs:
        blockers, warnings, verdict = _expected(pool[i], pool[j], kernel, vendor)
        assert set(f.rules_at(i, j)) == blockers, (pool[i].name, pool[j].name)
        assert set(f.rules_at(i, j, "warning")) == warnings, (pool[i].name, pool[j].name)
        assert f.verdict(i, j) == verdict


def test_every_rule_of_migrate_is_a_matrix_rule():
    documented = {
        line.split("``")[1] for line in migrate_module.__doc__.splitlines() if line.startswith("``") and "  " in line
    }
    assert documented == set(RULES)


def test_exact_column_for_a_measured_pvm_host(libvirt_hosts):
    """A destination with a measured pvm rewrite is computed with migrate() itself (and agrees)."""
    h = builtin_hosts()["live-kvm-epyc"]
    rewritten = HostProfile(
        name="pvm-host",
        cpuid=h.cpuid,
        supported=h.supported,
        vendor_module="pvm",
        vendor_rewrite={"registers": {"0x1.0.ecx": {"force1": 1, "force0": 0}}, "dropped": []},
    )
    hosts = libvirt_hosts[:6] + [rewritten]
    f = fleet(hosts)
    assert f.exact_columns == [6]
    for i in range(len(hosts)):
        blockers, warnings, _ = _expected(hosts[i], rewritten, "6.18", None)
        assert set(f.rules_at(i, 6)) == blockers
        assert set(f.rules_at(i, 6, "warning")) == warnings


@pytest.mark.kvm
def test_matrix_with_the_live_host(libvirt_hosts):
    live = host_profile()
    hosts = libvirt_hosts[::4] + [live]
    f = fleet(hosts)
    for i in range(len(hosts)):
        for j in range(len(hosts)):
            blockers, warnings, _ = _expected(hosts[i], hosts[j], "6.18", None)
            assert set(f.rules_at(i, j)) == blockers
            assert set(f.rules_at(i, j, "warning")) == warnings


def test_known_pairs(libvirt_hosts):
    f = fleet(libvirt_hosts)
    idx = {h.name.removeprefix("x86_64-cpuid-"): n for n, h in enumerate(libvirt_hosts)}
    # Sierra Forest: 52-bit MAXPHYADDR without LA57 (4-level EPT): its own CPUID is blocked even on itself
    assert "maxphyaddr" in f.rules_at(idx["Xeon-6731E"], idx["Xeon-6731E"])
    # AMX guest onto a host without AMX
    r = f.rules_at(idx["Xeon-w7-3465X"], idx["Xeon-Platinum-8268"])
    assert {"amx_permission", "cpuid_rejected", "feature_missing"} <= set(r)
    # LA57 guest onto a 48-bit host
    assert "linear_width" in f.rules_at(idx["Ice-Lake-Server"], idx["Xeon-Platinum-8268"])
    # cross-vendor is a warning, never a blocker by itself
    assert "vendor" in f.rules_at(idx["EPYC-7713-64-Core"], idx["Xeon-Platinum-8268"], "warning")
    assert not f.blockers[idx["Xeon-Gold-6148"], idx["Xeon-Platinum-8268"]] & BIT["vendor"]
    s = f.summary()
    assert s["pairs"] == 28 * 27 == s["ok"] + s["ok_with_warnings"] + s["blocked"]
    assert f.destinations(idx["Xeon-Gold-6148"]) == [
        j for j in range(28) if j != idx["Xeon-Gold-6148"] and not f.blocked[idx["Xeon-Gold-6148"], j]
    ]


def test_explain_is_migrate(libvirt_hosts):
    f = fleet(libvirt_hosts[:5])
    rep = f.explain(0, 1)
    assert {x.rule for x in rep.blockers} == set(f.rules_at(0, 1))


def test_progress_is_reported(libvirt_hosts):
    seen = []
    f = fleet(libvirt_hosts, progress=lambda done, total, stage: seen.append((done, total, stage)))
    assert ("pairs" in {s for _, _, s in seen}) and seen[-1] == (28, 28, "pairs")
    assert all(0 < d <= t for d, t, _ in seen)
    assert len(f) == 28


def test_baseline_moves_to_every_host(libvirt_hosts):
    intel = [h for h in libvirt_hosts if h.vendor == "GenuineIntel"]
    servers = [h for h in intel if "Xeon" in h.name and h.maxphyaddr >= 46]
    pools = [
        libvirt_hosts,
        intel,
        servers,
        list(builtin_hosts().values()),
        synthetic_fleet([h.cpuid for h in libvirt_hosts], 120, seed=11),
    ]
    for kernel in ("6.18", "5.10"):
        for pool in pools:
            b = common_baseline(pool, kernel=kernel)
            for h in pool:
                rep = migrate(b.table, h, kernel=kernel)
                assert not rep.blockers, (kernel, h.name, [x.rule for x in rep.blockers])
            assert not [x for x in lint_table(b.table) if x.severity == "illegal"]
    b = common_baseline(servers)
    assert b.xcr0 & 0b111 == 0b111 and b.maxphyaddr == min(h.maxphyaddr for h in servers)
    assert "avx512f" not in catalog().features(b.table)  # not every Xeon server here has AVX-512
    assert not b.xcr0 & (0b111 << 5)


def test_baseline_of_identical_hosts_is_the_host():
    h = builtin_hosts()["cascade-lake"]
    b = common_baseline([h, HostProfile.from_table(h.cpuid, name="twin")])
    assert b.xcr0 == h.xcr0_mask and b.maxphyaddr == h.maxphyaddr
    assert set(b.dropped_features) <= {
        "dtes64",
        "monitor",
        "ds_cpl",
        "smx",
        "est",
        "tm2",
        "cid",
        "sdbg",
        "xtpr",
        "dca",
        "pn",
        "dts",
        "acpi",
        "ss",
        "ht",
        "tm",
        "ia64",
        "pbe",
        "intel_pt",
    }


def test_plot_returns_a_figure(libvirt_hosts):
    from matplotlib.figure import Figure

    fig = plot_matrix(fleet(libvirt_hosts[:8]))
    assert isinstance(fig, Figure)
    big = fleet(synthetic_fleet([h.cpuid for h in libvirt_hosts], 150))
    assert isinstance(plot_matrix(big), Figure)


def test_the_fleet_module_is_the_matrix_only():
    """The progress line is the command's, the plot the figures module's, the synthetic pool the tests'."""
    assert not {"terminal_progress", "synthetic_fleet", "plot_matrix"} & set(vars(fleet_module))
    assert not hasattr(fleet_module.Fleet, "plot")


def test_numpy_and_matplotlib_are_imported_lazily():
    code = (
        "import sys, cpuidkit.analysis.fleet, cpuidkit.analysis.review, cpuidkit.cli.review; "
        "print('numpy' in sys.modules, 'matplotlib' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_load_hosts_errors(tmp_path):
    with pytest.raises(InputError):
        load_hosts(tmp_path / "missing")
    with pytest.raises(InputError):
        load_hosts(tmp_path)  # empty
    (tmp_path / "junk.txt").write_text("not a dump\n")
    with pytest.raises(InputError):
        load_hosts(tmp_path)


# -- the command ---------------------------------------------------------------------------------------


@pytest.fixture
def dump_dir(tmp_path):
    d = tmp_path / "pool"
    d.mkdir()
    for p in libvirt_dumps()[::3]:
        (d / p.name).write_bytes(p.read_bytes())
    (d / ".hidden").write_text("skipped")
    return d


def test_cli_table(dump_dir, capsys):
    assert main(["fleet", str(dump_dir)]) == 0
    out = capsys.readouterr().out
    assert "hosts, kernel 6.18" in out and "common baseline" in out and " X " in out


def test_cli_json_and_baseline(dump_dir, tmp_path, capsys):
    base = tmp_path / "baseline.json"
    assert main(["fleet", str(dump_dir), "--format", "json", "--kernel", "6.1", "--baseline", str(base)]) == 0
    doc = json.loads(capsys.readouterr().out)
    n = len(doc["hosts"])
    assert doc["rules"] == list(RULES) and len(doc["blockers"]) == n and len(doc["blockers"][0]) == n
    assert doc["kernel"] == "6.1" and doc["baseline"]["entries"]
    assert len(load(base)) == len(doc["baseline"]["entries"])


def test_cli_html(dump_dir, tmp_path):
    out = tmp_path / "fleet.html"
    assert main(["fleet", str(dump_dir), "--format", "html", "-o", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("<!DOCTYPE html>") and "data:image/png;base64," in text


def test_cli_bad_input(tmp_path, capsys):
    assert main(["fleet", str(tmp_path / "nope")]) == 2
    assert "not a folder" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{")
    assert main(["fleet", str(tmp_path)]) == 2
    assert main(["fleet", str(tmp_path), "--kernel", "six"]) == 2


def test_terminal_progress_draws_one_line():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    out = Tty()
    show = terminal_progress(out, min_interval=0)
    for done in (1, 2, 3):
        show(done, 3, "pairs")
    text = out.getvalue()
    assert "\rfleet: pairs 3/3 (100%)" in text and "\n" not in text
    assert terminal_progress(io.StringIO()) is None  # not a terminal: no progress line
