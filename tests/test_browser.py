"""The course in a real browser: JupyterLab on 127.0.0.1, notebook 02 in Debian's chromium (Playwright).

The test starts JupyterLab with its own token on a free loopback port, serving
a temporary copy of notebooks/ (nothing is saved back), opens notebook 02, runs
all cells, sets the linear-address-width slider of the main toggler to 50 and
waits for the verdict panel to say REJECTED with EINVAL.  A screenshot goes to
test-artifacts/.  The server and the browser are stopped even on failure.

Playwright drives /usr/bin/chromium; it never downloads a browser.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = [pytest.mark.chromium, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
NOTEBOOK = "02-who-owns-cpuid.ipynb"
ARTIFACTS = ROOT / "test-artifacts"
SCREENSHOT = ARTIFACTS / "browser-02-linear-width-50.png"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(base: str, token: str, path: str, method: str = "GET"):
    req = urllib.request.Request(f"{base}{path}", method=method, headers={"Authorization": f"token {token}"},
                                 data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=5) as r:
        body = r.read()
        return json.loads(body) if body else None


@pytest.fixture
def lab_server(tmp_path):
    """JupyterLab on a free loopback port with a token, serving a copy of notebooks/."""
    root = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    settings = tmp_path / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    port, token = _free_port(), secrets.token_hex(24)
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
               JUPYTER_DATA_DIR=str(tmp_path / "data"), IPYTHONDIR=str(tmp_path / "ipython"), PYTHONUNBUFFERED="1")
    log = open(tmp_path / "jupyterlab.log", "w")
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           f"--LabApp.user_settings_dir={tmp_path / 'settings'}", f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}",
           "--LabApp.expose_app_in_browser=True"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")  # CI and these machines run as root; the server still binds to loopback only
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"JupyterLab exited with {proc.returncode}: {(tmp_path / 'jupyterlab.log').read_text()[-2000:]}")
            try:
                _api(base, token, "/api/status")
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if time.monotonic() > deadline:
                    pytest.fail("JupyterLab did not answer within 90 s")
                time.sleep(0.3)
        with pytest.raises(urllib.error.HTTPError):  # the token is really required
            urllib.request.urlopen(f"{base}/api/contents", timeout=5)
        yield {"base": base, "token": token, "root": root, "log": tmp_path / "jupyterlab.log"}
    finally:
        try:
            _api(base, token, "/api/shutdown", method="POST")  # stops its kernels too
            proc.wait(timeout=15)
        except Exception:  # noqa: BLE001 - fall back to signals
            pass
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        log.close()


def test_notebook_02_rejects_linear_width_50_in_chromium(lab_server):
    sync_api = pytest.importorskip("playwright.sync_api")
    base, token = lab_server["base"], lab_server["token"]
    original = (ROOT / "notebooks" / NOTEBOOK).read_bytes()
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(f"{base}/lab/tree/{NOTEBOOK}?token={token}")
            page.wait_for_selector(".jp-NotebookPanel .jp-Notebook", timeout=60_000)
            page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget "
                                   "&& window.jupyterapp.shell.currentWidget.sessionContext "
                                   "&& window.jupyterapp.shell.currentWidget.sessionContext.session", timeout=60_000)
            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
            slider = page.locator(".cpuidkit-toggler .cpuidkit-linear-width")
            slider.wait_for(state="visible", timeout=120_000)
            verdict = page.locator(".cpuidkit-toggler .cpuidkit-verdict")
            sync_api.expect(verdict).to_contain_text("ACCEPTED", timeout=30_000)
            readout = slider.locator(".widget-readout")
            readout.scroll_into_view_if_needed()
            readout.click()
            page.keyboard.press("Control+A")
            page.keyboard.type("50")
            page.keyboard.press("Enter")
            sync_api.expect(readout).to_have_text("50", timeout=15_000)
            sync_api.expect(verdict).to_contain_text("REJECTED", timeout=30_000)
            sync_api.expect(verdict).to_contain_text("EINVAL", timeout=5_000)
            sync_api.expect(verdict).to_contain_text("vaddr_width_values", timeout=5_000)
            verdict.scroll_into_view_if_needed()
            page.evaluate("() => window.scrollBy(0, -120)")
            page.screenshot(path=str(SCREENSHOT))
            errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
            tracebacks = [t for t in errors.all_inner_texts() if "Traceback" in t]
            assert not tracebacks, tracebacks
        finally:
            browser.close()
    assert SCREENSHOT.stat().st_size > 10_000
    assert (ROOT / "notebooks" / NOTEBOOK).read_bytes() == original, "the test must not save into notebooks/"
