"""Notebooks 05, 06, 07 and 09 in a real browser, in JupyterLab and in Voilà (issue 13).

One JupyterLab and one Voilà server (free loopback ports, their own tokens, each serving a temporary copy
of notebooks/: nothing is saved back) and one Debian chromium (Playwright, never a downloaded browser) are
shared by the module.  For each notebook and front end the test runs every cell once, waits for the
notebook's main widget (found by its CSS class, never by cell position), reads every panel of that widget
from the page, uses the widget once through the browser (tick an XCR0 component, type a MAXPHYADDR,
flip a bit, run the review), and reads the panels again.  It fails on:

* a panel whose page text or state disagrees with what a Lab in this process computes for the same
  configuration and the same action (``lab.expected()``: the notebook's widgets on a Lab built here);
* any ``<Figure size`` text in an output (a bare matplotlib Figure in an Output widget);
* any stderr or error output that is not listed in ``INTENDED_STDERR`` (none is);
* in JupyterLab, a code cell that did not run.

A canary notebook (written into the temporary copy only) shows a bare Figure and writes to stderr: both
front ends must report both, so the checks above are known to bite.  Screenshots (and the page's text) of
every case go to a temporary folder, printed at the start and named in a failure.
"""

from __future__ import annotations

import ast
import contextlib
import html
import io
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import ROOT, required_parts
from test_browser import CHROMIUM, CHROMIUM_ARGS, _free_port

pytestmark = [pytest.mark.chromium, pytest.mark.slow]

KEYS = ("05", "06", "07", "09")
CANARY = "zz-canary.ipynb"  # written into the served copy only
INTENDED_STDERR: dict[str, list[str]] = {}  # notebook key -> substrings of stderr outputs shown on purpose (none)
VIEWPORT = {"width": 1400, "height": 1100}
WIDGET_TIMEOUT = 90_000  # ms: a notebook's first widget (kernel start and every cell before it, on a busy machine)
PANEL_TIMEOUT = 30.0  # s: a panel shows the expected content after an action


def _notebook(key: str) -> str:
    """The notebook whose name starts with ``key-`` (the title part may change)."""
    (path,) = sorted((ROOT / "notebooks").glob(f"{key}-*.ipynb"))
    return path.name


