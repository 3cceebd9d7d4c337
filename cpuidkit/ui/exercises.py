"""The course's self-checking exercises: one ``check_…`` function per notebook.

Each takes the reader's answer and returns :class:`Feedback`: right, wrong
(saying *what* is wrong and where to look), or not answered yet (``None``,
the value the notebooks ship with, so a notebook runs top to bottom).  The
expected answers are computed from the core, never typed in here, so they
stay right when the model learns something.

An answer of the wrong type (a number where a dict is asked, a float XCR0, an
endless iterator…) is wrong, with a hint saying what to give: a checker never
raises on what a reader types.  An XCR0 is read as ``cpuidkit xcr0`` reads it.

Next to each checker, ``answer_…()`` computes the right answer from the core the same way
(an :class:`Answer`: the value and how to write it); :data:`EXERCISES` pairs them, and
:func:`answer_key_markdown` is the trainers' answer key (``docs/answer-key.md``, written by
``make course-docs``; a test checks the file is current and that every answer passes its checker).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from cpuidkit.analysis.lint import lint_table
from cpuidkit.core.catalog import catalog
from cpuidkit.core.kernels import DEFAULT_KERNEL, behaviour_rows
from cpuidkit.core.table import CpuidEntry, CpuidTable
from cpuidkit.core.xsave import mask_names, standard_size
from cpuidkit.errors import CpuidkitError, InputError, KvmError
from cpuidkit.kvm.check import check
from cpuidkit.kvm.vcpu import SimulatedVcpu
from cpuidkit.kvm.xcr import accept_set
from cpuidkit.live import LiveVcpu, kvm_available, resolve_host
from cpuidkit.ui import _inputs
from cpuidkit.ui.course import example_template

__all__ = [
    "Feedback",
    "check_first_toggle",
    "check_field_position",
    "check_owners",
    "check_rejections",
    "check_xsave_size",
    "check_xcr0",
    "check_pool_maxphyaddr",
    "check_accepted_but_illegal",
    "check_kernel_history",
    "check_review",
    "check_live_width",
    "Answer",
    "Exercise",
    "EXERCISES",
    "answer_key_markdown",
    "OWNER_QUESTION",
    "REJECTION_QUESTION",
    "POOL",
]

HOST = "sapphire-rapids"
KERNEL = DEFAULT_KERNEL


@dataclass(frozen=True)
class Feedback:
    """The result of a check: ``ok`` is True (right), False (wrong) or None (not answered)."""

    ok: bool | None
    message: str

    def __bool__(self) -> bool:
        return self.ok is True

    def _repr_markdown_(self) -> str:
        mark = {True: "✅ **Right.**", False: "❌ **Not yet.**", None: "✏️ **Not answered yet.**"}[self.ok]
        return f"{mark} {self.message}"

    def __str__(self) -> str:
        return {True: "RIGHT: ", False: "NOT YET: ", None: "NOT ANSWERED: "}[self.ok] + self.message

    __repr__ = __str__


@dataclass(frozen=True)
class Answer:
    """A right answer: ``value`` (what the checker takes) and ``text`` (how a reader writes it)."""

    value: object
    text: str


def _todo(hint: str) -> Feedback:
    return Feedback(None, hint)


def _host():
    return resolve_host(HOST)


def _norm_errno(x) -> str:
    if x is None:
        return "ok"
    s = str(x).strip()
    if s.lower() in ("ok", "0", "accepted", "accept", "none", "success", ""):
        return "ok"
    s = s.upper().lstrip("-")
    return s


def _text(x) -> str | None:
    """An answer meant as text: a str, or a number that fits in 64 bits (``0`` for success); None for
    anything else (a 5,000-digit number cannot even be printed)."""
    if isinstance(x, str):
        return x
    if isinstance(x, int) and not isinstance(x, bool) and x.bit_length() <= 64:
        return str(x)
    return None


def _errno_answer(x) -> str | None:
    """``"ok"`` or an errno name from an answer (None: not text at all)."""
    text = _text(x)
    return None if text is None else _norm_errno(text)


def _whole(x) -> int | None:
    """A whole number from an answer: an int, an integral float, or its text; None otherwise."""
    if isinstance(x, bool):
        return None
    if isinstance(x, int):
        return x
    if isinstance(x, float):
        return int(x) if math.isfinite(x) and x.is_integer() else None
    if isinstance(x, str):
        for base in (10, 0):
            try:
                return int(x.strip(), base)
            except ValueError:
                continue
    return None


def _not_a_dict(what: str) -> Feedback:
    return Feedback(False, f"Give a dict {what}.")


# -- 00 ----------------------------------------------------------------------------------------------


def check_first_toggle(answer) -> Feedback:
    """00: what does KVM_SET_CPUID2 return for the host's table with avx512f cleared? ("ok" or an errno)"""

    if answer is None:
        return _todo('Replace None with "ok" or an errno name such as "EINVAL".')
    got = _errno_answer(answer)
    if got is None:
        return Feedback(False, 'Answer with text: "ok" or an errno name such as "EINVAL".')
    want = answer_first_toggle().value
    if got == want:
        return Feedback(
            True,
            "KVM stores the table: a missing (or extra) feature bit is never an error. "
            "Whether the guest can live with it is the VMM's business.",
        )
    return Feedback(
        False,
        f"{got} is not what KVM says. kvm_vcpu_ioctl_set_cpuid2() checks the entry count, then "
        "kvm_check_cpuid() only the linear-address width and AMX permission; clearing a feature "
        "bit touches none of them.",
    )


