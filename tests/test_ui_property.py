"""Property test of the notebook side: a Lab with its widgets attached (headless), driven through random
sequences of what a reader does — valid and invalid: bad kernels, vendors, XCR0 values, widths, bit toggles,
hosts, imports of bad files and FIFOs, plots with bad arguments, exercise answers of wrong types.

After every step:

* no exception escaped: a widget action never raises (nor logs an exception from a button callback, nor shows
  an internal error), a Lab or plot call raises nothing but a ``CpuidkitError``, a checker returns Feedback,
  and no step hangs;
* a refused value changed nothing (the Lab's configuration is what it was) and, from a widget, its message
  line says why; an accepted one did what it says;
* every attached panel shows what ``lab.expected()`` says (a fresh ``check()`` of the configuration), and
  the Lab's cached outcome equals that fresh one.

The figures (sequences, steps, refused steps, escaped exceptions, inconsistent panels) are printed in the
terminal summary and written to ``ui-property-figures.json`` in pytest's temporary folder.
``bench/bench_widget_fuzz.py`` runs the same actions, more of them, from a seeded ``random.Random``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import os
import signal
import time
from pathlib import Path

import pytest

pytest.importorskip("ipywidgets")
pytest.importorskip("pandas")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from cpuidkit.core.bits import FieldRef  # noqa: E402
from cpuidkit.core.hosts import VENDORS, builtin_hosts  # noqa: E402
from cpuidkit.core.kernels import MODELLED_KERNELS, modelled_kernel, named_kernels  # noqa: E402
from cpuidkit.core.sources import load, save  # noqa: E402
from cpuidkit.core.table import CpuidTable  # noqa: E402
from cpuidkit.errors import CpuidkitError  # noqa: E402
from cpuidkit.kvm.check import VcpuSetup  # noqa: E402
from cpuidkit.ui import CpuidToggler, Lab, exercises, plots  # noqa: E402
from cpuidkit.ui import widgets as W  # noqa: E402
from cpuidkit.ui.widgets._common import INTERNAL  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
HOST_DUMP = ROOT / "tests" / "data" / "cpuid-dumps" / "libvirt" / "x86_64-cpuid-Cooperlake.xml"
STEP_LIMIT_S = 30.0  # a step taking longer counts as a hang (the FIFO import used to block forever)
ERROR = "cpuidkit-error"  # the class of a widget's error line

# -- the values a reader may type or pass ------------------------------------------------------------------

KERNELS_OK = [*MODELLED_KERNELS, "6.1.170", "v6.12", "6.18.44-fc-v1147", "6.5", "5.13.0-rc1"]
KERNELS_BAD = ["9.99", "6.5x", "", "5.9", "6", "linux", "6.19", 6.5, 6.10, 612, b"6.12", ["6.12"], 10**5000]
VENDORS_BAD = ["VMX", "", "kvm_intel", "svm ", 1, ["vmx"], 10**5000]
HOSTS_OK = sorted(builtin_hosts())
HOSTS_BAD = ["nope", "", "sapphire_rapids", 123, 1.5, ["epyc-genoa"]]
XCR0_TEXT_OK = ["0x7", "0xe7", "3", "0b111", "0x602e7", "1", "0x2e7", "0x0", "0xffffffffffffffff", " 0x67 "]
XCR0_TEXT_BAD = ["0x10000000000000000", "-1", "abc", "", "1e3", "0x", "7.0", "9" * 5000, "0x" + "f" * 40, "-0x1"]
XCR0_OK = [1, 3, 7, 0xE7, 0x602E7, 0, 2**64 - 1, "0x7", "0b11"]
XCR0_BAD = [-1, 2**64, 2**70, 10**5000, 1.5, True, None, "-1", "x", [7]]
WIDTHS_OK = [0, 36, 39, 46, 48, 50, 52, 57, 64, 255]
WIDTHS_BAD = [-1, 256, 2**70, 10**5000, "48", 48.0, None, [48]]
REGISTERS = [(1, 0, "ecx"), (1, 0, "edx"), (7, 0, "ebx"), (7, 0, "ecx"), (0xD, 0, "eax"), (0xD, 1, "eax"),
             (0x80000008, 0, "eax"), (6, 0, "eax"), (0x40000000, 0, "eax"), (0xD, 5, "ecx")]
POSITIONS_BAD = [(-1, 0, "eax"), (2**32, 0, "eax"), (1, 0, "EAX"), (1, 0, "r8"), (1.5, 0, "eax"), (1, -1, "eax"),
                 ("1", 0, "eax"), (1, 0, ""), (1, 0, "eax[5]"), (1, 0, None), (10**5000, 0, "eax")]
BITS_BAD = [-1, 32, 40, 2**64, "5", 5.0, None, 10**5000]
BIT_VALUES_BAD = [2, -1, "1", 1.5, 10**5000]
FIELDS_OK = [("avx2", 1), ("avx2", 0), ("virt_addr_bits", 48), ("phys_addr_bits", 46), ("osxsave", 1),
             (FieldRef(1, 0, "ecx", 27, 27), 1), ("0x80000008.eax[15:8]", 57), ("0xd.0.eax[18]", 1), ("avx2", True)]
FIELDS_BAD = [("no_such_field", 1), (FieldRef(7, 0, "ebx", -1, -1), 1), (FieldRef(7, 0, "ebx", 3, 5), 1),
              (FieldRef(7, 0, "ebx", 40, 40), 1), (FieldRef("7", 0, "ebx", 5, 5), 1), (12, 1), (None, 1),
              ("avx2", 2), ("virt_addr_bits", 256), ("avx2", 10**5000), ("avx2", "1"), ("avx2", 1.0)]
STATE_OK = [{"xcr0": 7}, {"xcr0": 0xE7}, {"xcr0": None}, {"cr4": 1 << 18}, {"cr4": 1 << 22}, {"cr4": 0},
            {"cr4": 1 << 63}, {"xss": 0x1800}, {"apic_base": W.APIC_DEFAULT_BASE | 1 << 11}, {"apic_base": 0},
            {"misc_enable": 1 << 18}, {"quirks_disabled": ("MISC_ENABLE_NO_MWAIT",)}, {"quirks_disabled": ()},
            {"hlt_exits_disabled": True}, {"hlt_exits_disabled": False}, {"xcr0": "0x67"}, {"has_run": True},
            {"xfeature_permission": 1 << 18}, {"xcr0": 2**64 - 1}]
STATE_BAD = [{"xcr0": -1}, {"xcr0": 2**64}, {"xcr0": "abc"}, {"xcr0": 1.5}, {"xcr0": [1]}, {"cr4": -1},
             {"cr4": 10**5000}, {"quirks_disabled": ("NOPE",)}, {"quirks_disabled": "MISC_ENABLE_NO_MWAIT"},
             {"hlt_exits_disabled": 1}, {"foo": 1}, {"has_run": "yes"}, {"previous": "x"}, {"xss": -5}]
SETUPS_OK = [VcpuSetup(), VcpuSetup(cr4=1 << 18, xcr0=7), {"xcr0": "0x7"}, {"cr4": 0, "hlt_exits_disabled": True}]
SETUPS_BAD = [VcpuSetup(cr4=-1), VcpuSetup(xcr0=2**64), VcpuSetup(quirks_disabled=("NOPE",)),
              VcpuSetup(hlt_exits_disabled=1), VcpuSetup(previous="x"), {"bogus": 1}, "state", 7]  # type: ignore[arg-type]
TABLES_BAD = [[1], "x", 7, {"function": 1}, CpuidTable]
SCOPES_OK = [None, "owned", "all", (7, 0), (1, 0), (0x40000000, 0)]
SCOPES_BAD = ["bogus", (7,), (-1, 0), ("7", 0), 7, [7, 0]]
BEHAVIOURS = ["post_run_set_cpuid", "runtime_update_mode", "sgx_xfrm_adjust"]

# plots: (function, args, kwargs, valid?)
PLOTS = [
    ("xsave_layout", ("comps", -1), {}, False),
    ("xsave_layout", ("comps", 2**64), {}, False),
    ("xsave_layout", ("comps", 10**5000), {}, False),
    ("xsave_layout", ("comps", "x"), {}, False),
    ("xsave_layout", ("comps", 1.5), {}, False),
    ("xsave_layout", ("comps", None), {}, False),
    ("xsave_layout", ("comps", "-1"), {}, False),
    ("xsave_layout", ("comps", "0-70"), {}, False),
    ("xsave_layout", ("comps", 0x7), {"xss": -1}, False),
    ("xsave_layout", ("comps", 0x7), {"aligned": "yes"}, False),
    ("xsave_layout", (None, 0x7), {}, False),
    ("xsave_layout", ({1: 2}, 0x7), {}, False),
    ("xsave_layout", ("comps", 0x602E7), {"xss": 0x1800}, True),
    ("xsave_layout", ("comps", "x87,sse,avx"), {}, True),
    ("address_space", (0, 46), {}, False),
    ("address_space", (65, 46), {}, False),
    ("address_space", ("52", 46), {}, False),
    ("address_space", (52.0, 46), {}, False),
    ("address_space", (52, 46), {}, True),
    ("paging_reserved_bits", (-5,), {}, False),
    ("paging_reserved_bits", (46, "6-level"), {}, False),
    ("paging_reserved_bits", (46, 4), {}, False),
    ("paging_reserved_bits", (46, "pae"), {}, True),
    ("paging_rows", (-1,), {}, False),
    ("paging_rows", (52, "5-level"), {}, True),
    ("kernel_timeline", (["nope"],), {}, False),
    ("kernel_timeline", ("post_run_set_cpuid",), {}, False),
    ("kernel_timeline", (BEHAVIOURS,), {"mark": "9.99"}, False),
    ("kernel_timeline", (BEHAVIOURS,), {"mark": "6.12"}, True),
    ("register_grids", ("lab", []), {}, False),
    ("register_grids", ("lab", [(1, 0, "EAX")]), {}, False),
    ("register_grids", ("lab", [(1, 0)]), {}, False),
    ("register_grids", ("not a lab", [(1, 0, "ecx")]), {}, False),
    ("register_grid", ("lab", 1, 0, "ecx"), {}, True),
    ("vcpu_timeline", ([],), {}, False),
    ("vcpu_timeline", ([{"event": "x"}],), {}, False),
    ("fleet_matrix", ("not a fleet",), {}, False),
]

CHECKERS = sorted(n for n in exercises.__all__ if n.startswith("check_"))
ANSWER_KEYS = [*exercises.OWNER_QUESTION, *exercises.REJECTION_QUESTION, "post_run_identical",
               "sgx_stored_verbatim", "lazy_runtime"]
WRONG_ANSWERS = [1, 1.5, math.nan, math.inf, -math.inf, "x", b"x", [1], {"a": 1}, {1}, (1,), True, -1, 10**5000,
                 "0x" + "f" * 100, {"osxsave": 10**5000}, {1: 2}, [None], ("a", "b", "c", "d"), (1, 0, "ecx", 2**70),
                 frozenset(), (1.5, None, 2, "e"), {"300 entries": [1]}, {"lazy_runtime": 6.15}, {"osxsave", 7},
                 ["osxsave"], "", "  ", "ok", "EINVAL", 0, -22, 832.0, 832.5, "0x340", 0xE7, "0xe7"]


def file_names(tmp: Path) -> dict[str, str]:
    """Inputs for the file boxes, made in ``tmp`` (and /dev/null, /dev/zero, only ever read)."""
    base = Lab().table
    out = {"good_json": str(save(base.set_field("avx2", 0), tmp / "good.json", "kvm-json")),
           "host_dump": str(HOST_DUMP), "missing": str(tmp / "missing.json"), "folder": str(tmp),
           "dev_null": "/dev/null", "dev_zero": "/dev/zero", "nul_name": str(tmp / "a\0b.json"),
           "long_name": str(tmp / ("n" * 300)), "out_json": str(tmp / "out" / "exported.json")}
    (tmp / "out").mkdir()
    fifo = tmp / "fifo"
    os.mkfifo(fifo)
    out["fifo"] = str(fifo)
    (tmp / "fifo-link").symlink_to(fifo)
    out["fifo_link"] = str(tmp / "fifo-link")
    samples = {"bad_json": b'[{"function": "0x1", "eax": 1}]', "garbage": bytes(range(256)) * 4, "empty": b"",
               "deep_json": b"[" * 100_000 + b"]" * 100_000, "latin1": b'[{"function": "\xe9"}]'}
    for name, data in samples.items():
        (tmp / name).write_bytes(data)
        out[name] = str(tmp / name)
    with open(tmp / "huge", "wb") as f:  # over the 16 MiB limit, refused from its size
        f.truncate(17 * 1024 * 1024)
    out["huge"] = str(tmp / "huge")
    return out


FILES_OK_IMPORT = ["good_json", "host_dump"]  # a table (KVM JSON, libvirt XML)
FILES_OK_HOST = ["host_dump"]
FILES_BAD = ["missing", "folder", "dev_null", "dev_zero", "nul_name", "long_name", "fifo", "fifo_link", "bad_json",
             "garbage", "empty", "deep_json", "latin1", "huge"]
EXPORT_BAD = ["fifo", "fifo_link", "folder", "nul_name"]


# -- choosers: Hypothesis in the test, random.Random in the bench -------------------------------------------


class HypothesisChooser:
    def __init__(self, data):
        self.data = data

    def choice(self, seq):
        return self.data.draw(st.sampled_from(seq))

    def integer(self, lo: int, hi: int) -> int:
        return self.data.draw(st.integers(lo, hi))

    def answer(self):
        return self.data.draw(ANSWERS)


class RandomChooser:
    def __init__(self, rng):
        self.rng = rng

    def choice(self, seq):
        return self.rng.choice(seq)

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def answer(self):
        r = self.rng.random()
        if r < 0.5:
            return self.rng.choice(WRONG_ANSWERS)
        if r < 0.7:
            keys = self.rng.sample(ANSWER_KEYS, self.rng.randint(0, 4))
            return {k: self.rng.choice([None, 1, "ok", "runtime", "6.4", 1.5, [2], 10**5000, "EINVAL"]) for k in keys}
        if r < 0.8:
            return self.rng.choice([itertools.count(), object(), CpuidTable(), iter(range(3))])
        return self.rng.randint(-(2**70), 2**70)


ANSWERS = st.one_of(
    st.sampled_from(WRONG_ANSWERS), st.none(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.binary(max_size=6), st.lists(st.integers(-5, 5), max_size=5),
    st.tuples(st.integers(), st.integers(), st.text(max_size=4), st.integers()),
    st.dictionaries(st.sampled_from(ANSWER_KEYS) | st.text(max_size=8) | st.integers(),
                    st.none() | st.integers() | st.text(max_size=6) | st.floats() | st.lists(st.integers(), max_size=2),
                    max_size=5),
    st.sets(st.text(max_size=8), max_size=4), st.frozensets(st.integers(), max_size=3),
    st.builds(object), st.builds(itertools.count), st.just(CpuidTable()),
)


# the kinds whose last argument says whether the value is valid (the others are always valid input)
TAKE_OK = {"xcr0_text", "grid_toggle", "grid_show", "host_file", "api_host_file", "import", "api_import", "export",
           "xcr0_set_value", "show_entry", "api_kernel", "api_vendor", "api_host", "api_state", "api_setup",
           "api_width", "api_bit", "api_field", "api_table", "api_query", "plot"}


def draw_action(c) -> tuple:
    """One reader's action: ``(kind, arguments, valid)``; ``valid`` is None where the input is always valid."""
    kind, *args = _draw(c)
    return (kind, tuple(args), args[-1] if kind in TAKE_OK else None)


