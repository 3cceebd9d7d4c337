"""A migration pool at once: the ordered-pair migration matrix and the common baseline CPUID.

Given N host profiles, :func:`fleet` answers :func:`cpuidkit.analysis.migrate.migrate`'s
question for every ordered pair (source ``i`` → destination ``j``) at once:
"can a guest that was given host *i*'s own CPUID (host-passthrough) move to
host *j*?".  The rules and their severities are ``migrate``'s, with its rule
ids; only the arithmetic differs: each host is reduced once to numbers
(feature bitmasks packed into ``uint64`` words, XCR0 masks, XSAVE offsets and
sizes, MAXPHYADDR, LA57, vendor) and every rule is a numpy expression over
all N×N pairs, computed in blocks of rows (so progress can be shown and the
memory stays bounded).  No Python code runs per pair.

One case is not vectorised: a destination that runs the measured ``pvm``
module (a live host) rewrites the guest's table after KVM_SET_CPUID2 in ways
only the model knows, so its column is computed with ``migrate`` itself.

:func:`common_baseline` builds the largest CPUID every host of the pool can
take a guest with: the features all providers offer, the XCR0 components
every host supports with one layout, the smallest usable MAXPHYADDR, LA57
only if every host has it.  ``migrate`` of that table to any host of the
pool finds no blocker (``tests/test_fleet.py`` checks it).

The matrix is drawn by :func:`cpuidkit.analysis.figures.plot_matrix`; ``cpuidkit fleet`` shows progress on
a terminal (``cpuidkit.cli.review``), the course with a widget (``cpuidkit.ui.course``).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cpuidkit.analysis.addressing import (
    guest_linear_bits,
    guest_maxphyaddr,
    guest_phys_bits_field,
    host_has_five_level_tdp,
    smaller_maxphyaddr,
    usable_gpa_bits,
)
from cpuidkit.analysis.lint import dependencies
from cpuidkit.analysis.migrate import (
    _SKIP,
    _VIRTUALIZABLE_REGS,
    KVM_PROVIDED,
    KVM_SYNTHESIZED,
    _flag_fields,
    _never_offered,
    migrate,
)
from cpuidkit.core.addresses import has_la57, linear_width_of
from cpuidkit.core.catalog import catalog
from cpuidkit.core.hosts import HostProfile
from cpuidkit.core.kernels import DEFAULT_KERNEL, kernel_profile
from cpuidkit.core.table import CpuidTable
from cpuidkit.core.xsave import mask_names, standard_size, supported_xcr0, supported_xss
from cpuidkit.errors import InputError
from cpuidkit.kvm.vcpu import SimulatedVcpu
from cpuidkit.kvm.xcr import sgx_fields

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from cpuidkit.core.hosts import HostProfile

__all__ = [
    "RULES",
    "Fleet",
    "fleet",
    "load_hosts",
    "common_baseline",
    "Baseline",
    "Progress",
]

# migrate's rule ids, in the order of the bits of Fleet.blockers / Fleet.warnings
RULES = (
    "vendor",
    "cpuid_rejected",
    "feature_missing",
    "feature_synthesized",
    "amx_permission",
    "xcr0_components",
    "sgx_xfrm",
    "xsave_layout",
    "xsave_size",
    "maxphyaddr",
    "guest_phys_bits",
    "linear_width",
)
BIT = {r: 1 << n for n, r in enumerate(RULES)}

# progress(done, total, stage): called as hosts are read ("hosts"), reduced ("facts") and rows done ("pairs")
Progress = Callable[[int, int, str], None]
_TILEDATA = 1 << 18
_U64 = (1 << 64) - 1
_ROW_BLOCK = 128


# -- progress -------------------------------------------------------------------------------------


def _tick(progress: Progress | None, done: int, total: int, stage: str) -> None:
    if progress is not None:
        progress(done, total, stage)


# -- loading ----------------------------------------------------------------------------------------


def load_hosts(folder: str | os.PathLike, *, progress: Progress | None = None) -> list[HostProfile]:
    """Every dump in ``folder`` (any format ``cpuidkit decode`` reads) as a host profile, by file name.

    Hidden files and sub-folders are skipped; a file that is not a dump is an
    :class:`InputError` naming it.
    """

    d = Path(folder)
    if not d.is_dir():
        raise InputError("not a folder of host dumps", source=str(folder))
    files = sorted(p for p in d.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise InputError("the folder holds no dumps", source=str(folder))
    stems = [p.stem for p in files]
    hosts = []
    for n, p in enumerate(files, start=1):
        h = HostProfile.from_file(p)
        if stems.count(p.stem) > 1:
            h = HostProfile.from_table(h.cpuid, name=p.name)
        hosts.append(h)
        _tick(progress, n, len(files), "hosts")
    return hosts


# -- per-host facts -----------------------------------------------------------------------------------


def _feature_fields(kernel: str):
    """The flags ``migrate`` compares for feature_missing / feature_synthesized, in its order."""

    return [f for f in _flag_fields(kernel) if f.name not in _SKIP and f.owner != "runtime"]


@dataclass
class _Facts:
    """One host reduced to what the rules read, as a guest (its own CPUID) and as a destination."""

    name: str
    vendor: str | None
    module: str  # vendor module as destination
    exact: bool  # column computed with migrate() (pvm with a measured rewrite)
    # as a guest
    gbits: list  # flag bits per feature field (bool), not KVM-provided
    entries: int
    width_ok: bool
    wants_dyn: bool
    m0: int  # 0xD.0 EDX:EAX
    gx: int  # the XCR0 the guest runs with (migrate's default)
    gx_rule_bad: bool  # an XCR0 rule other than the subset rule fails
    has_d0: bool
    d0_ecx: int
    comps: dict
    g_maxpa: int
    gpb: int
    g57: bool
    g_linear: int
    sgx_xfrm: int | None
    # as a destination
    pbits: list
    xcr0_mask: int
    ksx: int  # kvm_caps.supported_xcr0 for the kernel
    grant_ok: bool
    perm_after: int
    h_maxpa: int
    tdp: bool
    five: bool
    usable: int
    smaller_ok: bool
    h57: bool
    h_linear: int


def _host_facts(h: HostProfile, kp, vendor: str | None, fields, provided: frozenset) -> _Facts:

    t = h.cpuid
    module = h.vendor_for(vendor)
    own_module = h.vendor_for(None)
    provider = h.supported if h.supported is not None else t
    cache_g: dict = {}
    cache_p: dict = {}

    def bit(table, cache, f) -> bool:
        key = (f.leaf, f.sub_lo)
        if key not in cache:
            cache[key] = table.get(f.leaf, f.sub_lo)
        e = cache[key]
        return e is not None and bool(getattr(e, f.register) >> f.lo & 1)

    gbits = [bit(t, cache_g, f) and f.name not in provided for f in fields]
    pbits = [bit(provider, cache_p, f) for f in fields]
    m0 = supported_xcr0(t)
    gx = (m0 & h.kvm_supported_xcr0(own_module)) | 1
    v = SimulatedVcpu(kernel=kp, vendor=module, host=h)
    v.derived = dataclasses.replace(v.derived, guest_supported_xcr0=_U64)
    gx_rule_bad = v.xcr0_violation(gx) is not None
    pos = None
    for n, e in enumerate(t):
        if e.function == 0x80000008:
            pos = n
            break
    width_ok = True
    if pos is not None:
        allowed = {int(x) for x in kp.value("vaddr_width_values").split(";")}
        width_ok = linear_width_of(t[pos]) in allowed
    d0 = t.get(0xD, 0)
    g57 = has_la57(t)
    sgx = sgx_fields(t)
    grant_ok = bool(h.xcr0_mask & _TILEDATA)
    perm_after = h.default_guest_perm() | (_TILEDATA if grant_ok else 0)
    tdp = h.tdp and module != "pvm"
    five = host_has_five_level_tdp(h)
    return _Facts(
        name=h.name,
        vendor=t.vendor,
        module=module,
        exact=module == "pvm" and bool(h.vendor_rewrite),
        gbits=gbits,
        entries=len(t),
        width_ok=width_ok,
        wants_dyn=bool(m0 & _TILEDATA),
        m0=m0,
        gx=gx,
        gx_rule_bad=gx_rule_bad,
        has_d0=d0 is not None,
        d0_ecx=d0.ecx if d0 is not None else 0,
        comps=h.xsave_components,
        g_maxpa=guest_maxphyaddr(t),
        gpb=guest_phys_bits_field(t),
        g57=g57,
        g_linear=guest_linear_bits(t),
        sgx_xfrm=sgx["xfrm"] if sgx["sgx"] else None,
        pbits=pbits,
        xcr0_mask=h.xcr0_mask,
        ksx=h.kvm_supported_xcr0(module, kp),
        grant_ok=grant_ok,
        perm_after=perm_after,
        h_maxpa=h.maxphyaddr,
        tdp=tdp,
        five=five,
        usable=usable_gpa_bits(h.maxphyaddr, tdp=tdp, five_level_tdp=five),
        smaller_ok=smaller_maxphyaddr(module, tdp=tdp, module_param=h.allow_smaller_maxphyaddr)["available"],
        h57=has_la57(h.cpuid),
        h_linear=h.linear_bits,
    )


def _pack(rows: np.ndarray) -> np.ndarray:
    """Bool rows → uint64 words (N, W), bit f of the row in word f // 64."""
    import numpy as np  # heavy: imported on use

    a = np.asarray(rows, dtype=bool)
    if a.ndim != 2:
        a = a.reshape(len(rows), -1)
    n, f = a.shape
    width = max(1, (f + 63) // 64) * 64
    padded = np.zeros((n, width), dtype=bool)
    padded[:, :f] = a
    return np.packbits(padded, axis=1, bitorder="little").view("<u8").astype(np.uint64)


# -- the result -----------------------------------------------------------------------------------------


@dataclass
class Fleet:
    """The ordered-pair matrix of a pool: ``blockers[i, j]`` / ``warnings[i, j]`` are bitmasks over
    :data:`RULES` for a guest moving from host ``i`` to host ``j`` (the diagonal is a host to itself)."""

    hosts: list  # HostProfile
    kernel: str
    vendor: str | None
    blockers: np.ndarray  # (N, N) uint16
    warnings: np.ndarray  # (N, N) uint16
    exact_columns: list[int] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def names(self) -> list[str]:
        return [h.name for h in self.hosts]

    def __len__(self) -> int:
        return len(self.hosts)

    @property
    def blocked(self) -> np.ndarray:
        return self.blockers != 0

    def verdicts(self) -> np.ndarray:
        """(N, N) int8: 0 ok, 1 ok-with-warnings, 2 blocked (migrate's verdicts)."""
        import numpy as np  # heavy: imported on use

        out = np.where(self.warnings != 0, 1, 0).astype(np.int8)
        out[self.blockers != 0] = 2
        return out

    def verdict(self, i: int, j: int) -> str:
        return ("ok", "ok-with-warnings", "blocked")[int(self.verdicts()[i, j])]

    def rules_at(self, i: int, j: int, severity: str = "blocker") -> list[str]:
        m = int((self.blockers if severity == "blocker" else self.warnings)[i, j])
        return [r for r in RULES if m & BIT[r]]

    def explain(self, i: int, j: int):
        """The full :class:`~cpuidkit.analysis.migrate.MigrationReport` for one pair (the scalar rules, with words)."""

        return migrate(
            self.hosts[i].cpuid,
            self.hosts[j],
            source=self.hosts[i],
            kernel=self.kernel,
            vendor=self.vendor,
            guest_name=self.hosts[i].name,
        )

    def rule_counts(self) -> dict[str, dict[str, int]]:
        """How many ordered pairs (off the diagonal) each rule blocks / warns about."""
        import numpy as np  # heavy: imported on use

        off = ~np.eye(len(self), dtype=bool)
        out = {}
        for r in RULES:
            b = int(np.count_nonzero((self.blockers & BIT[r]).astype(bool) & off))
            w = int(np.count_nonzero((self.warnings & BIT[r]).astype(bool) & off))
            out[r] = {"blocker": b, "warning": w}
        return out

    def summary(self) -> dict:
        import numpy as np  # heavy: imported on use

        n = len(self)
        v = self.verdicts()
        off = ~np.eye(n, dtype=bool)
        return {
            "hosts": n,
            "pairs": n * (n - 1),
            "ok": int(np.count_nonzero((v == 0) & off)),
            "ok_with_warnings": int(np.count_nonzero((v == 1) & off)),
            "blocked": int(np.count_nonzero((v == 2) & off)),
            "self_blocked": [self.names[i] for i in range(n) if v[i, i] == 2],
        }

    def destinations(self, i: int) -> list[int]:
        """The hosts a guest from host ``i`` can move to without a blocker (``i`` itself excluded)."""
        return [j for j in range(len(self)) if j != i and not self.blockers[i, j]]

    def as_dict(self, matrix: bool = True) -> dict:
        doc = {
            "kernel": self.kernel,
            "vendor": self.vendor,
            "guest": "each host's own CPUID (host-passthrough), moved with cpuidkit migrate's rules",
            "rules": list(RULES),
            "hosts": [
                {
                    "name": h.name,
                    "vendor": h.vendor,
                    "maxphyaddr": h.maxphyaddr,
                    "linear_bits": h.linear_bits,
                    "xcr0": h.xcr0_mask,
                }
                for h in self.hosts
            ],
            "summary": self.summary(),
            "rule_counts": self.rule_counts(),
        }
        if matrix:
            doc["blockers"] = self.blockers.tolist()
            doc["warnings"] = self.warnings.tolist()
        return doc


# -- the matrix ---------------------------------------------------------------------------------------


def fleet(
    hosts: Sequence[HostProfile] | str | os.PathLike,
    *,
    kernel: str = DEFAULT_KERNEL,
    vendor: str | None = None,
    progress: Progress | None = None,
) -> Fleet:
    """The migration matrix of a pool (host profiles, or a folder of dumps).

    ``vendor`` forces one vendor module for every destination (default: each
    host's, as ``migrate`` picks it).  ``progress(done, total, stage)`` is
    called as hosts are reduced (``"hosts"``) and as blocks of rows are done
    (``"pairs"``).
    """
    import numpy as np  # heavy: imported on use

    t0 = time.perf_counter()
    if isinstance(hosts, (str, os.PathLike)):
        hosts = load_hosts(hosts, progress=progress)
    hosts = list(hosts)
    if not hosts:
        raise InputError("a fleet needs at least one host")
    kp = kernel_profile(kernel)
    fields = _feature_fields(kp.name)
    facts = []
    for n, h in enumerate(hosts, start=1):
        facts.append(_host_facts(h, kp, vendor, fields, KVM_PROVIDED))
        if n % 64 == 0 or n == len(hosts):
            _tick(progress, n, len(hosts), "facts")
    N = len(hosts)
    synth = np.array([f.name in KVM_SYNTHESIZED for f in fields], dtype=bool)
    G = np.asarray([x.gbits for x in facts], dtype=bool).reshape(N, len(fields))
    GM = _pack(G & ~synth)  # guest features whose absence blocks
    GS = _pack(G & synth)  # guest features KVM synthesizes (a warning)
    P = _pack(np.asarray([x.pbits for x in facts], dtype=bool).reshape(N, len(fields)))

    def col(attr, dtype):
        return np.asarray([getattr(x, attr) for x in facts], dtype=dtype)

    u64 = np.uint64
    vend_names = [x.vendor or "" for x in facts]
    vend_ids = {v: n for n, v in enumerate(sorted(set(vend_names)))}
    vend = np.asarray([vend_ids[v] for v in vend_names], dtype=np.int32)
    vend_known = np.asarray([bool(v) for v in vend_names], dtype=bool)
    # as a guest
    rej_alone = col("entries", np.int64) > kp.number("max_cpuid_entries")
    rej_alone |= ~col("width_ok", bool)
    wants_dyn = col("wants_dyn", bool)
    amx_eperm_rule = kp.flag("amx_dynamic_eperm")
    m0 = np.asarray([x.m0 & _U64 for x in facts], dtype=u64)
    gx = np.asarray([x.gx & _U64 for x in facts], dtype=u64)
    gx_bad = col("gx_rule_bad", bool)
    sgx_has = np.asarray([x.sgx_xfrm is not None for x in facts], dtype=bool)
    sgx_x = np.asarray([(x.sgx_xfrm or 0) & _U64 for x in facts], dtype=u64)
    has_d0 = col("has_d0", bool)
    d0_ecx = col("d0_ecx", np.int64)
    g_maxpa = col("g_maxpa", np.int64)
    gpb = col("gpb", np.int64)
    g57 = col("g57", bool)
    g_lin = col("g_linear", np.int64)
    # as a destination
    xmask = np.asarray([x.xcr0_mask & _U64 for x in facts], dtype=u64)
    ksx = np.asarray([x.ksx & _U64 for x in facts], dtype=u64)
    grant_ok = col("grant_ok", bool)
    perm18 = np.asarray([bool(x.perm_after & _TILEDATA) for x in facts], dtype=bool)
    h_maxpa = col("h_maxpa", np.int64)
    tdp = col("tdp", bool)
    usable = col("usable", np.int64)
    smaller_ok = col("smaller_ok", bool)
    h57 = col("h57", bool)
    h_lin = col("h_linear", np.int64)
    # XSAVE components: offsets / sizes by bit, for the bits any host enumerates or any guest enables
    bits = sorted({b for x in facts for b in x.comps} | {b for x in facts for b in range(2, 64) if x.gx >> b & 1})
    bits = [b for b in bits if b >= 2]
    B = len(bits)
    pres = np.zeros((N, B), dtype=bool)
    off = np.zeros((N, B), dtype=np.int64)
    size = np.zeros((N, B), dtype=np.int64)
    for i, x in enumerate(facts):
        for k, b in enumerate(bits):
            c = x.comps.get(b)
            if c is not None:
                pres[i, k], off[i, k], size[i, k] = True, c.offset, c.size
    end = np.where(pres, off + size, 0)
    no_comps_skip = np.asarray([not x.comps and bool(x.gx & ~3) for x in facts], dtype=bool)

    blockers = np.zeros((N, N), dtype=np.uint16)
    warnings = np.zeros((N, N), dtype=np.uint16)
    three = u64(3)
    one = u64(1)
    for r0 in range(0, N, _ROW_BLOCK):
        r1 = min(N, r0 + _ROW_BLOCK)
        R = slice(r0, r1)
        b = np.zeros((r1 - r0, N), dtype=np.uint16)
        w = np.zeros((r1 - r0, N), dtype=np.uint16)
        # vendor
        w |= np.where(
            (vend[R, None] != vend[None, :]) & vend_known[R, None] & vend_known[None, :], BIT["vendor"], 0
        ).astype(np.uint16)
        # features
        miss = np.zeros((r1 - r0, N), dtype=bool)
        syn = np.zeros((r1 - r0, N), dtype=bool)
        for k in range(P.shape[1]):
            notp = ~P[None, :, k]
            miss |= (GM[R, None, k] & notp) != 0
            syn |= (GS[R, None, k] & notp) != 0
        b |= np.where(miss, BIT["feature_missing"], 0).astype(np.uint16)
        w |= np.where(syn, BIT["feature_synthesized"], 0).astype(np.uint16)
        # AMX permission and KVM_SET_CPUID2
        b |= np.where(wants_dyn[R, None] & ~grant_ok[None, :], BIT["amx_permission"], 0).astype(np.uint16)
        eperm = (wants_dyn[R, None] & ~perm18[None, :]) if amx_eperm_rule else np.zeros((r1 - r0, N), dtype=bool)
        rejected = rej_alone[R, None] | eperm
        b |= np.where(rejected, BIT["cpuid_rejected"], 0).astype(np.uint16)
        has_v = ~rej_alone[R, None] & np.ones((1, N), dtype=bool)
        # XCR0 on the destination vCPU
        m0p = np.where(eperm, m0[R, None] & ~u64(_TILEDATA), m0[R, None])
        gsx = m0p & ksx[None, :]
        lost = gx[R, None] & ~(gsx | one)
        xbad = has_v & (gx_bad[R, None] | (lost != 0))
        b |= np.where(xbad, BIT["xcr0_components"], 0).astype(np.uint16)
        # SGX allowed XFRM
        sgx_extra = sgx_x[R, None] & ~(gsx | three)
        w |= np.where(has_v & sgx_has[R, None] & (sgx_extra != 0), BIT["sgx_xfrm"], 0).astype(np.uint16)
        # XSAVE layout and size
        gxm = gx[R, None] & (xmask[None, :] | three)
        moved = np.zeros((r1 - r0, N), dtype=bool)
        before = np.full((r1 - r0, N), 576, dtype=np.int64)
        after = np.full((r1 - r0, N), 576, dtype=np.int64)
        for k, bitno in enumerate(bits):
            en = ((gxm >> u64(bitno)) & one).astype(bool)
            both = en & pres[R, None, k] & pres[None, :, k]
            moved |= both & ((off[R, None, k] != off[None, :, k]) | (size[R, None, k] != size[None, :, k]))
            before = np.maximum(before, np.where(en, end[R, None, k], 0))
            after = np.maximum(after, np.where(en, end[None, :, k], 0))
        guest_max = np.where(has_d0[R, None], d0_ecx[R, None], before)
        live = ~no_comps_skip[R, None]
        b |= np.where(live & moved, BIT["xsave_layout"], 0).astype(np.uint16)
        big = live & (after > guest_max)
        b |= np.where(big, BIT["xsave_size"], 0).astype(np.uint16)
        w |= np.where(live & ~big & (after != before), BIT["xsave_size"], 0).astype(np.uint16)
        # MAXPHYADDR both ways, GuestPhysBits
        G_, H_ = g_maxpa[R, None], h_maxpa[None, :]
        wider = G_ > H_
        b |= np.where(wider & tdp[None, :], BIT["maxphyaddr"], 0).astype(np.uint16)
        w |= np.where(wider & ~tdp[None, :], BIT["maxphyaddr"], 0).astype(np.uint16)
        w |= np.where((G_ < H_) & ~smaller_ok[None, :], BIT["maxphyaddr"], 0).astype(np.uint16)
        b |= np.where(~wider & (G_ > usable[None, :]), BIT["maxphyaddr"], 0).astype(np.uint16)
        gp = gpb[R, None]
        w |= np.where((gp != 0) & (gp > usable[None, :]), BIT["guest_phys_bits"], 0).astype(np.uint16)
        # linear width
        la57 = g57[R, None] & ~h57[None, :]
        b |= np.where(la57, BIT["linear_width"], 0).astype(np.uint16)
        w |= np.where(~la57 & (g_lin[R, None] > h_lin[None, :]), BIT["linear_width"], 0).astype(np.uint16)
        blockers[R] = b
        warnings[R] = w
        _tick(progress, r1, N, "pairs")
    exact = [j for j, x in enumerate(facts) if x.exact]
    if exact:
        for j in exact:
            for i in range(N):
                rep = migrate(hosts[i].cpuid, hosts[j], source=hosts[i], kernel=kp.name, vendor=vendor)
                blockers[i, j] = _mask(f.rule for f in rep.findings if f.severity == "blocker")
                warnings[i, j] = _mask(f.rule for f in rep.findings if f.severity == "warning")
    return Fleet(
        hosts=hosts,
        kernel=kp.name,
        vendor=vendor,
        blockers=blockers,
        warnings=warnings,
        exact_columns=exact,
        seconds=time.perf_counter() - t0,
    )


def _mask(rules: Iterable[str]) -> int:
    m = 0
    for r in rules:
        m |= BIT[r]
    return m


# -- the common baseline ----------------------------------------------------------------------------------


@dataclass
class Baseline:
    """The largest CPUID every host of a pool can take, and what had to go."""

    table: CpuidTable
    base_host: str
    xcr0: int
    maxphyaddr: int
    linear_bits: int
    dropped_features: list[str]
    dropped_xcr0: list[str]
    notes: list[str]

    def as_dict(self) -> dict:
        return {
            "base_host": self.base_host,
            "xcr0": self.xcr0,
            "maxphyaddr": self.maxphyaddr,
            "linear_bits": self.linear_bits,
            "dropped_features": self.dropped_features,
            "dropped_xcr0": self.dropped_xcr0,
            "notes": self.notes,
            "entries": self.table.as_dicts(),
        }


def common_baseline(
    hosts: Sequence[HostProfile], *, kernel: str = DEFAULT_KERNEL, vendor: str | None = None
) -> Baseline:
    """The largest CPUID a guest can be given so that it moves between every pair of ``hosts``.

    The table starts from the host of the most common vendor with the fewest
    features (family/model/stepping, cache and topology leaves come from it)
    and keeps, in the registers KVM offers features in, only the bits every
    host's provider (KVM_GET_SUPPORTED_CPUID where measured, else its CPUID)
    has; the XCR0 components every host's KVM supports for ``kernel`` with the
    same standard-format offset and size (AVX-512, MPX and AMX kept whole or
    dropped); then whatever lost a prerequisite (``data/feature-deps.csv``);
    0xD.0 ECX large enough for the biggest host; MAXPHYADDR the smallest width
    every host can map; LA57 and 57-bit linear addresses only if every host
    has LA57.  Bits KVM never offers a guest (DS, MONITOR, SMX, EST, TM …) are
    cleared; leaves outside the feature registers (topology, caches, power
    management, trace) stay the base host's, for the VMM to filter as it does
    for any guest.
    """

    hosts = list(hosts)
    if not hosts:
        raise InputError("a baseline needs at least one host")
    kp = kernel_profile(kernel)
    notes: list[str] = []
    vendors = Counter(h.vendor or "?" for h in hosts)
    top = max(vendors.items(), key=lambda kv: (kv[1], kv[0]))[0]
    if len(vendors) > 1:
        mix = ", ".join(f"{n} {v}" for v, n in sorted(vendors.items()))
        notes.append(
            f"the pool mixes vendors ({mix}); the baseline keeps {top}'s vendor string, so moves to the "
            "other vendor's hosts stay a warning"
        )
    cat = catalog()
    flags = [f for f in cat if f.is_flag and f.sub_lo == f.sub_hi]
    by_pos = {(f.leaf, f.sub_lo, f.register, f.lo): f.name for f in flags}
    by_name: dict[str, list] = {}
    for f in flags:
        by_name.setdefault(f.name, []).append(f)

    def nflags(h) -> int:
        return sum(
            bin(e.reg(r)).count("1")
            for (lf, s, r) in _VIRTUALIZABLE_REGS
            for e in [h.cpuid.get(lf, s)]
            if e is not None
        )

    base = min((h for h in hosts if (h.vendor or "?") == top), key=lambda h: (nflags(h), h.name))
    t = base.cpuid
    provided: dict[tuple, int] = {}
    for f in flags:
        if f.name in KVM_PROVIDED:
            provided[(f.leaf, f.sub_lo, f.register)] = provided.get((f.leaf, f.sub_lo, f.register), 0) | f.mask
    never: dict[tuple, int] = {}  # bits kvm_set_cpu_caps masks off for every guest (data/kvm-behaviours.csv)
    never_names = _never_offered(kp.name)
    for f in flags:
        if f.name in never_names:
            never[(f.leaf, f.sub_lo, f.register)] = never.get((f.leaf, f.sub_lo, f.register), 0) | f.mask
    dropped: list[str] = []
    for leaf, sub, reg in sorted(_VIRTUALIZABLE_REGS):
        e = t.get(leaf, sub)
        if e is None:
            continue
        keep = 0xFFFFFFFF
        for h in hosts:
            pe = (h.supported if h.supported is not None else h.cpuid).get(leaf, sub)
            keep &= pe.reg(reg) if pe is not None else 0
        old = e.reg(reg)
        new = old & (keep | provided.get((leaf, sub, reg), 0)) & ~never.get((leaf, sub, reg), 0)
        if new != old:
            dropped += [
                by_pos.get((leaf, sub, reg, b), f"{leaf:#x}.{sub}.{reg}[{b}]")
                for b in range(32)
                if (old & ~new) >> b & 1
            ]
            t = t.with_entry(e.replace(**{reg: new}))
    # XCR0: what every host's KVM supports for this kernel, with one standard-format layout
    base_mask = supported_xcr0(t)
    xcr0 = base_mask
    for h in hosts:
        xcr0 &= h.kvm_supported_xcr0(h.vendor_for(vendor), kp) | 0b11
    for b in range(2, 64):
        if xcr0 >> b & 1:
            seen = {(c.offset, c.size) for h in hosts for c in [h.xsave_components.get(b)] if c is not None}
            if len(seen) > 1:
                xcr0 &= ~(1 << b)
                where = ", ".join(f"{s} bytes at {o}" for o, s in sorted(seen))
                notes.append(
                    f"XSAVE component {mask_names(1 << b)[0]} differs across the pool ({where}): left out of XCR0"
                )

    def has(name: str) -> bool:
        kind, _, num = name.partition(":")
        if kind == "xcr0" and num:
            return bool(xcr0 >> int(num) & 1)
        if kind == "xss" and num:
            return bool(supported_xss(t) >> int(num) & 1)
        for f in by_name.get(name, ()):
            e = t.get(f.leaf, f.sub_lo)
            if e is not None and e.reg(f.register) >> f.lo & 1:
                return True
        return False

    def clear(name: str) -> None:
        nonlocal t, xcr0
        kind, _, num = name.partition(":")
        if kind == "xcr0" and num:
            xcr0 &= ~(1 << int(num))
            return
        for f in by_name.get(name, ()):
            e = t.get(f.leaf, f.sub_lo)
            if e is not None and e.reg(f.register) >> f.lo & 1:
                t = t.with_entry(e.replace(**{f.register: e.reg(f.register) & ~f.mask}))
        dropped.append(name)

    # whole groups only (the XCR0 rules), then every feature whose prerequisite is gone (feature-deps.csv)
    for _ in range(8):
        before = (t, xcr0)
        for group in (0b11 << 3, 0b111 << 5, 0b11 << 17):
            if xcr0 & group != group:
                xcr0 &= ~group
        for d in dependencies():
            if d.feature.startswith("xss:") or d.requires.startswith("xss:"):
                continue
            if has(d.feature) and not has(d.requires):
                clear(d.feature)
        if (t, xcr0) == before:
            break
    dropped_xcr0 = mask_names(base_mask & ~xcr0) if base_mask & ~xcr0 else []
    d0 = t.get(0xD, 0)
    if d0 is not None:
        ecx = max(standard_size(h.xsave_components, xcr0) for h in hosts)
        t = t.with_entry(d0.replace(eax=xcr0 & 0xFFFFFFFF, edx=xcr0 >> 32, ebx=576, ecx=ecx))
        # supervisor components: what every host offers and KVM supports in IA32_XSS for this kernel
        xss = supported_xss(t) & int(kp.value("supported_xss"), 0)
        for h in hosts:
            xss &= supported_xss(h.supported if h.supported is not None else h.cpuid)
        d1 = t.get(0xD, 1)
        if d1 is not None and supported_xss(t) != xss:
            t = t.with_entry(d1.replace(ecx=xss & 0xFFFFFFFF, edx=xss >> 32))
        keep_bits = xcr0 | xss
        t = CpuidTable(
            [e for e in t if not (e.function == 0xD and 2 <= e.index <= 63 and not keep_bits >> e.index & 1)]
        )
    # MAXPHYADDR and the linear width
    usable = min(
        usable_gpa_bits(
            h.maxphyaddr, tdp=h.tdp and h.vendor_for(vendor) != "pvm", five_level_tdp=host_has_five_level_tdp(h)
        )
        for h in hosts
    )
    narrowest = min(h.maxphyaddr for h in hosts)
    maxpa = min(narrowest, usable)
    all57 = all(has_la57(h.cpuid) for h in hosts)
    linear = 57 if all57 else 48
    e8 = t.get(0x80000008)
    if e8 is not None:
        t = t.with_entry(e8.replace(eax=(e8.eax & ~0xFFFFFF) | (linear << 8) | maxpa))
    else:
        notes.append(f"{base.name} has no 0x80000008 leaf: the guest sees MAXPHYADDR 36")
    if maxpa < narrowest:
        notes.append(
            f"MAXPHYADDR {maxpa}, not {narrowest}: a host without 5-level EPT/NPT maps only {usable}-bit "
            "guest-physical addresses"
        )
    e7 = t.get(7, 0)
    if e7 is not None and not all57 and has_la57(t):
        t = t.with_entry(e7.replace(ecx=e7.ecx & ~(1 << 16)))
    table = CpuidTable(t, source=f"common baseline of {len(hosts)} hosts (from {base.name})")
    return Baseline(
        table=table,
        base_host=base.name,
        xcr0=xcr0,
        maxphyaddr=maxpa if e8 is not None else 36,
        linear_bits=linear,
        dropped_features=list(dict.fromkeys(dropped)),
        dropped_xcr0=dropped_xcr0,
        notes=notes,
    )
