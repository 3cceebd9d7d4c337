"""The floors hold: imports only look down, no import hides in a function, one exit-code table, static checks clean."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT

PACKAGE = ROOT / "cpuidkit"
BIN = ROOT / ".venv" / "bin"
# The only libraries imported inside functions: heavy ones, loaded when a figure, a frame or a widget is made.
HEAVY = {"pandas", "matplotlib", "ipywidgets", "numpy", "IPython"}


def _function_level_imports() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)) or id(node) in top:
                continue
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            roots = {n.split(".")[0] for n in names}
            if node.__class__ is ast.ImportFrom and node.level:
                roots = {"(relative)"}
            found.append((f"{path.relative_to(ROOT)}:{node.lineno}", roots))
    return found


def _type_checking_lines() -> set[str]:
    """Imports under ``if TYPE_CHECKING:`` are for annotations only, not run."""
    out = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                for n in ast.walk(node):
                    if isinstance(n, (ast.Import, ast.ImportFrom)):
                        out.add(f"{path.relative_to(ROOT)}:{n.lineno}")
    return out


def test_only_heavy_libraries_are_imported_inside_functions():
    typing_only = _type_checking_lines()
    bad = [where for where, roots in _function_level_imports() if where not in typing_only and not roots <= HEAVY]
    assert not bad, "imports inside functions (hoist them; only " + ", ".join(sorted(HEAVY)) + " may wait):\n" + "\n".join(bad)


def test_the_lazy_imports_are_really_the_heavy_ones():
    # the rule above must not pass because nothing is checked: the lazy heavy imports are found
    roots = set().union(*(r for _, r in _function_level_imports()))
    assert {"matplotlib", "pandas", "ipywidgets"} <= roots


def _tool(name: str) -> str:
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed (make setup-test installs it)")
    return found


def test_import_contracts_hold():
    r = subprocess.run([_tool("lint-imports"), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "0 broken" in r.stdout


def test_ruff_is_clean():
    r = subprocess.run([_tool("ruff"), "check", "--no-cache", "cpuidkit"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-4000:]
    r = subprocess.run(
        [_tool("ruff"), "format", "--check", "--no-cache", "cpuidkit"], cwd=ROOT, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stdout[-4000:]


def test_mypy_is_clean():
    r = subprocess.run([_tool("mypy")], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-4000:]


def test_one_exit_code_table():
    defined = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Assign):
                for t in node.targets:
                    names = [t] if isinstance(t, ast.Name) else list(getattr(t, "elts", []))
                    defined += [f"{path.name}:{n.id}" for n in names if isinstance(n, ast.Name) and n.id.startswith("EXIT_") and n.id != "EXIT_REASONS"]
    assert defined and all(d.startswith("exits.py:") for d in defined), defined


def test_an_internal_error_exits_3_not_1(monkeypatch, capsys):
    from cpuidkit.cli import decode
    from cpuidkit.cli.main import main

    def boom(args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(decode, "_decode", boom)
    assert main(["decode", "x"]) == 3
    err = capsys.readouterr().err
    assert "internal error" in err and "please report" in err and "Traceback" not in err
    assert main(["--debug", "decode", "x"]) == 3
    assert "Traceback" in capsys.readouterr().err


def test_the_command_runs_as_a_module():
    r = subprocess.run([sys.executable, "-m", "cpuidkit", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0 and "decode" in r.stdout and "review" in r.stdout


def test_one_decoder_of_the_address_widths():
    """LA57 and the linear width are decoded in one place, and it agrees with the catalog's named fields."""
    from conftest import libvirt_dumps

    from cpuidkit.core.addresses import has_la57, linear_width_field
    from cpuidkit.core.sources import load

    seen57 = set()
    for path in libvirt_dumps():
        t = load(path)
        assert has_la57(t) == bool(t.get_field("la57"))
        assert linear_width_field(t) == t.get_field("virt_addr_bits")
        seen57.add(has_la57(t))
    assert seen57 == {True, False}  # the dumps hold CPUs with and without LA57
    hand_decoded = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "addresses.py":
            continue
        text = path.read_text(encoding="utf-8")
        hand_decoded += [f"{path.name}: {p}" for p in ("ecx >> 16 & 1", "eax >> 8) & 0xFF", "eax, 15, 8") if p in text]
    assert not hand_decoded, hand_decoded