def _draw(c) -> tuple:
    kind = c.choice(KINDS)
    ok = c.choice([True, False])
    if kind == "xcr0_text":
        return (kind, c.choice(XCR0_TEXT_OK if ok else XCR0_TEXT_BAD), ok)
    if kind == "trigger":
        return (kind, c.choice(["osxsave", "pke", "apic", "mwait", "quirk", "hlt"]))
    if kind == "grid_click":
        return (kind, c.integer(0, 31))
    if kind == "grid_toggle":
        return (kind, c.integer(0, 31) if ok else c.choice(BITS_BAD), ok)
    if kind == "grid_show":
        return (kind, c.choice(REGISTERS) if ok else c.choice(POSITIONS_BAD), ok)
    if kind == "picker":
        return (kind, c.integer(0, 300), c.choice(["eax", "ebx", "ecx", "edx"]))
    if kind == "slider":
        return (kind, c.choice(["maxphyaddr", "linear"]), c.integer(0, 64))
    if kind == "kernel_dropdown":
        return (kind, c.choice(sorted(named_kernels())))
    if kind == "vendor_buttons":
        return (kind, c.choice(list(VENDORS)))
    if kind == "host_dropdown":
        return (kind, c.choice(HOSTS_OK))
    if kind == "take_table":
        return (kind, c.choice([True, False]))
    if kind in ("host_file", "api_host_file"):
        return (kind, c.choice(FILES_OK_HOST if ok else FILES_BAD), ok)
    if kind in ("import", "api_import"):
        return (kind, c.choice(FILES_OK_IMPORT if ok else FILES_BAD), ok)
    if kind == "export":
        return (kind, "out_json" if ok else c.choice(EXPORT_BAD), ok)
    if kind == "xcr0_box":
        return (kind, c.integer(0, 20))
    if kind == "xcr0_set_value":
        return (kind, c.choice(XCR0_OK if ok else XCR0_BAD), ok)
    if kind == "explorer":
        control = c.choice(["entries", "width", "tiledata", "permission", "after_run"])
        value = {"entries": c.integer(0, 300), "width": c.choice([0, 32, 39, 48, 50, 52, 57, 64])}.get(
            control, c.choice([True, False]))
        return (kind, control, value)
    if kind == "scope":
        return (kind, c.choice(list(W.FieldTable.SCOPES)))
    if kind == "show_entry":
        return (kind, c.choice([(1, 0), (7, 0), (0xD, 1), (0x40000000, 0)] if ok else [(-1, 0), ("7", 0), (7, 1.5)]),
                ok)
    if kind == "api_kernel":
        return (kind, c.choice(KERNELS_OK if ok else KERNELS_BAD), ok)
    if kind == "api_vendor":
        return (kind, c.choice(list(VENDORS) if ok else VENDORS_BAD), ok)
    if kind == "api_host":
        return (kind, c.choice(HOSTS_OK if ok else HOSTS_BAD), ok)
    if kind == "api_state":
        return (kind, c.choice(STATE_OK if ok else STATE_BAD), ok)
    if kind == "api_setup":
        return (kind, c.choice(SETUPS_OK if ok else SETUPS_BAD), ok)
    if kind == "api_width":
        return (kind, c.choice(["set_linear_width", "set_maxphyaddr"]), c.choice(WIDTHS_OK if ok else WIDTHS_BAD), ok)
    if kind == "api_bit":
        if ok:
            leaf, sub, reg = c.choice(REGISTERS)
            return (kind, (leaf, sub, reg, c.integer(0, 31), c.choice([0, 1, True, False])), ok)
        bad = c.choice(["position", "bit", "value"])
        leaf, sub, reg = c.choice(POSITIONS_BAD) if bad == "position" else c.choice(REGISTERS)
        bit = c.choice(BITS_BAD) if bad == "bit" else c.integer(0, 31)
        return (kind, (leaf, sub, reg, bit, c.choice(BIT_VALUES_BAD) if bad == "value" else 1), ok)
    if kind == "api_field":
        return (kind, *c.choice(FIELDS_OK if ok else FIELDS_BAD), ok)
    if kind == "api_table":
        return (kind, c.choice(TABLES_BAD), False)
    if kind == "api_query":
        if ok:
            return (kind, c.choice([("bits", c.choice(REGISTERS)), ("field_rows", (c.choice(SCOPES_OK),))]), ok)
        return (kind, c.choice([("bits", c.choice(POSITIONS_BAD)), ("field_rows", (c.choice(SCOPES_BAD),))]), ok)
    if kind == "plot":
        name, args, kwargs, valid = c.choice(PLOTS)
        return (kind, name, args, kwargs, valid)
    if kind == "exercise":
        return (kind, c.choice(CHECKERS), c.answer())
    return (kind,)  # run, reset, api_run, api_reset, review_again


