"""The notebooks' own widget cells, run in this process and driven the way a browser drives them (issue 13).

Each test executes a notebook's code cells as the notebook has them (the last expression of a cell is its
value, as in Jupyter), then changes a widget through the comm message a browser sends (``set_state``
inside ``_handle_msg``), and compares what every panel shows with ``lab.expected()`` and with the core.
"""

from __future__ import annotations

import ast
import json

import pytest
from conftest import ROOT

from cpuidkit.analysis.lint import lint_axes, lint_table
from cpuidkit.ui.exercises import answer_review


def _cells(prefix: str) -> list[str]:
    path = next((ROOT / "notebooks").glob(f"{prefix}-*.ipynb"))
    nb = json.loads(path.read_text())
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


def run_cells(prefix: str, until: str) -> tuple[dict, object]:
    """Run a notebook's code cells up to and including the first one containing ``until``; returns the
    namespace and that cell's value (its last expression, as Jupyter shows it)."""
    ns: dict = {"display": lambda *a, **k: None}
    for src in _cells(prefix):
        tree = ast.parse(src)
        last = tree.body[-1] if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        body = ast.Module(tree.body[:-1] if last else tree.body, type_ignores=[])
        exec(compile(body, prefix, "exec"), ns)
        value = eval(compile(ast.Expression(last.value), prefix, "eval"), ns) if last else None
        if until in src:
            return ns, value
    raise AssertionError(f"no cell of {prefix} contains {until!r}")


def type_into(widget, value) -> None:
    """What the browser sends when a reader types ``value`` into a widget (a slider's readout, a box)."""
    widget._handle_msg({"content": {"data": {"method": "update", "state": {"value": value}, "buffer_paths": []}}, "buffers": []})


def children(box, cls):
    """The widgets of class ``cls`` inside ``box``, depth first."""
    out = []
    for c in getattr(box, "children", ()):
        if isinstance(c, cls):
            out.append(c)
        out += children(c, cls)
    return out


# -- item 2: the verdict panel's "derived:" line follows MAXPHYADDR ------------------------------------------


@pytest.mark.parametrize("prefix, until", [("06", "WidthSliders(lab)"), ("02", "CpuidToggler(")])
def test_typing_52_into_the_maxphyaddr_readout_redraws_the_derived_line(prefix, until):
    from cpuidkit.ui.widgets import VerdictPanel, WidthSliders

    _ns, shown = run_cells(prefix, until)
    sliders, panels = children(shown, WidthSliders), children(shown, VerdictPanel)
    lab = sliders[0].lab
    assert panels[0].lab is lab
    before = lab.outcome.derived["maxphyaddr"]
    target = 52 if before != 52 else 46
    type_into(sliders[0].maxphyaddr, target)
    assert lab.maxphyaddr == target
    assert f"derived: MAXPHYADDR {target}," in panels[0].value
    assert f"derived: MAXPHYADDR {before}," not in panels[0].value
    assert lab.expected().mismatches() == []


# -- item 7: out-of-range MAXPHYADDR input gets honest text ----------------------------------------------------


def test_typing_255_into_the_maxphyaddr_readout_says_what_happened():
    from cpuidkit.ui.widgets import WidthSliders

    _ns, shown = run_cells("06", "WidthSliders(lab)")
    sliders = children(shown, WidthSliders)[0]
    slider = sliders.maxphyaddr
    type_into(slider, min(255, slider.max))  # the browser clamps a typed number to the slider's max
    note = sliders.note.value
    assert "64–63" not in note and "no GPA bit reserved" in note
    assert f"the slider stops at {slider.max}" in note and "255" in note
    assert sliders.lab.expected().mismatches() == []


def test_the_width_note_never_names_an_empty_range():
    from cpuidkit.ui import Lab
    from cpuidkit.ui.widgets import WidthSliders

    lab = Lab("cascade-lake")
    w = WidthSliders(lab)
    for value in (0, 1, 46, 63, 64, 65, 200, 255):
        lab.set_maxphyaddr(value)
        note = w.note.value
        if value < 64:
            assert f"GPA bits {value}–63 reserved" in note
        else:
            assert "reserved" in note and "–63" not in note, note


