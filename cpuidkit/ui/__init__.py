"""Widgets and figures for the notebooks (ipywidgets 8, matplotlib, pandas).

Only notebooks import this package: ``import cpuidkit`` never loads it, so the
core stays light.  Logic lives here and in the core; a notebook cell imports,
calls and shows.

* :mod:`cpuidkit.ui.lab`: the state a notebook explores (no widgets), :class:`Lab`
* :mod:`cpuidkit.ui.widgets`: views of a Lab (bit grid, sliders, verdict panel…)
* :mod:`cpuidkit.ui.plots`: matplotlib figures (bit grids, XSAVE layout, paging, timelines)
* :mod:`cpuidkit.ui.exercises`: the self-checking exercises (``check_…``)
"""

from __future__ import annotations

import importlib

__all__ = ["Lab", "VcpuSetup", "CpuidToggler", "plots", "widgets", "exercises"]

_LAZY = {
    "Lab": ("cpuidkit.ui.lab", "Lab"),
    "VcpuSetup": ("cpuidkit.kvm.check", "VcpuSetup"),
    "CpuidToggler": ("cpuidkit.ui.widgets", "CpuidToggler"),
}


def __getattr__(name: str):
    if name in ("plots", "widgets", "exercises", "lab"):
        return importlib.import_module(f"cpuidkit.ui.{name}")
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'cpuidkit.ui' has no attribute {name!r}") from None
    return getattr(importlib.import_module(module), attr)
