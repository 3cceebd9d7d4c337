"""cpuidkit: make Linux KVM's CPUID contract visible.

Importing the package is cheap: it loads the table and error types only.
Everything else (the catalog, importers, the KVM model, the live backend) is
loaded on first use, and nothing here imports pandas, matplotlib or ipywidgets.
"""

from __future__ import annotations

import importlib

from cpuidkit.core.table import CpuidEntry, CpuidTable, diff
from cpuidkit.errors import CpuidkitError, InputError, KvmError, KvmUnavailable, LookupFailed

__version__ = "0.1.0"

__all__ = [
    "CpuidkitError",
    "InputError",
    "KvmError",
    "KvmUnavailable",
    "LookupFailed",
    "CpuidEntry",
    "CpuidTable",
    "diff",
    "load",
    "catalog",
    "SimulatedVcpu",
    "LiveVcpu",
    "HostProfile",
    "check",
]

# name -> (module, attribute), imported on first access
_LAZY = {
    "load": ("cpuidkit.core.sources", "load"),
    "catalog": ("cpuidkit.core.catalog", "catalog"),
    "SimulatedVcpu": ("cpuidkit.kvm.vcpu", "SimulatedVcpu"),
    "HostProfile": ("cpuidkit.core.hosts", "HostProfile"),
    "check": ("cpuidkit.kvm.check", "check"),
    "LiveVcpu": ("cpuidkit.live.vcpu", "LiveVcpu"),
}


def __getattr__(name: str):
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'cpuidkit' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