def answer_first_toggle() -> Answer:
    """00's answer: what the model's KVM_SET_CPUID2 returns for the table with avx512f cleared."""
    h = _host()
    out = check(h.supported_cpuid().set_field("avx512f", 0), kernel=KERNEL, host=h)
    want = _norm_errno(out.errno)
    return Answer(want, repr(want))


# -- 01 ----------------------------------------------------------------------------------------------


def check_field_position(answer, name: str = "avx2") -> Feedback:
    """01: where does ``name`` live? Answer ``(leaf, subleaf, register, bit)``, e.g. ``(1, 0, "ecx", 28)``."""

    if answer is None:
        return _todo(f'Replace None with (leaf, subleaf, register, bit) for {name}, e.g. (1, 0, "ecx", 28).')
    if not isinstance(answer, (tuple, list)) or len(answer) != 4:
        return Feedback(False, 'Give four things: (leaf, subleaf, register, bit), e.g. (1, 0, "ecx", 28).')
    leaf, sub, reg, bit = answer
    f = catalog().resolve(name)
    number = lambda x: isinstance(x, int) and not isinstance(x, bool) and x.bit_length() <= 64  # noqa: E731
    problems = []
    if not number(leaf):
        problems.append("the leaf must be a number")
    elif leaf != f.leaf:
        problems.append(f"leaf {leaf:#x} is not it (the structured extended feature flags live in leaf 7)")
    if not number(sub):
        problems.append("the subleaf must be a number")
    elif sub not in f.subleaves:
        problems.append(
            f"subleaf {sub} is wrong: leaf {f.leaf:#x} has several subleaves, the main flags are in {f.sub_lo}"
        )
    if not isinstance(reg, str):
        problems.append('the register must be text such as "ebx"')
    elif reg.strip().lower() != f.register:
        problems.append(f"register {reg[:20]!r} is wrong: try the catalog, catalog().resolve({name!r})")
    if not number(bit):
        problems.append("the bit must be a number")
    elif bit != f.lo:
        problems.append(f"bit {bit} is wrong")
    if not problems:
        return Feedback(True, f"{f.name} is {f.leaf:#x}.{f.subleaf_text}.{f.register}[{f.bits}]: {f.description}.")
    return Feedback(False, "; ".join(problems) + ".")


def answer_field_position(name: str = "avx2") -> Answer:
    """01's answer: the catalog's position of ``name`` (its first subleaf, its lowest bit)."""
    f = catalog().resolve(name)
    value = (f.leaf, f.sub_lo, f.register, f.lo)
    return Answer(value, f"({f.leaf:#x}, {f.sub_lo}, {f.register!r}, {f.lo})")


# -- 02 ----------------------------------------------------------------------------------------------

OWNER_QUESTION = ("osxsave", "avx2", "xsave_size_enabled", "apic", "hypervisor")