# (kind, weight): widget actions most, the Lab's API next, plots and exercises now and then
KIND_WEIGHTS = {
    "xcr0_text": 4, "trigger": 3, "run": 1, "reset": 1, "grid_click": 5, "grid_toggle": 2, "grid_show": 2,
    "picker": 2, "slider": 3, "kernel_dropdown": 2, "vendor_buttons": 2, "host_dropdown": 1, "take_table": 1,
    "host_file": 2, "import": 3, "export": 1, "xcr0_box": 2, "xcr0_set_value": 3, "explorer": 2, "scope": 1,
    "show_entry": 1, "review_again": 1, "api_kernel": 4, "api_vendor": 2, "api_host": 2, "api_host_file": 2,
    "api_import": 2, "api_state": 4, "api_setup": 2, "api_width": 3, "api_bit": 3, "api_field": 3, "api_table": 1,
    "api_query": 2, "api_run": 1, "api_reset": 1, "plot": 2, "exercise": 4,
}
KINDS = [k for k, w in KIND_WEIGHTS.items() for _ in range(w)]


# -- the rig: a Lab, every view attached, and the rule checked after each step ---------------------------


class Hung(Exception):
    pass


class _CallbackErrors(logging.Handler):
    """Exceptions ipywidgets catches in button callbacks (it logs them): each is an escaped exception."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.records: list[str] = []

    def emit(self, record):
        if str(record.msg).startswith("Exception in callback"):
            self.records.append(record.getMessage()[:300])


@contextlib.contextmanager
def step_limit(seconds: float):
    def alarm(*_):
        raise Hung(f"no answer within {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def new_figures() -> dict:
    return {"sequences": 0, "steps": 0, "refused_steps": 0, "panel_checks": 0, "escaped_exceptions": 0,
            "inconsistent_panels": 0, "hangs": 0, "seconds": 0.0}


class Rig:
    """A Lab with every view attached: the toggler (host, kernel, vendor, grid, picker, widths, triggers,
    verdict, field table, export/import), XCR0 boxes, lint panel, kernel behaviours, rejection explorer and
    design-review panel."""

    def __init__(self, files: dict[str, str], figures: dict, review: bool = True):
        self.files, self.figures = files, figures
        self.lab = Lab()
        self.t = CpuidToggler(self.lab, live=False)
        self.xcr0 = W.Xcr0Checkboxes(self.lab)
        self.lint = W.LintPanel(self.lab)
        self.behaviours = W.KernelBehaviours(self.lab, BEHAVIOURS)
        self.explorer = W.RejectionExplorer(self.lab)
        self.review = W.ReviewPanel(self.lab) if review else None
        t = self.t
        self.messages = [t.host.message, t.kernel.message, t.vendor.message, t.grid.message, t.widths.message,
                         t.triggers.message, t.files.message, t.table.message, self.xcr0.message,
                         self.explorer.message]
        self.comps = self.lab.host.xsave_components

    # helpers
    def config(self):
        return self.lab.view.config()

    def _refused_by_widget(self, before, message) -> list[str]:
        out = []
        if self.config() != before:
            out.append("a refused value changed the Lab")
        if ERROR not in message.value:
            out.append(f"no error shown in the message line: {message.value[:120]!r}")
        return out

    def _api(self, call, ok, post=None) -> list[str]:
        before = self.config()
        try:
            result = call()
        except CpuidkitError as e:
            if ok:
                return [f"refused a valid value: {type(e).__name__}: {e}"[:300]]
            return ["a refused value changed the Lab"] if self.config() != before else []
        if not ok:
            return [f"accepted an invalid value (returned {type(result).__name__})"]
        return post(result) if post else []

    # actions ---------------------------------------------------------------------------------------------
    def do_xcr0_text(self, text, ok):
        box, before, shown = self.t.triggers.xcr0, self.config(), self.t.triggers.xcr0.value
        box.value = text
        if not ok:
            return self._refused_by_widget(before, self.t.triggers.message)
        if text == shown:
            return []
        return [] if self.lab.state.xcr0 == int(text.strip(), 0) else ["the XCR0 box did not write XCR0"]

    def do_trigger(self, name):
        box = getattr(self.t.triggers, name)
        box.value = not box.value
        want = self.t.triggers.content(self.lab.view)["boxes"][name]
        return [] if want == box.value else [f"{name} box and state disagree"]

    def do_run(self):
        self.t.triggers.run.click()
        return [] if self.lab.state.has_run else ["KVM_RUN did not run"]

    def do_reset(self):
        self.t.triggers.reset.click()
        return [] if not self.lab.state.has_run else ["new vCPU has run"]

    def _bit(self, bit):
        g = self.t.grid
        return self.lab.table.get_field(FieldRef(g.leaf, g.subleaf, g.register, bit, bit)) or 0

    def do_grid_click(self, bit):
        before = self._bit(bit)
        self.t.grid.buttons[bit].click()
        return [] if self._bit(bit) == 1 - before else [f"bit {bit} did not flip"]

    def do_grid_toggle(self, bit, ok):
        before = self.config()
        old = self._bit(bit) if ok else None
        done = self.t.grid.toggle(bit)
        if not ok:
            return self._refused_by_widget(before, self.t.grid.message) + (["toggle said True"] if done else [])
        return [] if done and self._bit(bit) == 1 - old else [f"bit {bit} did not flip"]

    def do_grid_show(self, pos, ok):
        g, before = self.t.grid, (self.t.grid.leaf, self.t.grid.subleaf, self.t.grid.register)
        done = g.show(*pos)
        now = (g.leaf, g.subleaf, g.register)
        if not ok:
            bad = [] if now == before and not done else ["a bad position moved the grid"]
            return bad + ([] if ERROR in g.message.value else ["no error shown for a bad position"])
        return [] if now == tuple(pos) and self.t.picker.entry.value == pos[:2] else ["grid or picker elsewhere"]

    def do_picker(self, i, reg):
        p = self.t.picker
        p.entry.value = p.entry.options[i % len(p.entry.options)][1]
        p.reg.value = reg
        g = self.t.grid
        return [] if (g.leaf, g.subleaf, g.register) == (*p.entry.value, reg) else ["grid does not follow picker"]

    def do_slider(self, which, value):
        s = getattr(self.t.widths, which)
        s.value = value
        field = "phys_addr_bits" if which == "maxphyaddr" else "virt_addr_bits"
        return [] if (self.lab.get_field(field) or 0) == s.value else [f"{which} slider and table disagree"]

    def do_kernel_dropdown(self, name):
        self.t.kernel.dropdown.value = name
        return [] if self.lab.kernel == name else ["kernel dropdown not followed"]

    def do_vendor_buttons(self, v):
        self.t.vendor.value = v
        return [] if self.lab.vendor == v else ["vendor not followed"]

    def do_host_dropdown(self, name):
        self.t.host.dropdown.value = name
        return [] if self.lab.host.name == name else ["host dropdown not followed"]

    def do_take_table(self, on):
        self.t.host.take_table.value = on
        return []

    def do_host_file(self, key, ok):
        before, path = self.config(), self.files[key]
        self.t.host.path.value = path
        self.t.host.load.click()
        if not ok:
            return self._refused_by_widget(before, self.t.host.message)
        return [] if self.lab.host.name == Path(path).stem else ["host file not taken"]

    def do_import(self, key, ok):
        before, path = self.config(), self.files[key]
        self.t.files.path.value = path
        self.t.files.import_button.click()
        if not ok:
            return self._refused_by_widget(before, self.t.files.message)
        return [] if self.lab.table == load(path) else ["import did not take the file's table"]

    def do_export(self, key, ok):
        before, path = self.config(), self.files[key]
        self.t.files.path.value = path
        self.t.files.export_button.click()
        if not ok:
            return self._refused_by_widget(before, self.t.files.message)
        return [] if load(path) == self.lab.table else ["the exported file is not the table"]

    def do_xcr0_box(self, i):
        boxes = list(self.xcr0.boxes.items())
        bit, cb = boxes[i % len(boxes)]
        cb.value = not cb.value
        xcr0 = self.lab.state.xcr0
        return [] if (1 if xcr0 is None else xcr0) >> bit & 1 == cb.value else [f"XCR0 box {bit} and state disagree"]

    def do_xcr0_set_value(self, v, ok):
        before = self.config()
        done = self.xcr0.set_value(v)
        if not ok:
            return self._refused_by_widget(before, self.xcr0.message) + (["set_value said True"] if done else [])
        want = int(v, 0) if isinstance(v, str) else v
        return [] if done and self.lab.state.xcr0 == want else ["set_value did not write XCR0"]

    def do_explorer(self, control, value):
        getattr(self.explorer, control).value = value
        return []

    def do_scope(self, name):
        self.t.table.scope_picker.value = name
        return []

    def do_show_entry(self, entry, ok):
        done = self.t.table.show_entry(*entry)
        if ok:
            return [] if done and self.t.table.entry == entry else ["show_entry not taken"]
        return [] if not done and ERROR in self.t.table.message.value else ["bad entry not refused"]

    def do_review_again(self):
        if self.review is not None:
            self.review.button.click()
        return []

    def do_api_kernel(self, k, ok):
        return self._api(lambda: self.lab.update(kernel=k), ok,
                         lambda _: [] if self.lab.kernel == modelled_kernel(k) else ["kernel not taken"])

    def do_api_vendor(self, v, ok):
        return self._api(lambda: self.lab.update(vendor=v), ok,
                         lambda _: [] if self.lab.vendor == v else ["vendor not taken"])

    def do_api_host(self, h, ok):
        return self._api(lambda: self.lab.update(host=h), ok,
                         lambda _: [] if self.lab.host.name == h else ["host not taken"])

    def do_api_host_file(self, key, ok):
        path = self.files[key]
        return self._api(lambda: self.lab.update(host=path), ok,
                         lambda _: [] if self.lab.host.name == Path(path).stem else ["host file not taken"])

    def do_api_import(self, key, ok):
        path = self.files[key]
        return self._api(lambda: self.lab.import_json(path), ok,
                         lambda _: [] if self.lab.table == load(path) else ["import not taken"])

    def do_api_state(self, changes, ok):
        def post(_):
            s = self.lab.state
            for k, v in changes.items():
                got = getattr(s, k)
                want = int(v, 0) if isinstance(v, str) else v
                if got != want:
                    return [f"state {k} is {got!r}, not {want!r}"]
            return []

        return self._api(lambda: self.lab.set_state(**changes), ok, post)

    def do_api_setup(self, setup, ok):
        return self._api(lambda: self.lab.update(state=setup), ok)

    def do_api_width(self, method, v, ok):
        field = "virt_addr_bits" if method == "set_linear_width" else "phys_addr_bits"
        return self._api(lambda: getattr(self.lab, method)(v), ok,
                         lambda _: [] if self.lab.get_field(field) == v else [f"{field} not {v}"])

    def do_api_bit(self, args, ok):
        leaf, sub, reg, bit, value = args
        return self._api(lambda: self.lab.set_bit(*args), ok,
                         lambda _: [] if self.lab.get_field(FieldRef(leaf, sub, reg, bit, bit)) == int(value)
                         else ["bit not set"])

    def do_api_field(self, spec, value, ok):
        return self._api(lambda: self.lab.set_field(spec, value), ok,
                         lambda _: [] if self.lab.get_field(spec) == int(value) else ["field not set"])

    def do_api_table(self, value, ok):
        return self._api(lambda: self.lab.update(table=value), ok)

    def do_api_query(self, query, ok):
        name, args = query

        def post(result):
            if name == "bits" and len(result) != 32:
                return ["bits() did not give 32 bits"]
            return []

        return self._api(lambda: getattr(self.lab, name)(*args), ok, post)

    def do_api_run(self):
        self.lab.run()
        return [] if self.lab.state.has_run else ["run() did not run"]

    def do_api_reset(self):
        self.lab.reset_vcpu()
        return []

    def do_plot(self, name, args, kwargs, ok):
        real = tuple(self.comps if a == "comps" else self.lab if a == "lab" else a for a in args)

        def post(fig):
            return [] if name == "paging_rows" or hasattr(fig, "savefig") else [f"{name} returned {fig!r}"]

        return self._api(lambda: getattr(plots, name)(*real, **kwargs), ok, post)

    def do_exercise(self, name, answer):
        fb = getattr(exercises, name)(answer)
        if not isinstance(fb, exercises.Feedback) or fb.ok not in (True, False, None) or not fb.message:
            return [f"{name} gave {fb!r}"]
        return []

    # the step and its rule ---------------------------------------------------------------------------------
    def step(self, action: tuple, log: _CallbackErrors) -> list[str]:
        """Run one action; the problems found (empty when the rule holds)."""
        f = self.figures
        f["steps"] += 1
        kind, args, valid = action
        if valid is False:
            f["refused_steps"] += 1
        seen = len(log.records)
        problems: list[str] = []
        try:
            with step_limit(STEP_LIMIT_S):
                problems += getattr(self, "do_" + kind)(*args)
        except Hung as e:
            f["hangs"] += 1
            f["escaped_exceptions"] += 1
            problems.append(f"hang: {e}")
        except Exception as e:  # noqa: BLE001 - the rule: nothing escapes
            f["escaped_exceptions"] += 1
            problems.append(f"escaped {type(e).__name__}: {str(e)[:300]}")
        for rec in log.records[seen:]:
            f["escaped_exceptions"] += 1
            problems.append(f"a callback raised: {rec}")
        internal = [m.value for m in self.messages if INTERNAL in m.value]
        f["escaped_exceptions"] += len(internal)
        problems += [f"internal error shown: {m[:300]}" for m in internal]
        exp = self.lab.expected()
        f["panel_checks"] += len(exp.panels)
        wrong = exp.mismatches()
        if self.lab.outcome.as_dict() != exp.outcome.as_dict():
            wrong.append("Lab.outcome")
        f["inconsistent_panels"] += len(wrong)
        problems += [f"{name} does not show what lab.expected() says" for name in wrong]
        return problems


def run_sequence(files: dict[str, str], figures: dict, actions, review: bool = True) -> list[str]:
    """Build a rig and run ``actions`` (an iterable, drawn lazily); the first step's problems, or []."""
    start = time.perf_counter()
    log = _CallbackErrors()
    root = logging.getLogger()
    root.addHandler(log)
    try:
        rig = Rig(files, figures, review=review)
        figures["sequences"] += 1
        for i, action in enumerate(actions):
            problems = rig.step(action, log)
            if problems:
                return [f"step {i} {str(action)[:300]}:"] + problems
        return []
    finally:
        root.removeHandler(log)
        figures["seconds"] += time.perf_counter() - start


