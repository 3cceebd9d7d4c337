"""Asking the real QEMU what a CPU model is: QMP ``query-cpu-model-expansion``, no guest needed.

:func:`expand_cpu_model` starts ``qemu-system-x86_64 -machine none -accel kvm|tcg -qmp stdio`` (no disk, no
display, no network), sends ``qmp_capabilities``, ``query-version``, ``query-cpu-model-expansion``
(``type: full``) and ``query-cpu-definitions`` (the model's ``unavailable-features`` under that accelerator), then
``quit``; the process is ended by its pid if it does not quit in time.  The answer is plain data:
:func:`cpuidkit.core.templates.qemu_template` turns it into a template.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

from cpuidkit.errors import InputError
from cpuidkit.lab._errors import LabError
from cpuidkit.lab.qemu import find_qemu

__all__ = ["expand_cpu_model", "cpu_model_names", "default_accel", "MODEL_NAME"]

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _session(commands: list[dict], qemu: str | None, timeout: float, accel: str = "tcg") -> list[dict]:
    binary = find_qemu(qemu)
    text = "".join(json.dumps(c) + "\n" for c in [{"execute": "qmp_capabilities"}, *commands, {"execute": "quit"}])
    try:
        done = subprocess.run(
            [binary, "-machine", "none", "-accel", accel, "-nodefaults", "-no-user-config", "-display", "none"]
            + ["-qmp", "stdio"],
            input=text,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise LabError(f"QEMU did not answer QMP within {timeout:.0f} s") from None
    replies = []
    for line in done.stdout.splitlines():
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(msg, dict) and ("return" in msg or "error" in msg):
            replies.append(msg)
    # the first reply answers qmp_capabilities, the last quit
    if len(replies) < len(commands) + 1:
        raise LabError(f"QEMU's QMP session ended early: {done.stderr.strip()[:300] or 'no message'}")
    return replies[1 : 1 + len(commands)]


def cpu_model_names(*, qemu: str | None = None, timeout: float = 60.0) -> list[str]:
    """The x86 CPU models this QEMU knows (``query-cpu-definitions``), versioned aliases included."""
    (defs,) = _session([{"execute": "query-cpu-definitions"}], qemu, timeout)
    return sorted(d["name"] for d in defs.get("return", []))


def default_accel() -> str:
    """``kvm`` where this process can open /dev/kvm (QEMU then expands a model with KVM's defaults: VME, the
    kvm-* paravirtual features, x2APIC …), else ``tcg``."""
    return "kvm" if os.access("/dev/kvm", os.R_OK | os.W_OK) else "tcg"


def expand_cpu_model(model: str, *, qemu: str | None = None, timeout: float = 60.0, accel: str | None = None) -> dict:
    """``{"model", "qemu_version", "accel", "props", "unavailable"}`` for ``model`` (e.g. ``Cascadelake-Server``)
    under ``accel`` (default :func:`default_accel`); ``unavailable`` is what that accelerator cannot give here
    (``query-cpu-definitions``' ``unavailable-features``).

    An unknown model is an :class:`~cpuidkit.errors.InputError` naming it; a QEMU that is missing or does not
    answer is a :class:`~cpuidkit.lab.LabError`."""
    accel = accel or default_accel()
    if accel not in ("kvm", "tcg"):
        raise InputError(f"accel must be kvm or tcg, got {accel!r}")
    if not isinstance(model, str) or not MODEL_NAME.match(model):
        raise InputError(f"a QEMU CPU model name is letters, digits, '.', '_' and '-', got {model!r:.80}")
    version, expansion, defs = _session(
        [
            {"execute": "query-version"},
            {
                "execute": "query-cpu-model-expansion",
                "arguments": {"type": "full", "model": {"name": model}},
            },
            {"execute": "query-cpu-definitions"},
        ],
        qemu,
        timeout,
        accel,
    )
    if "error" in expansion:
        known = sorted(d["name"] for d in defs.get("return", []))
        raise InputError(
            f"QEMU does not know the CPU model {model!r}: {expansion['error'].get('desc', '')}; "
            f"known models include {', '.join(known[:12])} …",
            where="qemu:" + model,
        )
    q = version.get("return", {}).get("qemu", {})
    ver = f"{q.get('major', '?')}.{q.get('minor', '?')}.{q.get('micro', '?')}"
    props = expansion["return"]["model"].get("props", {})
    unavailable: list[str] = next(
        (d.get("unavailable-features", []) for d in defs.get("return", []) if d.get("name") == model), []
    )
    return {"model": model, "qemu_version": ver, "accel": accel, "props": props, "unavailable": sorted(unavailable)}