# -- item 5: notebook 05 plays the AMX story with the permission toggle ----------------------------------------


def test_notebook_05_amx_story():
    from cpuidkit.ui.widgets import AmxPermissionToggle, VerdictPanel, Xcr0Checkboxes

    ns, shown = run_cells("05", "AmxPermissionToggle(")
    lab = ns["amx_lab"]
    toggle = children(shown, AmxPermissionToggle)[0]
    verdict = children(shown, VerdictPanel)[0]
    xcr0 = children(shown, Xcr0Checkboxes)[0]
    # 1. without the permission: EPERM, and XSETBV cannot be asked
    assert verdict.data["verdict"] == "rejected" and verdict.data["errno"] == "EPERM"
    assert "KVM_SET_CPUID2 failed first" in xcr0.result.value
    # 2. the permission: accepted, both AMX bits in guest_supported_xcr0
    type_into(toggle.permission, True)
    assert verdict.data["verdict"] == "accepted"
    assert lab.outcome.derived["guest_supported_xcr0"] & 0x60000 == 0x60000
    # 3. TILECFG alone: #GP at XSETBV, EINVAL at KVM_SET_XCRS
    type_into(xcr0.boxes[17], True)
    assert "#GP" in xcr0.result.value and "EINVAL" in xcr0.result.value
    # 4. both: ok
    type_into(xcr0.boxes[18], True)
    assert "XSETBV <b" in xcr0.result.value and ">ok<" in xcr0.result.value
    assert lab.expected().mismatches() == []
    # the note says the four answers for the same table
    rows = toggle.rows()
    assert rows["set_cpuid2_without"] == "rejected (EPERM)" and rows["set_cpuid2_with"] == "accepted"
    assert rows["xsetbv_tilecfg"].startswith("#GP") and rows["xsetbv_both"].startswith("ok")


# -- 07: the demo starts accepted, legal and sane; bits 11 and 17 move it on one axis each -------------------------


def test_notebook_07_toggle_demo_starts_clean_and_moves_one_axis_at_a_time():
    from cpuidkit.ui.widgets import BitGrid, LintPanel, VerdictPanel

    ns, shown = run_cells("07", "LintPanel(lab)")
    lab, host = ns["lab"], ns["host"]
    grid, verdict, lint = children(shown, BitGrid)[0], children(shown, VerdictPanel)[0], children(shown, LintPanel)[0]
    assert verdict.data["verdict"] == "accepted" and "lint: clean" in lint.value
    assert lint_axes(lint_table(lab.table, host=host)) == ("legal", "sane")
    grid.buttons[11].click()
    assert verdict.data["verdict"] == "accepted" and "lint: illegal" in lint.value
    grid.buttons[11].click()
    grid.buttons[17].click()
    assert verdict.data["verdict"] == "accepted" and "lint: insane" in lint.value
    assert lint_axes(lint_table(lab.table, host=host)) == ("legal", "insane")
    assert lab.expected().mismatches() == []


# -- item 8: 09's exercise has code to edit on the page --------------------------------------------------------------


def test_notebook_09_exercise_box_shows_code_and_checks_it():
    from cpuidkit.ui.widgets import ExerciseBox

    _ns, box = run_cells("09", "ExerciseBox(")
    assert isinstance(box, ExerciseBox)
    assert box.code.value.strip().startswith("{") and "Not answered yet" in box.feedback.value
    assert "Replace None" not in box.feedback.value
    box.button.click()
    assert "Not yet" in box.feedback.value  # the example is a start, not the answer
    box.code.value = answer_review().text
    box.button.click()
    assert "Right." in box.feedback.value
    box.code.value = "osxsave, ospke"  # names without quotes: said, not raised
    box.button.click()
    assert "not a Python value" in box.feedback.value
    box.code.value = "__import__('os').system('true')"  # never run
    assert box.check().ok is False


def test_exercise_box_reads_only_literals():
    from cpuidkit.ui.widgets.exercise import MAX_ANSWER_CHARS, read_answer

    assert read_answer(' {"a", "b"} ') == ({"a", "b"}, None)
    assert read_answer("") == (None, None)
    assert read_answer("open('x')")[1] is not None
    assert read_answer("1" * (MAX_ANSWER_CHARS + 1))[1] is not None