def _owners(host=None, kernel=KERNEL, vendor="vmx") -> dict[str, str]:
    h = host or _host()
    out = check(h.supported_cpuid(), kernel=kernel, vendor=vendor, host=h)
    return {o.field.name: o.owner for o in out.fields}


def check_owners(answer: dict | None) -> Feedback:
    """02: who owns each field of ``OWNER_QUESTION`` (host sapphire-rapids, 6.18, vmx)?
    Answer a dict like ``{"osxsave": "runtime", …}`` with passthrough / runtime / vendor / not-virtualized."""
    if answer is None:
        return _todo("Replace None with a dict {field: owner} for " + ", ".join(OWNER_QUESTION) + ".")
    if not isinstance(answer, Mapping):
        return _not_a_dict('{field: owner}, e.g. {"osxsave": "runtime", …}')
    owners = _owners()
    wrong = []
    for name in OWNER_QUESTION:
        want = owners.get(name, "passthrough")
        got = (_text(answer.get(name, "")) or "?").strip().lower()
        if got != want:
            why = {
                "runtime": "KVM rewrites it from vCPU state in kvm_update_cpuid_runtime()",
                "passthrough": "KVM stores it as given and the guest sees it unchanged",
            }.get(want, want)
            wrong.append(f"{name} is {want}, not {got or 'missing'} ({why})")
    if not wrong:
        return Feedback(
            True,
            "Only a handful of fields are KVM's (OSXSAVE, OSPKE, APIC, the XSAVE sizes, MWAIT with "
            "the quirk off, PV_UNHALT with HLT exits off); everything else is the VMM's.",
        )
    return Feedback(False, "; ".join(wrong) + ".")


def answer_owners() -> Answer:
    """02's answer: each field's owner in the model's ownership of the host's supported table."""
    owners = _owners()
    value = {name: owners.get(name, "passthrough") for name in OWNER_QUESTION}
    return Answer(value, repr(value))


# -- 03 ----------------------------------------------------------------------------------------------

REJECTION_QUESTION = (
    "linear width 52",
    "MAXPHYADDR 60",
    "300 entries",
    "TILEDATA without permission",
    "duplicate leaf 7",
)


def _rejection_tables():
    h = _host()
    base = h.supported_cpuid()
    return h, {
        "linear width 52": base.set_field("virt_addr_bits", 52),
        "MAXPHYADDR 60": base.set_field("phys_addr_bits", 60),
        "300 entries": base.appended(*(CpuidEntry(0x40000100 + i) for i in range(300 - len(base)))),
        "TILEDATA without permission": base.set_field("0xd.0.eax[17]", 1).set_field("0xd.0.eax[18]", 1),
        "duplicate leaf 7": base.appended(base.get(7, 0)),
    }


def check_rejections(answer: dict | None) -> Feedback:
    """03: for each scenario of ``REJECTION_QUESTION``, "ok" or the errno KVM_SET_CPUID2 returns."""

    if answer is None:
        return _todo('Replace None with a dict {scenario: "ok" or errno} for: ' + "; ".join(REJECTION_QUESTION) + ".")
    if not isinstance(answer, Mapping):
        return _not_a_dict('{scenario: "ok" or an errno name}, e.g. {"300 entries": "E2BIG", …}')
    wrong = []
    for name, (want, why) in _rejection_answers().items():
        got = _errno_answer(answer.get(name, "?")) or "something that is not text"
        if got != want:
            wrong.append(f"{name}: KVM says {want}, not {got} ({why})")
    if not wrong:
        return Feedback(
            True,
            "The whole list is: more than 256 entries (E2BIG), a linear width other than 0/48/57 "
            "(EINVAL), TILEDATA without permission (EPERM), a changed table after KVM_RUN (EINVAL).",
        )
    return Feedback(False, "; ".join(wrong) + ".")


def _rejection_answers() -> dict[str, tuple[str, str]]:
    h, tables = _rejection_tables()
    out = {}
    for name, table in tables.items():
        v = SimulatedVcpu(kernel=KERNEL, host=h)
        try:
            v.set_cpuid(table)
            out[name] = ("ok", "KVM never checks this")
        except KvmError as e:
            out[name] = (e.errno_name, e.explanation)
    return out