def figures_line(f: dict) -> str:
    return (f"ui property test: {f['sequences']} sequences, {f['steps']} steps ({f['refused_steps']} with a value "
            f"to refuse), {f['panel_checks']} panel checks; escaped exceptions {f['escaped_exceptions']} "
            f"(hangs {f['hangs']}), inconsistent panels {f['inconsistent_panels']}; {f['seconds']:.1f} s")


# -- the test -------------------------------------------------------------------------------------------

FIGURES = new_figures()


class _Report:
    """Prints the figures in the terminal summary (whatever the capture mode)."""

    def pytest_terminal_summary(self, terminalreporter):
        if FIGURES["steps"]:
            terminalreporter.write_line(figures_line(FIGURES))
            if FIGURES.get("json"):
                terminalreporter.write_line(f"ui property figures: {FIGURES['json']}")


@pytest.fixture(scope="module")
def files(request, tmp_path_factory):
    pm = request.config.pluginmanager
    if not pm.has_plugin("cpuidkit-ui-property-figures"):
        pm.register(_Report(), "cpuidkit-ui-property-figures")
    yield file_names(tmp_path_factory.mktemp("ui-inputs"))
    path = tmp_path_factory.getbasetemp() / "ui-property-figures.json"
    path.write_text(json.dumps({k: v for k, v in FIGURES.items() if k != "json"}, indent=1))
    FIGURES["json"] = str(path)


