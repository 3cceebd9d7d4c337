"""Notebooks: stored without outputs, shaped like a course, and every one runs top to bottom in a fresh kernel."""

from __future__ import annotations

import json
import os
import re
import time

import pytest

from conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
MAX_CELL_LINES = 25
EXPECTED = [f"{n:02d}-" for n in range(11)]


def _nb(path) -> dict:
    return json.loads(path.read_text())


def _source(cell) -> str:
    src = cell["source"]
    return "".join(src) if isinstance(src, list) else src


def _code(nb) -> str:
    return "\n".join(_source(c) for c in nb["cells"] if c["cell_type"] == "code")


def _markdown(nb) -> str:
    return "\n".join(_source(c) for c in nb["cells"] if c["cell_type"] == "markdown")


def test_there_are_notebooks():
    assert NOTEBOOKS and NOTEBOOKS[0].name.startswith("00-")


def test_the_course_has_eleven_numbered_notebooks():
    assert [p.name[:3] for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(path):
    nb = _nb(path)
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        assert cell.get("outputs") == [], f"{path.name} cell {i} carries outputs"
        assert cell.get("execution_count") is None, f"{path.name} cell {i} carries an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_opens_with_what_you_learn(path):
    nb = _nb(path)
    first = nb["cells"][0]
    assert first["cell_type"] == "markdown"
    text = _source(first)
    assert "What you will learn" in text
    assert re.search(r"\(\d+ minutes\)", text), f"{path.name}: say how long it takes, e.g. '(15 minutes)'"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_code_cell_is_longer_than_a_screen(path):
    for i, cell in enumerate(_nb(path)["cells"]):
        if cell["cell_type"] == "code":
            n = len(_source(cell).splitlines())
            assert n <= MAX_CELL_LINES, f"{path.name} cell {i} has {n} lines: move the logic into cpuidkit/ui"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_a_widget_an_exercise_and_a_summary(path):
    nb = _nb(path)
    code, md = _code(nb), _markdown(nb)
    assert re.search(r"cpuidkit\.ui(\.widgets)? import|W\.interact", code), f"{path.name}: no interactive widget"
    assert re.search(r"\bcheck_\w+\(answer\)", code), f"{path.name}: no self-checking exercise"
    assert "from cpuidkit.ui.exercises import check_" in code
    last = nb["cells"][-1]
    assert last["cell_type"] == "markdown" and "## Summary" in _source(last), f"{path.name}: end with a summary"
    assert re.search(r"`\w+\(\)`", md), f"{path.name}: name the kernel (or cpuidkit) functions involved"
    if not path.name.startswith(("00-", "01-")):
        assert re.search(r"\b[56]\.\d+\b", md), f"{path.name}: say which kernel versions the behaviour holds for"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_exercises_ship_unanswered(path):
    code = _code(_nb(path))
    assert re.search(r"^answer = None\b", code, re.M), f"{path.name}: the exercise must ship with answer = None"


def test_error_cells_are_tagged():
    tagged = [(p.name, i) for p in NOTEBOOKS for i, c in enumerate(_nb(p)["cells"])
              if "raises-exception" in c.get("metadata", {}).get("tags", [])]
    assert tagged, "notebook 03 shows KVM's error on purpose in a cell tagged raises-exception"


# -- execution ----------------------------------------------------------------------------------------

WORKERS = max(2, min(4, os.cpu_count() or 2))


def _execute_one(path_str: str, env: dict | None = None) -> tuple[str, float]:
    """Run one notebook in a fresh kernel (in a worker process); returns the executed notebook as JSON text."""
    import nbformat
    from nbclient import NotebookClient

    os.environ.update(env or {})
    path = ROOT / "notebooks" / path_str
    for attempt in range(3):
        nb = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        try:
            NotebookClient(nb, timeout=120, kernel_name="python3",
                           resources={"metadata": {"path": str(path.parent)}}).execute()
        except RuntimeError as e:
            # Kernels started at the same moment in parallel workers can race for the same ZeroMQ
            # ports, and one dies before it answers kernel_info: no cell has run, so start again.
            # Any failure after the kernel is up (a cell error, a crash) is reported, never retried.
            if "before replying to kernel_info" not in str(e) or attempt == 2:
                raise
            continue
        return nbformat.writes(nb), time.perf_counter() - start
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def executed(request):
    """Every notebook executed once, in parallel worker processes (each notebook its own fresh kernel)."""
    pytest.importorskip("nbclient")
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import nbformat

    start = time.perf_counter()
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=WORKERS, mp_context=ctx) as pool:
        futures = {p.name: pool.submit(_execute_one, p.name) for p in NOTEBOOKS}
        results = {}
        for name, fut in futures.items():
            try:
                doc, seconds = fut.result()
                results[name] = (nbformat.reads(doc, as_version=4), seconds)
            except Exception as e:  # noqa: BLE001 - reported by that notebook's test
                results[name] = (e, 0.0)
    wall = time.perf_counter() - start
    times = {n: s for n, (_, s) in results.items()}
    line = (f"notebook suite: {len(times)} notebooks executed in {wall:.1f} s wall-clock with {WORKERS} workers "
            f"({sum(times.values()):.1f} s of notebook time; slowest {max(times, key=times.get)} "
            f"{max(times.values()):.1f} s)")
    capman = request.config.pluginmanager.getplugin("capturemanager")
    if capman is not None:
        with capman.global_and_fixture_disabled():
            print("\n" + line)
    else:
        print(line)
    return results


def _errors(nb) -> tuple[list, list]:
    """(errors in untagged cells, tagged cells that did not raise)."""
    bad, silent = [], []
    for i, c in enumerate(nb.cells):
        if c.cell_type != "code":
            continue
        errs = [o for o in c.get("outputs", []) if o.get("output_type") == "error"]
        if "raises-exception" in c.metadata.get("tags", []):
            if not errs:
                silent.append(i)
        elif errs:
            bad.append((i, errs[0]["ename"], errs[0]["evalue"][:300]))
    return bad, silent


def _text(nb) -> str:
    out = []
    for c in nb.cells:
        for o in c.get("outputs", []) if c.cell_type == "code" else []:
            out.append(o.get("text", "") + o.get("data", {}).get("text/plain", "") + o.get("data", {}).get("text/html", ""))
    return "\n".join(out)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_executes_top_to_bottom(path, executed):
    nb, seconds = executed[path.name]
    if isinstance(nb, Exception):
        raise nb
    print(f"{path.name}: {seconds:.1f} s")
    bad, silent = _errors(nb)
    assert not bad, f"{path.name}: errors outside cells tagged raises-exception: {bad}"
    assert not silent, f"{path.name}: cells {silent} are tagged raises-exception but raised nothing"
    text = _text(nb)
    assert "Not answered yet" in text or "NOT ANSWERED" in text, "the exercise cell must run and say it waits"


@pytest.mark.slow
def test_live_lab_skips_cleanly_without_kvm():
    path = next(p for p in NOTEBOOKS if p.name.startswith("10-"))
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import nbformat

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        doc, _ = pool.submit(_execute_one, path.name, {"CPUIDKIT_KVM_DEVICE": "/nonexistent/kvm"}).result()
    nb = nbformat.reads(doc, as_version=4)
    bad, _ = _errors(nb)
    assert not bad, bad
    text = _text(nb)
    assert "SKIPPED: no usable KVM device" in text
    assert "scenarios agree" not in text