def answer_rejections() -> Answer:
    """03's answer: what the model's KVM_SET_CPUID2 returns for each scenario."""
    value = {name: want for name, (want, _why) in _rejection_answers().items()}
    return Answer(value, repr(value))


# -- 04 ----------------------------------------------------------------------------------------------


def check_xsave_size(answer) -> Feedback:
    """04: after CR4.OSXSAVE=1 and XSETBV 0x7 (x87, SSE, AVX) on sapphire-rapids, what does 0xD.0 EBX read?"""

    if answer is None:
        return _todo("Replace None with a number of bytes.")
    got = _whole(answer)
    if got is None:
        return Feedback(False, "Answer with a whole number of bytes, e.g. 1088.")
    h = _host()
    want = answer_xsave_size().value
    if got == want:
        return Feedback(
            True,
            f"{want} = the AVX component's offset + size from the host's 0xD.2 "
            "(xstate_required_size() over XCR0, with the host's offsets).",
        )
    if got == 576:
        return Feedback(
            False, "576 is the size for XCR0 = 1 or 3 (legacy area + header only): the XSETBV to 0x7 changed it."
        )
    full = standard_size(h.xsave_components, h.xcr0_mask)
    if got == full:
        return Feedback(
            False, f"{full} is the size for every component the host supports (0xD.0 ECX), not for the XCR0 now set."
        )
    return Feedback(
        False,
        "Not that. 0xD.0 EBX is 576 raised to the largest offset+size over the enabled "
        "components ≥ 2, using the host's 0xD subleaves.",
    )


def answer_xsave_size() -> Answer:
    """04's answer: 0xD.0 EBX as the model stores it after CR4.OSXSAVE=1 and XCR0 = 0x7."""
    h = _host()
    out = check(h.supported_cpuid(), kernel=KERNEL, host=h, state={"cr4": 1 << 18, "xcr0": 0x7})
    xsave = out.stored.get(0xD, 0)
    assert xsave is not None  # sapphire-rapids' supported CPUID has 0xD.0
    return Answer(xsave.ebx, str(xsave.ebx))


# -- 05 ----------------------------------------------------------------------------------------------


def check_xcr0(answer) -> Feedback:
    """05: an XCR0 value that enables AVX-512 state and that KVM accepts for the sapphire-rapids guest."""

    if answer is None:
        return _todo("Replace None with an XCR0 value, e.g. 0x7.")
    try:
        value = _inputs.xcr0(answer)  # as `cpuidkit xcr0 VALUE` reads it: a number, at most 64 bits
    except CpuidkitError as e:
        return Feedback(False, f"{e.detail if isinstance(e, InputError) else e}. Give a number such as 0xe7.")
    h = _host()
    v = SimulatedVcpu(kernel=KERNEL, host=h)
    v.set_cpuid(h.supported_cpuid())
    why = v.xcr0_violation(value)
    if why:
        return Feedback(False, f"__kvm_set_xcr() refuses {value:#x}: {why}.")
    if value & AVX512_STATE != AVX512_STATE:
        return Feedback(False, f"{value:#x} is accepted, but it does not enable the AVX-512 state (bits 5, 6, 7).")
    return Feedback(
        True,
        f"{value:#x} is accepted: x87 on, SSE under YMM, the three AVX-512 components together, "
        "everything inside guest_supported_xcr0.",
    )


AVX512_STATE = 0xE0  # XCR0 bits 5-7: opmask, ZMM_Hi256, Hi16_ZMM


def answer_xcr0() -> Answer:
    """05's answer: the smallest XCR0 that the model's ``__kvm_set_xcr`` accepts for the guest and that
    enables the three AVX-512 components."""
    h = _host()
    v = SimulatedVcpu(kernel=KERNEL, host=h)
    v.set_cpuid(h.supported_cpuid())
    value = min(x for x in accept_set(v) if x & AVX512_STATE == AVX512_STATE)
    return Answer(value, f"{value:#x}   # {', '.join(mask_names(value))}")


# -- 06 ----------------------------------------------------------------------------------------------

POOL = ("cascade-lake", "epyc-milan", "sapphire-rapids")