@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(data=st.data())
def test_random_reader_actions_keep_every_panel_right(files, data):
    chooser = HypothesisChooser(data)
    n = data.draw(st.integers(1, 30), label="steps")
    problems = run_sequence(files, FIGURES, (draw_action(chooser) for _ in range(n)))
    assert not problems, "\n".join(problems)


def test_the_figures_are_counted(files):
    """The property test ran (this test is collected after it) and found nothing."""
    if not FIGURES["sequences"]:
        pytest.skip("the property test did not run in this session")
    assert FIGURES["steps"] >= FIGURES["sequences"] > 0
    assert FIGURES["escaped_exceptions"] == 0 and FIGURES["inconsistent_panels"] == 0, figures_line(FIGURES)


# -- the attacker's findings, one by one -------------------------------------------------------------------


def test_the_xcr0_box_refuses_what_the_cli_refuses():
    t = CpuidToggler(live=False)
    for text in ("0x10000000000000000", "-1"):
        before = t.lab.view.config()
        t.triggers.xcr0.value = text
        assert t.lab.view.config() == before
        assert ERROR in t.triggers.message.value and "64 bits" in t.triggers.message.value
        assert t.triggers.xcr0.value == "0x1"  # the box shows the Lab's XCR0 again
    x = W.Xcr0Checkboxes(t.lab)
    assert x.set_value(-1) is False and ERROR in x.message.value
    with pytest.raises(CpuidkitError):
        W.xsetbv_result(t.lab, -1)
    assert not t.lab.expected().mismatches()


