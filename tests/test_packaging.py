"""Set-up promises: light import, environment.yml agrees with pyproject, data found from a wheel."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest

from conftest import ROOT

HEAVY = ("pandas", "matplotlib", "ipywidgets", "numpy", "IPython")


def test_import_cpuidkit_stays_light():
    code = (
        "import sys, cpuidkit; "
        f"heavy = [m for m in sys.modules if m.split('.')[0] in {HEAVY!r}]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "", f"import cpuidkit pulled in: {out.stdout.strip()}"


def test_public_names_are_exported():
    import cpuidkit

    for name in cpuidkit.__all__:
        assert getattr(cpuidkit, name) is not None, name
    assert issubclass(cpuidkit.InputError, ValueError)
    assert issubclass(cpuidkit.InputError, cpuidkit.CpuidkitError)
    assert issubclass(cpuidkit.KvmError, cpuidkit.CpuidkitError)


def _req_name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _yaml_deps(text: str) -> tuple[set[str], list[str]]:
    conda, pip = set(), []
    in_pip = False
    section = None
    for line in text.splitlines():
        s = line.split("#", 1)[0].rstrip()
        if not s.strip():
            continue
        top = re.match(r"^(\w+):", s)
        if top:
            section = top[1]
            continue
        if section != "dependencies":
            continue
        m = re.match(r"^(\s*)- (.+)$", s)
        if not m:
            in_pip = in_pip and s.startswith("      ")
            continue
        indent, item = len(m[1]), m[2].strip()
        if item == "pip:":
            in_pip = True
            continue
        if in_pip and indent > 2:
            pip.append(item)
        else:
            in_pip = False
            conda.add(_req_name(item))
    return conda, pip


def test_environment_yml_declares_what_pyproject_declares():
    py = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_req_name(r) for r in py["dependencies"] + py["optional-dependencies"]["notebooks"]}
    conda, pip = _yaml_deps((ROOT / "environment.yml").read_text())
    assert "python" in conda and "pip" in conda
    assert conda - {"python", "pip"} == wanted, "environment.yml and pyproject.toml list different packages"
    assert any(p.startswith("-e .") for p in pip), "environment.yml must pip-install the project itself"
    # the version bounds must agree too
    bounds = {_req_name(r): r.replace(" ", "") for r in py["dependencies"] + py["optional-dependencies"]["notebooks"]}
    text = (ROOT / "environment.yml").read_text()
    for name, req in bounds.items():
        assert req in text.replace(" ", ""), f"{req} from pyproject is not in environment.yml"


def test_makefile_lab_binds_to_loopback_with_a_token():
    out = subprocess.run(["make", "-n", "lab"], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    lab = [ln for ln in out.splitlines() if "jupyter lab" in ln]
    assert lab, out
    assert "--ServerApp.ip=127.0.0.1" in lab[-1]
    assert "notebooks" in lab[-1]
    assert "token=''" not in lab[-1] and 'token=""' not in lab[-1] and "--IdentityProvider.token=" not in lab[-1]


@pytest.mark.slow
def test_data_files_load_from_an_installed_wheel(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(ROOT)],
                   check=True, capture_output=True, text=True)
    wheel = next(dist.glob("cpuidkit-*.whl"))
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", str(wheel)], check=True, capture_output=True, text=True)
    code = (
        "import cpuidkit, cpuidkit._files as d; from cpuidkit.core.catalog import catalog; "
        "print(d.data_dir()); print(len(catalog()))"
    )
    # run from an empty folder so the checkout cannot be imported by accident
    out = subprocess.run([str(py), "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, check=True).stdout.split()
    assert Path(out[0]).parts[-2:] == ("cpuidkit", "_data")
    assert str(env_dir) in out[0]
    assert int(out[1]) > 100