def check_pool_maxphyaddr(answer) -> Feedback:
    """06: the guest MAXPHYADDR (phys-bits) to give VMs that live-migrate across ``POOL``."""

    if answer is None:
        return _todo("Replace None with a number of bits.")
    got = _whole(answer)
    if got is None:
        return Feedback(False, "Give a whole number of bits, e.g. 40.")
    widths = {h: resolve_host(h).maxphyaddr for h in POOL}
    want = min(widths.values())  # answer_pool_maxphyaddr()
    if got == want:
        return Feedback(
            True,
            f"{want}: the narrowest host. Wider hosts then run a narrower guest, which is "
            "harmless (faithful only with allow_smaller_maxphyaddr, but nothing breaks).",
        )
    if got > want:
        narrow = [h for h, w in widths.items() if w < got]
        return Feedback(
            False,
            f"On {', '.join(narrow)} the guest would be wider than the host: KVM accepts the CPUID, "
            "but memslots above the host width are refused and PTEs there fault with RSVD.",
        )
    return Feedback(
        False, f"{got} works everywhere, but it throws away address space: every host has at least {want} bits."
    )


def answer_pool_maxphyaddr() -> Answer:
    """06's answer: the narrowest MAXPHYADDR of the pool's hosts."""
    want = min(resolve_host(h).maxphyaddr for h in POOL)
    return Answer(want, str(want))


# -- 07 ----------------------------------------------------------------------------------------------


def check_accepted_but_illegal(table) -> Feedback:
    """07: build a table that KVM accepts and the lint calls *illegal* (host sapphire-rapids, 6.18, vmx)."""

    if table is None:
        return _todo("Replace None with a CpuidTable (start from host.supported_cpuid() and change a field).")
    if not isinstance(table, CpuidTable):
        return Feedback(False, "Give a CpuidTable (table.set_field(...) returns one).")
    h = _host()
    out = check(table, kernel=KERNEL, host=h)
    if not out.accepted:
        assert out.error is not None  # check() rejects exactly when it has an error
        return Feedback(
            False,
            f"KVM rejects it ({out.errno}, rule {out.error.rule}): that cell is 'rejected'. "
            "Find something illegal that kvm_check_cpuid() does not look at.",
        )
    illegal = [f for f in lint_table(table, host=h) if f.severity == "illegal"]
    if not illegal:
        return Feedback(
            False,
            "KVM accepts it, but the lint finds nothing illegal. Try an XCR0 rule in 0xD.0, "
            "a supervisor component in 0xD.0 EAX, or an impossible MAXPHYADDR.",
        )
    return Feedback(
        True,
        f"Accepted by KVM and illegal for the architecture: {illegal[0].rule} ({illegal[0].detail or illegal[0].explanation}).",
    )


def answer_accepted_but_illegal() -> Answer:
    """07's answer: the host's supported table with CET_U (a supervisor component) listed in 0xD.0 EAX as a
    user XCR0 bit: KVM masks it out of guest_supported_xcr0 and stores the table; the SDM forbids it."""
    table = _host().supported_cpuid().set_field("0xd.0.eax[11]", 1)
    return Answer(table, 'host.supported_cpuid().set_field("0xd.0.eax[11]", 1)   # CET_U in 0xD.0 EAX')


# -- 08 ----------------------------------------------------------------------------------------------


def _first_since(bid: str, value: str) -> str | None:
    for b in behaviour_rows(bid):
        if b.value == value and b.since is not None:
            return f"{b.since[0]}.{b.since[1]}"
    return None


def check_kernel_history(answer: dict | None) -> Feedback:
    """08: three versions, as "X.Y": ``post_run_identical`` (an identical re-SET after KVM_RUN is accepted
    again), ``sgx_stored_verbatim`` (KVM stops rewriting 0x12.1), ``lazy_runtime`` (runtime updates deferred)."""
    if answer is None:
        return _todo(
            'Replace None with {"post_run_identical": "X.Y", "sgx_stored_verbatim": "X.Y", "lazy_runtime": "X.Y"}.'
        )
    if not isinstance(answer, Mapping):
        return _not_a_dict('{behaviour: "X.Y"} with versions as text, e.g. {"post_run_identical": "5.17", …}')
    want = _kernel_history()
    wrong = []
    for key, (version, why) in want.items():
        got = (_text(answer.get(key, "")) or "a version that is not text").strip().lstrip("v")
        if got != version:
            wrong.append(f"{key}: {got or 'missing'} is not it ({why}; look at the timeline)")
    if not wrong:
        return Feedback(True, "5.17, 6.4 and 6.15: each is a row of data/kvm-behaviours.csv with its source.")
    return Feedback(False, "; ".join(wrong) + ".")