def test_a_modelled_kernel_outside_the_dropdown_updates_every_panel():
    t = CpuidToggler(live=False)
    t.lab.update(kernel="6.5")
    assert t.lab.kernel == "6.5" and t.verdict.data["kernel"] == "6.5"
    assert t.kernel.dropdown.value is None and "6.5" not in t.kernel.dropdown.options
    assert "6.5" in t.kernel.notes.value
    assert not t.lab.expected().mismatches()
    t.kernel.dropdown.value = "6.12"
    assert t.lab.kernel == "6.12" and t.verdict.data["kernel"] == "6.12"
    with pytest.raises(CpuidkitError):
        t.lab.update(kernel="9.99")
    assert t.lab.kernel == "6.12"


def test_xsave_layout_of_a_negative_mask_is_refused_at_once():
    pytest.importorskip("matplotlib")
    comps = Lab().host.xsave_components
    start = time.perf_counter()
    for bad in (-1, 2**64, "-1", 1.5):
        with pytest.raises(CpuidkitError):
            plots.xsave_layout(comps, xcr0=bad)
    with pytest.raises(CpuidkitError):
        plots.xsave_layout(comps, xcr0=7, xss=-1)
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize("name", CHECKERS)
def test_checkers_answer_wrong_types_with_a_hint(name):
    check = getattr(exercises, name)
    for answer in WRONG_ANSWERS + [object(), itertools.count(), CpuidTable()]:
        fb = check(answer)
        assert isinstance(fb, exercises.Feedback) and fb.message, (name, answer)