# -- servers and browser, one each per module ----------------------------------------------------------------


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _api(srv: dict, path: str, method: str = "GET", body: dict | None = None):
    data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
    req = urllib.request.Request(f"{srv['base']}{path}", method=method, data=data,
                                 headers={"Authorization": f"token {srv['token']}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        body = r.read()
        return json.loads(body) if body else None


def _canary(root: Path) -> None:
    """A notebook with what the checks look for: an Output widget holding a bare Figure's text (what a
    capture shows without an inline backend), a stderr line and a PNG that is not one, and a stderr line from
    the cell itself (Voilà drops a cell's own stderr by design; an Output widget's it shows)."""
    source = (
        "import sys\nimport ipywidgets as W\nimport matplotlib.pyplot as plt\n"
        "fig = plt.figure(figsize=(2, 2))\nplt.close(fig)\nout = W.Output()\nout.add_class('cpuidkit-canary')\n"
        "out.outputs = ({'output_type': 'display_data', 'data': {'text/plain': repr(fig)}, 'metadata': {}},\n"
        "               {'output_type': 'stream', 'name': 'stderr', 'text': 'canary on stderr in a widget\\n'},\n"
        "               {'output_type': 'display_data', 'data': {'image/png': 'bm90IGEgcG5n'}, 'metadata': {}})\n"
        "print('canary on stderr', file=sys.stderr)\nout"
    )
    nb = {
        "cells": [{"cell_type": "code", "execution_count": None, "id": "canary", "metadata": {}, "outputs": [],
                   "source": source}],
        "metadata": {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    (root / CANARY).write_text(json.dumps(nb))


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """JupyterLab and Voilà on free loopback ports with tokens, started together, on copies of notebooks/."""
    tmp = tmp_path_factory.mktemp("course-servers")
    root = tmp / "notebooks"
    shutil.copytree(ROOT / "notebooks", root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    _canary(root)
    settings = tmp / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    # "ready": answers once the server is up; "guarded": must not be served without the token
    lab = {"name": "jupyterlab", "port": _free_port(), "token": secrets.token_hex(24), "ready": "/api/status",
           "guarded": "/api/contents"}
    voila = {"name": "voila", "port": _free_port(), "token": secrets.token_hex(24), "ready": "/",
             "guarded": f"/voila/render/{_notebook('06')}"}
    lab_cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={lab['port']}", "--ServerApp.port_retries=0",
               f"--IdentityProvider.token={lab['token']}", f"--ServerApp.root_dir={root}",
               f"--LabApp.user_settings_dir={tmp / 'settings'}", f"--LabApp.workspaces_dir={tmp / 'workspaces'}",
               "--LabApp.expose_app_in_browser=True"]
    if os.geteuid() == 0:
        lab_cmd.append("--allow-root")  # CI and these machines run as root; the server binds to loopback only
    voila_cmd = [sys.executable, "-m", "voila", "--Voila.ip=127.0.0.1", "--no-browser", f"--port={voila['port']}",
                 "--Voila.port_retries=0", f"--token={voila['token']}", "--strip_sources=True", str(root)]
    started: list[tuple[dict, subprocess.Popen, object]] = []
    try:
        for srv, cmd in ((lab, lab_cmd), (voila, voila_cmd)):
            env = dict(os.environ, PYTHONUNBUFFERED="1",
                       JUPYTER_RUNTIME_DIR=str(tmp / srv["name"] / "runtime"),
                       JUPYTER_CONFIG_DIR=str(tmp / srv["name"] / "config"),
                       JUPYTER_DATA_DIR=str(tmp / srv["name"] / "data"), IPYTHONDIR=str(tmp / srv["name"] / "ipython"))
            log = open(tmp / f"{srv['name']}.log", "w")
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp, start_new_session=True)
            started.append((srv, proc, log))
            srv["base"] = f"http://127.0.0.1:{srv['port']}"
            srv["log"] = tmp / f"{srv['name']}.log"
        deadline = time.monotonic() + 90
        for srv, proc, _log in started:  # both start at once; wait for each
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"{srv['name']} exited with {proc.returncode}: {srv['log'].read_text()[-2000:]}")
                try:
                    urllib.request.urlopen(f"{srv['base']}{srv['ready']}?token={srv['token']}", timeout=5).read()
                    break
                except (urllib.error.URLError, ConnectionError, OSError):
                    if time.monotonic() > deadline:
                        pytest.fail(f"{srv['name']} did not answer within 90 s: {srv['log'].read_text()[-2000:]}")
                    time.sleep(0.2)
            try:  # the token is really required: an error, or a redirect to the login page
                r = urllib.request.urlopen(f"{srv['base']}{srv['guarded']}", timeout=30)
                assert "login" in r.geturl(), f"{srv['name']} served {r.geturl()} without the token"
            except urllib.error.HTTPError:
                pass
        # start the JupyterLab kernels now (a thread; the first JupyterLab case waits for it): opening a
        # notebook connects to its path's session; every cell still runs once, in the browser
        prestart = threading.Thread(target=_prestart, args=(lab, [_notebook(k) for k in KEYS] + [CANARY]), daemon=True)
        prestart.start()
        yield {"lab": lab, "voila": voila, "root": root, "prestart": prestart}
    finally:
        for srv, proc, log in started:
            if srv["name"] == "jupyterlab" and proc.poll() is None:
                try:
                    _api(srv, "/api/shutdown", method="POST")  # stops its kernels too
                    proc.wait(timeout=15)
                except Exception:  # noqa: BLE001 - fall back to signals
                    pass
            _stop(proc)
            log.close()


def _prestart(lab: dict, notebooks: list[str]) -> None:
    for nb in notebooks:
        try:
            _api(lab, "/api/sessions", "POST", {"path": nb, "name": nb, "type": "notebook", "kernel": {"name": "python3"}})
        except (urllib.error.URLError, OSError):  # no harm: the page then starts the kernel itself
            pass


def _sync_api():
    """Playwright's sync API; where CI requires chromium (CPUIDKIT_REQUIRE=chromium), a missing Playwright
    is a failure, not a skip."""
    if "chromium" in required_parts():
        from playwright import sync_api

        return sync_api
    return pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def browser():
    """One chromium for the module, with one context per front end (made on first use): the pages of a front
    end share its HTTP cache, so JupyterLab's bundles load once."""
    sync_api = _sync_api()
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        contexts: dict = {}

        def context(frontend: str):
            if frontend not in contexts:
                contexts[frontend] = b.new_context(viewport=VIEWPORT)
            return contexts[frontend]

        try:
            yield context
        finally:
            for c in contexts.values():
                c.close()
            b.close()


@pytest.fixture(scope="module")
def jupyterlab(browser, servers):
    return _JupyterLab(browser("lab"), servers)


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    folder = tmp_path_factory.mktemp("course-screenshots")
    print(f"\nscreenshots of the course in chromium: {folder}")
    return folder


# -- opening a notebook and running it once ------------------------------------------------------------------

LAB_READY = """async () => {
  const app = window.jupyterapp;
  await app.started;
  await app.restored;
  return true;
}"""

# open a notebook in the running JupyterLab, wait for its kernel, run every cell once (awaited: the command's
# promise settles when the last cell has run), and say which cells got an execution count
LAB_OPEN_AND_RUN = """async ([path, ms]) => {
  const app = window.jupyterapp;
  const work = (async () => {
    const w = await app.commands.execute('docmanager:open', {path: path, factory: 'Notebook'});
    await w.context.ready;
    await w.sessionContext.ready;
    app.shell.activateById(w.id);
    const ok = await app.commands.execute('notebook:run-all-cells', {widgetId: w.id});
    const cells = w.content.widgets.filter(c => c.model.type === 'code');
    return {ok: ok, id: w.id, counts: cells.map(c => c.model.executionCount)};
  })();
  const late = new Promise((_, no) => setTimeout(() => no(new Error('run-all took longer than ' + ms + ' ms')), ms));
  return await Promise.race([work, late]);
}"""

LAB_CLOSE = """async (id) => {
  const app = window.jupyterapp;
  const w = [...app.shell.widgets('main')].find(x => x.id === id);
  if (w) { try { await w.sessionContext.shutdown(); } catch (e) {} w.dispose(); }
}"""


class _JupyterLab:
    """One JupyterLab page for every JupyterLab case: each notebook is opened in it, run, and closed (the
    app boots once).  A case that fails discards the page; the next case starts a fresh one."""

    def __init__(self, context, srv: dict):
        self.context, self.srv, self.page, self.current = context, srv, None, None

    def open(self, notebook: str):
        s = self.srv["lab"]
        if self.page is None:
            self.page = self.context.new_page()
            self.page.goto(f"{s['base']}/lab/workspaces/course-test?reset&token={s['token']}")
            self.page.wait_for_function("() => !!window.jupyterapp", timeout=WIDGET_TIMEOUT)
            self.page.evaluate(LAB_READY)
        prestart = self.srv.get("prestart")
        if prestart is not None:
            prestart.join(timeout=WIDGET_TIMEOUT / 1000)
        ran = self.page.evaluate(LAB_OPEN_AND_RUN, [notebook, WIDGET_TIMEOUT * 2])
        self.current = ran["id"]
        assert ran["ok"] and all(c is not None for c in ran["counts"]), f"not every cell of {notebook} ran: {ran}"
        return self.page

    def close(self, failed: bool) -> None:
        if self.page is None:
            return
        if failed:
            self.page.close()
            self.page = None
        elif self.current is not None:
            self.page.evaluate(LAB_CLOSE, self.current)
        self.current = None


def _shutdown_lab_kernels(srv: dict, notebook: str) -> None:
    for s in _api(srv["lab"], "/api/sessions") or []:
        if s.get("path", "").endswith(notebook):
            _api(srv["lab"], f"/api/sessions/{s['id']}", method="DELETE")


DECODED_WIDTH = """async (src) => {
  const img = new Image();
  img.src = src;
  try { await img.decode(); return img.naturalWidth; } catch (e) { return 0; }
}"""

PROBLEMS = """async () => {
  const outs = [...document.querySelectorAll('.jp-OutputArea-output')];
  const decoded = async (src) => { const i = new Image(); i.src = src;
    try { await i.decode(); return i.naturalWidth; } catch (e) { return 0; } };
  const imgs = [...document.querySelectorAll('.jp-OutputArea-output img')];
  const widths = await Promise.all(imgs.map(i => decoded(i.src)));
  return {
    broken: imgs.filter((i, k) => widths[k] === 0).map(i => i.src.slice(0, 80)),
    figures: outs.filter(o => o.textContent.includes('<Figure size')).map(o => o.textContent.trim().slice(0, 200)),
    stderr: outs.filter(o => o.getAttribute('data-mime-type') === 'application/vnd.jupyter.stderr').map(o => o.textContent.trim()),
    errors: [...document.querySelectorAll('.jp-OutputArea-output, .jp-RenderedText')]
      .map(o => o.textContent).filter(t => /Traceback \\(most recent call last\\)|There was an error when executing/.test(t))
      .map(t => t.trim().slice(0, 300)),
    outputs: outs.length,
  };
}"""


def _problems(page, key: str) -> dict:
    """Bare Figures, images that do not decode, unintended stderr and error outputs on the page."""
    p = page.evaluate(PROBLEMS)
    intended = INTENDED_STDERR.get(key, [])
    p["stderr"] = [t for t in p["stderr"] if t and not any(i in t for i in intended)]
    return p


# -- reading panels from the page ----------------------------------------------------------------------------

READ = """([anchor, probes]) => {
  const all = [...document.querySelectorAll(anchor)];
  if (all.length === 0) return null;
  const root = all[0].closest('.jp-OutputArea-output') || document.body;
  return probes.map(([kind, sel]) => {
    const e = root.querySelector(sel);
    if (!e) return kind === 'exists' ? false : '<missing ' + sel + '>';
    switch (kind) {
      case 'text': return e.textContent;
      case 'title': return e.getAttribute('title');
      case 'bg': return e.style.backgroundColor;
      case 'checked': return e.checked;
      case 'input': return e.value;
      case 'exists': return true;
      case 'selected': return e.selectedIndex < 0 ? null : e.options[e.selectedIndex].textContent;
      case 'options': return [...e.options].map(o => o.textContent);
      case 'toggle': { const b = e.querySelector('button.mod-active'); return b ? b.textContent : null; }
    }
    return '<unknown probe ' + kind + '>';
  });
}"""


def _squash(text: str) -> str:
    """Text compared without whitespace (the page's layout adds breaks where the HTML has none)."""
    return "".join(html.unescape(text).split())


def _html_text(value: str) -> str:
    return _squash(re.sub(r"<[^>]+>", " ", value))


def _rgb(colour: str) -> str:
    c = colour.lstrip("#")
    return f"rgb({int(c[0:2], 16)}, {int(c[2:4], 16)}, {int(c[4:6], 16)})"


def _probes(panel, content) -> list[tuple[str, str, object, str]]:
    """What the page must show for one panel: (kind, selector inside the widget's output, wanted value, what)."""
    from cpuidkit.ui.widgets import (
        BitGrid,
        FieldTable,
        HostPicker,
        KernelSelector,
        LintPanel,
        RegisterPicker,
        ReviewPanel,
        RuntimeTriggers,
        VendorSelector,
        VerdictPanel,
        WidthSliders,
        Xcr0Checkboxes,
    )
    from cpuidkit.ui.widgets.grid import _labelled
    from cpuidkit.ui.widgets.panels import STALE_NOTE

    text = lambda sel, value, what: ("text", sel, _html_text(value), what)  # noqa: E731
    if isinstance(panel, VerdictPanel):
        return [text(".cpuidkit-verdict", content["html"], "verdict panel")]
    if isinstance(panel, LintPanel):
        return [text(".cpuidkit-lint", content["html"], "lint panel")]
    if isinstance(panel, WidthSliders):
        return [("text", ".cpuidkit-maxphyaddr .widget-readout", str(content["maxphyaddr"]), "MAXPHYADDR slider"),
                ("text", ".cpuidkit-linear-width .widget-readout", str(content["linear"]), "linear-width slider"),
                text(".cpuidkit-width-note", content["note"], "width note")]
    if isinstance(panel, Xcr0Checkboxes):
        return [("checked", f".cpuidkit-xcr0-bit-{b} input", on, f"XCR0 box {b}") for b, on in content["ticked"].items()
                ] + [text(".cpuidkit-xcr0-result", content["result"], "XSETBV result")]
    if isinstance(panel, BitGrid):
        out = [text(".cpuidkit-bitgrid-title", content["title"], "grid title")]
        for b, (label, tooltip, colour, _weight) in content["cells"].items():
            out += [("text", f".cpuidkit-bit-{b}", label, f"bit {b}"),
                    ("title", f".cpuidkit-bit-{b}", tooltip, f"bit {b} hover"),
                    ("bg", f".cpuidkit-bit-{b}", _rgb(colour), f"bit {b} owner colour")]
        for b, cell in content["stored"].items():
            out += [text(f".cpuidkit-stored-{b}", cell, f"stored bit {b}"),
                    ("exists", f".cpuidkit-stored-{b} .widget-html-content [title]", "title=" in cell,
                     f"stored bit {b} outline")]
        return out
    if isinstance(panel, FieldTable):
        return [text(".cpuidkit-field-table", content["html"], "field table")]
    if isinstance(panel, RegisterPicker):
        labels = [label for label, _ in _labelled(content["options"])]
        (entry,) = [label for label, _ in _labelled([content["entry"]])]
        return [("options", ".cpuidkit-entry select", labels, "entry list"),
                ("selected", ".cpuidkit-entry select", entry, "entry"),
                ("toggle", ".cpuidkit-register", content["reg"], "register")]
    if isinstance(panel, KernelSelector):
        return [("selected", ".cpuidkit-kernel select", content["value"], "kernel"),
                text(".cpuidkit-kernel-notes", content["notes"], "kernel notes")]
    if isinstance(panel, VendorSelector):
        return [("toggle", ".cpuidkit-vendor", content["value"], "vendor")]
    if isinstance(panel, HostPicker):
        return [("selected", ".cpuidkit-host select", content["value"], "host"),
                text(".cpuidkit-host-description", content["description"], "host description")]
    if isinstance(panel, RuntimeTriggers):
        boxes = content["boxes"]
        return [("checked", f".cpuidkit-runtime-{n} input", v, f"state box {n}") for n, v in boxes.items() if n != "xcr0"
                ] + [("input", ".cpuidkit-runtime-xcr0 input", boxes["xcr0"], "XCR0 box"),
                     text(".cpuidkit-runtime-status", content["status"], "vCPU status"),
                     text(".cpuidkit-runtime-view", content["view"], "runtime fields")]
    if isinstance(panel, ReviewPanel):
        return [text(".cpuidkit-review-note", STALE_NOTE if content["stale"] else "", "review note")]
    raise AssertionError(f"no page reading for a {type(panel).__name__}: teach _probes() to read it")


def _expect_panels(page, anchor: str, lab, when: str) -> None:
    """Every panel attached to ``lab`` shows, in the widget whose output holds ``anchor``, what
    ``lab.expected()`` says it must (polled until it does, or PANEL_TIMEOUT)."""
    exp = lab.expected()
    assert exp.mismatches() == [], f"the test's own widgets disagree with lab.expected(): {exp.mismatches()}"
    probes = [p for panel, content in exp.panels for p in _probes(panel, content)]
    arg = [anchor, [[kind, sel] for kind, sel, _, _ in probes]]
    deadline = time.monotonic() + PANEL_TIMEOUT
    while True:
        got = page.evaluate(READ, arg)
        if got is not None:
            wrong = []
            for (kind, sel, want, what), value in zip(probes, got):
                seen = _squash(value) if kind == "text" and isinstance(value, str) else value
                if seen != want:
                    wrong.append(f"{what} ({sel}): the page shows {value!r}, lab.expected() says {want!r}")
            if not wrong:
                return
        if time.monotonic() > deadline:
            detail = "\n  ".join(wrong[:12]) if got is not None else f"no {anchor} on the page"
            raise AssertionError(f"{when}: {len(wrong) if got is not None else 1} panel reading(s) disagree:\n  {detail}")
        time.sleep(0.1)


def _wait_widget(page, anchor: str) -> None:
    page.locator(anchor).first.wait_for(state="visible", timeout=WIDGET_TIMEOUT)


def _in_widget(page, anchor: str, selector: str):
    """``selector`` inside the output that holds the first ``anchor`` widget."""
    return page.locator(".jp-OutputArea-output").filter(has=page.locator(anchor)).first.locator(selector).first


# -- the notebook's own cells, run here: the same widgets on a Lab of this process ---------------------------


def _find(widget, cls):
    """The first ``cls`` in a widget tree (depth first, children in order)."""
    if isinstance(widget, cls):
        return widget
    for child in getattr(widget, "children", ()):
        found = _find(child, cls)
        if found is not None:
            return found
    return None


def _notebook_widget(path: Path, cls):
    """Run ``path``'s code cells in this process, in order, up to the first that makes a ``cls``; return the
    ``cls`` in that cell's value, and the value.  The test's Lab is thus built by the notebook's own code (whatever host,
    table and state the notebook chose), and its views are the notebook's views of that Lab."""
    ns: dict = {"__name__": "__notebook__", "display": lambda *a, **k: None}
    marker = f"{cls.__name__}("
    cwd = os.getcwd()
    os.chdir(path.parent)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            for i, cell in enumerate(json.loads(path.read_text())["cells"]):
                if cell["cell_type"] != "code":
                    continue
                source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
                tree = ast.parse(source, f"{path.name} cell {i}")
                if marker not in source:
                    exec(compile(tree, f"{path.name} cell {i}", "exec"), ns)
                    continue
                last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
                exec(compile(tree, f"{path.name} cell {i}", "exec"), ns)
                value = eval(compile(ast.Expression(last.value), f"{path.name} cell {i}", "eval"), ns) if last else None
                found = _find(value, cls)
                assert found is not None, f"{path.name} cell {i} mentions {marker} but does not show one"
                return found, value
    finally:
        os.chdir(cwd)
    raise AssertionError(f"no code cell of {path.name} makes a {cls.__name__}: the test must learn the new layout")


# -- each notebook: one action through the browser, the same action here, every panel compared ----------------


def _case_05(page, path: Path) -> None:
    from cpuidkit.ui.widgets import Xcr0Checkboxes

    anchor = ".cpuidkit-xcr0"
    _wait_widget(page, anchor)
    w, _ = _notebook_widget(path, Xcr0Checkboxes)  # the XSETBV simulator
    _expect_panels(page, anchor, w.lab, "05 before the action")
    on = bool(w.boxes[1].value)
    box = _in_widget(page, anchor, ".cpuidkit-xcr0-bit-1 input")  # SSE
    box.scroll_into_view_if_needed()
    box.click()
    w.boxes[1].value = not on
    _expect_panels(page, anchor, w.lab, f"05 after {'un' if on else ''}ticking SSE")


def _case_06(page, path: Path) -> None:
    from cpuidkit.ui.widgets import VerdictPanel, WidthSliders

    anchor = ".cpuidkit-widths"
    _wait_widget(page, anchor)
    sliders, _ = _notebook_widget(path, WidthSliders)
    _expect_panels(page, anchor, sliders.lab, "06 before the action")
    readout = _in_widget(page, anchor, ".cpuidkit-maxphyaddr .widget-readout")
    readout.scroll_into_view_if_needed()
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type("52")
    page.keyboard.press("Enter")
    sliders.maxphyaddr.value = 52
    assert sliders.lab.maxphyaddr == 52
    verdicts = [p for p in sliders.lab._panels if isinstance(p, VerdictPanel)]
    for v in verdicts:  # issue 13 item 2: the derived line follows the table, not only the verdict
        assert "derived: MAXPHYADDR 52" in v.value or not sliders.lab.accepted, v.value
    _expect_panels(page, anchor, sliders.lab, "06 after typing MAXPHYADDR 52")
    label = _in_widget(page, anchor, ".cpuidkit-maxphyaddr .widget-label")
    assert label.evaluate("e => e.scrollWidth <= e.clientWidth"), "06: the MAXPHYADDR slider's label is cut off"


def _case_07(page, path: Path) -> None:
    from cpuidkit.ui.widgets import BitGrid

    anchor = ".cpuidkit-bitgrid"
    _wait_widget(page, anchor)
    grid, _ = _notebook_widget(path, BitGrid)
    assert (grid.leaf, grid.subleaf, grid.register) == (0xD, 0, "eax"), "07's grid is not 0xD.0 EAX any more"
    _expect_panels(page, anchor, grid.lab, "07 before the action")
    # the notebook's claims: the demo starts accepted and clean; CET_U (bit 11) is named on hover
    verdict, lint = _in_widget(page, anchor, ".cpuidkit-verdict"), _in_widget(page, anchor, ".cpuidkit-lint")
    assert "ACCEPTED" in verdict.text_content() and "lint: clean" in lint.text_content(), "07 does not start clean"
    button = _in_widget(page, anchor, ".cpuidkit-bit-11")
    assert "cet_u" in (button.get_attribute("title") or ""), "07: hovering bit 11 does not name CET_U"  # item 6
    button.scroll_into_view_if_needed()
    button.click()
    assert grid.toggle(11)
    _expect_panels(page, anchor, grid.lab, "07 after flipping 0xD.0 EAX[11] (CET_U)")
    # "Flip bit 11 (CET_U): KVM stays green, the lint says illegal"
    assert "ACCEPTED" in verdict.text_content() and "lint: illegal" in lint.text_content(), (
        f"07 after CET_U: {verdict.text_content()!r} {lint.text_content()!r}")


def _case_09(page, path: Path) -> None:
    from cpuidkit.ui.widgets import CpuidToggler, ReviewPanel

    anchor = ".cpuidkit-review-panel"
    _wait_widget(page, anchor)
    panel, cell = _notebook_widget(path, ReviewPanel)
    toggler = _find(cell, CpuidToggler)
    assert toggler is not None and toggler.lab is panel.lab, "09's review is not beside a toggler of its Lab"
    _expect_panels(page, anchor, toggler.lab, "09 before the action")
    _review_shown(page, anchor, panel, "09 before the action")
    bit = _in_widget(page, anchor, ".cpuidkit-toggler .cpuidkit-bit-28")  # 1.ECX[28] AVX
    assert (toggler.grid.leaf, toggler.grid.register) == (1, "ecx"), "09's toggler does not show 1.ECX any more"
    bit.scroll_into_view_if_needed()
    bit.click()
    assert toggler.grid.toggle(28)
    _expect_panels(page, anchor, toggler.lab, "09 after flipping 1.ECX[28] (AVX): the review is stale")
    again = _in_widget(page, anchor, ".cpuidkit-review-again")
    again.scroll_into_view_if_needed()
    again.click()
    panel.refresh()  # what the button does
    _expect_panels(page, anchor, toggler.lab, "09 after 'review again'")
    _review_shown(page, anchor, panel, "09 after 'review again'")
    img = page.locator(".cpuidkit-fleet img").first  # issue 13 item 1: the fleet matrix is drawn
    img.wait_for(state="attached", timeout=WIDGET_TIMEOUT)
    src = img.get_attribute("src") or ""
    width = page.evaluate(DECODED_WIDTH, src)
    assert src.startswith("data:image/png") and width > 100, f"09: the fleet matrix is not drawn ({src[:60]!r}, {width})"
    _case_09_templates(page, path)


def _shows(loc, want: list[str], when: str) -> None:
    """``loc``'s text holds every line of ``want`` (inline marks and spacing aside), within PANEL_TIMEOUT."""
    deadline = time.monotonic() + PANEL_TIMEOUT
    while True:
        shown = _squash(loc.text_content() or "")
        missing = [w for w in want if _squash(w) not in shown]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{when}: the page lacks {missing}")
        time.sleep(0.1)


def _case_09_templates(page, path: Path) -> None:
    """Issue 16: 09 reviews a real Firecracker template on two hosts and a QEMU model on the same hosts; a file
    picker swaps in another template.  Each panel's page text must show what a panel built here shows."""
    from cpuidkit.ui.widgets import TemplatePanel

    anchor = ".cpuidkit-template-panel"
    page.locator(anchor).nth(1).wait_for(state="attached", timeout=WIDGET_TIMEOUT)
    panel, _ = _notebook_widget(path, TemplatePanel)
    assert panel.template().kind == "firecracker" and len(panel.hosts) == 2, "09's first template panel changed"
    first, second = page.locator(anchor).nth(0), page.locator(anchor).nth(1)
    first.scroll_into_view_if_needed()
    _shows(first.locator(".cpuidkit-template-out"), panel.expected(), "09 template panel before the action")
    img = first.locator(".cpuidkit-template-fleet img")
    width = page.evaluate(DECODED_WIDTH, img.get_attribute("src") or "")
    assert width > 100, "09: the template-across-the-fleet figure is not drawn"
    qemu = TemplatePanel(second.locator(".cpuidkit-template-choice select").input_value(),
                         hosts=[h.name for h in panel.hosts], kernel=panel.kernel)
    assert qemu.template().kind == "qemu", "09's second template panel is not a QEMU model"
    _shows(second.locator(".cpuidkit-template-out"), qemu.expected(), "09 QEMU model panel")
    # the file picker: upload Firecracker's T2CL through the browser
    upload = ROOT / "data" / "firecracker-templates" / "T2CL.json"
    with page.expect_file_chooser(timeout=WIDGET_TIMEOUT) as chooser:  # the upload button opens a file chooser
        first.locator(".cpuidkit-template-upload").first.click()
    chooser.value.set_files(str(upload))
    assert panel.load_text(upload.read_text(), upload.name)
    _shows(first.locator(".cpuidkit-template-out"), panel.expected(), "09 after uploading T2CL.json")
    _shows(first.locator(".cpuidkit-template-message"), ["loaded T2CL.json"], "09 after uploading T2CL.json")
    # and a shipped template picked in the list, then "review"
    first.locator(".cpuidkit-template-choice select").select_option("T2A.json")
    first.locator(".cpuidkit-template-review").click()
    panel.choice.value = "T2A.json"
    _shows(first.locator(".cpuidkit-template-out"), panel.expected(), "09 after choosing T2A.json")


def _review_shown(page, anchor: str, panel, when: str) -> None:
    """The review output shows the review the panel holds: every line of its Summary (inline marks as text)."""
    (block,) = [b for b in panel.review.section("Summary").blocks if b[0] == "ul"]
    want = [_squash(item.replace("`", "").replace("**", "")) for item in block[1]]
    out = _in_widget(page, anchor, ".cpuidkit-review-out")
    deadline = time.monotonic() + PANEL_TIMEOUT
    while True:
        shown = _squash(out.text_content() or "")
        missing = [w for w in want if w not in shown]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{when}: the review output lacks these Summary lines of the fresh review: {missing}")
        time.sleep(0.1)


CASES: dict[str, tuple[Callable, str]] = {
    "05": (_case_05, ".cpuidkit-xcr0"),
    "06": (_case_06, ".cpuidkit-widths"),
    "07": (_case_07, ".cpuidkit-bitgrid"),
    "09": (_case_09, ".cpuidkit-review-panel"),
}


def _run_case(browser, jupyterlab, servers, shots: Path, frontend: str, key: str, notebook: str, drive: Callable,
              anchor: str) -> dict:
    """Open ``notebook`` and run every cell once (JupyterLab: in the shared app, run-all awaited, every code
    cell must have run; Voilà runs all cells before it sends the page), drive it, and read the page's
    problems.  Screenshots of the page and of the widget's output go to ``shots`` whatever happens."""
    name, failed = f"{frontend}-{key}", True
    page = None
    try:
        if frontend == "lab":
            page = jupyterlab.open(notebook)
        else:
            page = browser(frontend).new_page()
            s = servers["voila"]
            page.goto(f"{s['base']}/voila/render/{notebook}?token={s['token']}", timeout=WIDGET_TIMEOUT)
        drive(page, servers["root"] / notebook)
        problems = _problems(page, key)
        failed = False
        return problems
    except BaseException as e:
        if page is not None:
            with contextlib.suppress(Exception):
                (shots / f"{name}.txt").write_text(page.evaluate("() => document.body.innerText"))
        raise AssertionError(f"{e}\n(screenshots and page text: {shots / name}*.png, .txt)") from e
    finally:
        if page is not None:
            with contextlib.suppress(Exception):
                page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
                out = page.locator(".jp-OutputArea-output").filter(has=page.locator(anchor)).first
                out.screenshot(path=str(shots / f"{name}-widget.png"), timeout=10_000)  # JupyterLab scrolls inside
        if frontend == "lab":
            jupyterlab.close(failed)
            _shutdown_lab_kernels(servers, notebook)
        elif page is not None:
            page.close()


@pytest.mark.parametrize("frontend", ["lab", "voila"])
@pytest.mark.parametrize("key", KEYS)
def test_course_notebook_in_chromium(servers, browser, jupyterlab, shots, frontend, key):
    notebook = _notebook(key)
    drive, anchor = CASES[key]
    p = _run_case(browser, jupyterlab, servers, shots, frontend, key, notebook, drive, anchor)
    where = f"{notebook} in {frontend} (screenshots {shots / f'{frontend}-{key}'}*.png)"
    assert p["outputs"] > 0, f"{where}: no output on the page"
    assert not p["figures"], f"{where} shows a bare matplotlib Figure: {p['figures']}"
    assert not p["broken"], f"{where} shows images that do not decode: {p['broken']}"
    assert not p["stderr"], f"{where} has stderr output: {p['stderr']}"
    assert not p["errors"], f"{where} has an error output: {p['errors']}"


def _canary_case(page, _path: Path) -> None:
    _wait_widget(page, ".cpuidkit-canary")
    page.wait_for_function("() => document.querySelectorAll('.cpuidkit-canary .jp-OutputArea-output').length >= 3",
                           timeout=WIDGET_TIMEOUT)


@pytest.mark.parametrize("frontend", ["lab", "voila"])
def test_checks_catch_a_bare_figure_and_stderr(servers, browser, jupyterlab, shots, frontend):
    """The canary notebook shows a bare Figure's text, stderr and a broken PNG in an Output widget, and writes
    to stderr itself: the page checks report them (Voilà drops a cell's own stderr by design)."""
    p = _run_case(browser, jupyterlab, servers, shots, frontend, "canary", CANARY, _canary_case, ".cpuidkit-canary")
    assert any("<Figure size 200x200" in f for f in p["figures"]), p
    assert any(b.startswith("data:image/png;base64,bm90IGEgcG5n") for b in p["broken"]), p
    assert any("canary on stderr in a widget" in s for s in p["stderr"]), p
    if frontend == "lab":
        assert any(s.startswith("canary on stderr") and "widget" not in s for s in p["stderr"]), p