def _kernel_history() -> dict[str, tuple[str | None, str]]:
    return {
        "post_run_identical": (
            _first_since("post_run_set_cpuid", "identical"),
            "5.16 refused every post-run SET; c6617c61e8fe allowed identical tables",
        ),
        "sgx_stored_verbatim": (
            _first_since("sgx_xfrm_adjust", "none"),
            "275a87244ec8 'Don't adjust guest's CPUID.0x12.1' landed in 6.4-rc3",
        ),
        "lazy_runtime": (
            _first_since("runtime_update_mode", "lazy"),
            "93da6af3ae56 deferred runtime updates to the next CPUID emulation",
        ),
    }


def answer_kernel_history() -> Answer:
    """08's answer: the first version of each behaviour's row in data/kvm-behaviours.csv."""
    value = {key: version for key, (version, _why) in _kernel_history().items()}
    return Answer(value, repr(value))


# -- 09 ----------------------------------------------------------------------------------------------


def check_review(answer) -> Feedback:
    """09: which fields does the example template set that KVM overwrites? A set of field names."""

    if answer is None:
        return _todo('Replace None with a set of field names, e.g. {"osxsave"}.')
    if not isinstance(answer, (set, frozenset, list, tuple)) or not all(isinstance(x, str) for x in answer):
        return Feedback(False, 'Give a set of field names (text), e.g. {"osxsave", "ospke"}.')

    want = set(_overwritten())
    got = {str(x).strip() for x in answer}
    if got == want:
        return Feedback(
            True,
            "These values in the template are dead: KVM recomputes them from CR4, XCR0 and "
            "IA32_XSS. A review should ask the VMM to stop setting them (the lint's runtime_owned_value).",
        )
    missing, extra = sorted(want - got), sorted(got - want)
    parts = []
    if missing:
        parts.append(f"also overwritten: {', '.join(missing)}")
    if extra:
        parts.append(f"not overwritten (KVM keeps the template's value): {', '.join(extra)}")
    return Feedback(False, "; ".join(parts) + ".")


def _overwritten() -> frozenset[str]:
    h = _host()
    table, _ = example_template(h)
    out = check(table, kernel=KERNEL, host=h)
    want = set()
    for o in out.fields:
        if o.owner != "passthrough":
            given = table.get_field(f"{o.field.leaf:#x}.{o.subleaf}.{o.field.register}[{o.field.bits}]")
            if given != o.value:
                want.add(o.field.name)
    return frozenset(want)


def answer_review() -> Answer:
    """09's answer: the fields KVM (not the VMM) decides whose stored value differs from the template's."""
    value = _overwritten()
    return Answer(value, "{" + ", ".join(repr(n) for n in sorted(value)) + "}")


# -- 10 ----------------------------------------------------------------------------------------------


def check_live_width(answer, live: bool = True) -> Feedback:
    """10: what does the real kernel return for a linear width of 50? The model's answer is checked,
    and where /dev/kvm works (and ``live``) the real kernel's is said too."""

    if answer is None:
        return _todo('Replace None with "ok" or an errno name.')
    got = _errno_answer(answer)
    if got is None:
        return Feedback(False, 'Answer with text: "ok" or an errno name such as "EINVAL".')
    want = answer_live_width().value
    said = ""
    try:
        if live and kvm_available()[0]:
            with LiveVcpu() as lv:
                table = lv.supported_cpuid().set_field("virt_addr_bits", 50)
                try:
                    lv.set_cpuid(table)
                    real = "ok"
                except KvmError as e:
                    real = e.errno_name
            said = f" The real kernel here says {real}."
    except CpuidkitError:
        said = ""
    if got == want:
        return Feedback(True, f"{want}: kvm_check_cpuid() allows only 0, 48 and 57.{said}")
    return Feedback(False, f"The model says {want}, not {got}.{said}")