def test_fifo_and_device_inputs_are_refused_without_reading(tmp_path):
    names = file_names(tmp_path)
    t = CpuidToggler(live=False)
    before = t.lab.view.config()
    with step_limit(STEP_LIMIT_S):
        for key in ("fifo", "fifo_link", "dev_zero", "folder"):
            t.files.path.value = names[key]
            assert t.files.import_() is False
            assert "import failed, nothing changed" in t.files.message.value
            t.host.path.value = names[key]
            t.host.load.click()
            assert ERROR in t.host.message.value
            with pytest.raises(CpuidkitError):
                t.lab.import_json(names[key])
    assert t.lab.view.config() == before
    assert not t.lab.expected().mismatches()


def test_a_failing_view_does_not_stop_the_others():
    lab = Lab()
    panel = W.VerdictPanel(lab)
    lab.on_change(lambda _lab, _what: 1 / 0)
    late = W.VerdictPanel(lab)
    with pytest.raises(ZeroDivisionError):
        lab.update(kernel="6.1")
    assert panel.data["kernel"] == late.data["kernel"] == "6.1"
    assert not lab.expected().mismatches()


def test_constructors_refuse_bad_arguments_before_following_the_lab():
    lab = Lab()
    for make in (lambda: W.BitGrid(lab, 1, 0, "EAX"), lambda: W.BitGrid(lab, -1), lambda: W.FieldTable(lab, "x"),
                 lambda: W.KernelBehaviours(lab, ["nope"]), lambda: W.WidthSliders(lab, 300),
                 lambda: W.LintPanel(lab, show_info="yes"), lambda: CpuidToggler(lab, leaf=-1),
                 lambda: W.VerdictPanel("not a lab")):
        with pytest.raises(CpuidkitError):
            make()
    assert not lab._listeners and not lab._panels
    with pytest.raises(CpuidkitError):
        Lab(kernel="9.99")
    with pytest.raises(CpuidkitError):
        Lab(host=123)
    assert Lab(kernel="6.1.170").kernel == "6.1"