def answer_live_width() -> Answer:
    """10's answer: what the model's KVM_SET_CPUID2 returns for a linear width of 50."""
    h = _host()
    v = SimulatedVcpu(kernel=KERNEL, host=h)
    try:
        v.set_cpuid(h.supported_cpuid().set_field("virt_addr_bits", 50))
        want = "ok"
    except KvmError as e:
        want = e.errno_name
    return Answer(want, repr(want))


# -- the answer key -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exercise:
    """One notebook's exercise: its checker and the function that computes its right answer."""

    notebook: str  # "00" … "10"
    question: str
    check: Callable[..., Feedback]
    answer: Callable[[], Answer]
    check_kwargs: dict = field(default_factory=dict)  # how the key calls the checker (no live kernel)


EXERCISES: tuple[Exercise, ...] = (
    Exercise(
        "00",
        "What does KVM_SET_CPUID2 return for the host's table with only avx512f cleared?",
        check_first_toggle,
        answer_first_toggle,
    ),
    Exercise(
        "01", "Where does AVX2 live: (leaf, subleaf, register, bit)?", check_field_position, answer_field_position
    ),
    Exercise(
        "02", "Who owns " + ", ".join(OWNER_QUESTION) + " (sapphire-rapids, 6.18, vmx)?", check_owners, answer_owners
    ),
    Exercise(
        "03",
        "For each scenario, ok or the errno KVM_SET_CPUID2 returns (6.18, a vCPU that has not run).",
        check_rejections,
        answer_rejections,
    ),
    Exercise(
        "04",
        "After CR4.OSXSAVE=1 and XCR0 = 0x7 on sapphire-rapids (6.18), what does the guest read in 0xD.0 EBX?",
        check_xsave_size,
        answer_xsave_size,
    ),
    Exercise(
        "05",
        "An XCR0 value that enables the AVX-512 state and that KVM accepts (sapphire-rapids, no AMX permission).",
        check_xcr0,
        answer_xcr0,
    ),
    Exercise(
        "06",
        "Which guest MAXPHYADDR for VMs that live-migrate across " + ", ".join(POOL) + "?",
        check_pool_maxphyaddr,
        answer_pool_maxphyaddr,
    ),
    Exercise(
        "07",
        "A table that KVM accepts and the lint calls illegal (start from host.supported_cpuid()).",
        check_accepted_but_illegal,
        answer_accepted_but_illegal,
    ),
    Exercise(
        "08",
        "The first version of: identical re-SET after KVM_RUN accepted; 0x12.1 stored verbatim; lazy runtime updates.",
        check_kernel_history,
        answer_kernel_history,
    ),
    Exercise(
        "09",
        "Which fields does the example template set that KVM overwrites (sapphire-rapids, 6.18, vmx, a fresh vCPU)?",
        check_review,
        answer_review,
    ),
    Exercise(
        "10",
        "What does KVM_SET_CPUID2 return for a table whose linear-address width is 50?",
        check_live_width,
        answer_live_width,
        {"live": False},
    ),
)


def answer_key_markdown() -> str:
    """The trainers' answer key (docs/answer-key.md): for every exercise its question, the answer as a
    reader would write it, and what its checker says to that answer.  Computed from the core, like the
    checkers, so regenerate it (``make course-docs``) when the model changes."""
    lines = [
        "# Answer key (for trainers)",
        "",
        "Generated by `make course-docs` (tools/make_course_docs.py) from `cpuidkit/ui/exercises.py`: each answer",
        "is computed by the `answer_…()` function next to its checker, and the text under it is what the",
        "checker says to that answer. Do not edit by hand; a test regenerates this file and fails if it is stale.",
        f"Host sapphire-rapids, kernel {KERNEL}, vendor vmx unless the question says otherwise.",
    ]
    for ex in EXERCISES:
        a = ex.answer()
        fb = ex.check(a.value, **ex.check_kwargs)
        lines += [
            "",
            f"## {ex.notebook} · `{ex.check.__name__}`",
            "",
            ex.question,
            "",
            "```python",
            f"answer = {a.text}",
            "```",
            "",
            f"{str(fb).split(': ', 1)[0].capitalize()}: {fb.message}",
        ]
    return "\n".join(lines) + "\n"
