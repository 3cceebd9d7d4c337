"""The live lab: the model (SimulatedVcpu) next to the real kernel (LiveVcpu) on this machine.

Every function first asks :func:`kvm_status`; where /dev/kvm is missing or
unusable it says so in one sentence and the notebook's live cells skip.  Set
``CPUIDKIT_KVM_DEVICE`` to point at another device node (a test uses a path
that does not exist to see the skip).
"""

from __future__ import annotations

import os
import random
import re
import time

from cpuidkit.analysis.agreement import compare, random_scenario, run_steps, scripted_scenarios, vendor_masks
from cpuidkit.core.catalog import catalog
from cpuidkit.kvm.vcpu import SimulatedVcpu
from cpuidkit.live import LiveVcpu, host_profile, kvm_available

__all__ = ["device", "kvm_status", "skip_message", "LiveLab"]

_PADDED = re.compile(r"^no 0xD, (\d+) entries$")  # agreement's padded-table family (pvm's appended 0xD entries)


def device() -> str:
    return os.environ.get("CPUIDKIT_KVM_DEVICE", "/dev/kvm")


def kvm_status() -> tuple[bool, str]:
    """``(True, what is here)`` or ``(False, why not)``."""
    try:
        return kvm_available(device())
    except Exception as e:  # noqa: BLE001 - any platform problem means "no live lab here"
        return False, f"the live backend cannot run here: {e}"


def skip_message(why: str) -> str:
    return (
        f"SKIPPED: no usable KVM device ({why}). The live cells of this notebook need /dev/kvm; "
        "everything else in the course runs on the model."
    )


class LiveLab:
    """This machine's KVM, measured once, and a model configured to match it."""

    def __init__(self):
        self._live_cls = LiveVcpu
        with LiveVcpu(device()) as v:
            self.kernel, self.vendor = v.kernel, v.vendor
            self.base = v.supported_cpuid()
        self.host = host_profile()
        self.masks = vendor_masks(self.vendor, self.host)

    def model(self) -> SimulatedVcpu:
        return SimulatedVcpu(kernel=self.kernel, vendor=self.vendor, host=self.host)

    def live(self):
        return self._live_cls(device())

    def _scripted(self) -> dict:
        """The scripted scenarios as a reader picks them: the family "no 0xD, N entries" (one scenario per N
        for the measurement) folded into one that sets its tables one after the other."""
        out, family = {}, []
        for name, steps in scripted_scenarios(self.base).items():
            m = _PADDED.match(name)
            if m:
                family.append((int(m.group(1)), steps))
            else:
                out[name] = steps
        if family:
            sizes = [n for n, _ in family]
            out[f"no 0xD, {min(sizes)}–{max(sizes)} entries, one table each"] = [
                s for _, steps in family for s in steps
            ]
        return out

    def scenarios(self) -> list[str]:
        """The names :meth:`side_by_side` takes (the agreement measurement runs the unfolded list)."""
        return list(self._scripted())

    def side_by_side(self, name: str) -> list[dict]:
        """One scripted scenario on both backends: each step's result, and the final tables' differences."""
        steps = self._scripted()[name]
        model = run_steps(self.model(), steps)
        with self.live() as v:
            real = run_steps(v, steps)
        rows = [
            {"step": str(s), "model": m or "ok", "kernel": k or "ok", "agree": m == k}
            for s, m, k in zip(steps, model.errnos, real.errnos)
        ]
        diffs = compare(model, real, self.masks)
        assert model.final is not None and real.final is not None  # run_steps() always sets final
        rows.append(
            {
                "step": "final KVM_GET_CPUID2",
                "model": f"{len(model.final)} entries",
                "kernel": f"{len(real.final)} entries",
                "agree": not diffs,
            }
        )
        return rows

    def agreement(self, n_random: int = 25, seed: int = 0) -> dict:
        """Every scripted scenario plus ``n_random`` seeded random ones: how often model and kernel agree."""
        rng = random.Random(seed)
        cases = list(scripted_scenarios(self.base).items())
        cases += [(f"random #{i}", random_scenario(rng, self.base)) for i in range(n_random)]
        t0 = time.perf_counter()
        disagreements = []
        for name, steps in cases:
            model = run_steps(self.model(), steps)
            with self.live() as v:
                real = run_steps(v, steps)
            diffs = compare(model, real, self.masks)
            if diffs:
                disagreements.append({"scenario": name, "differences": "; ".join(diffs[:3])})
        return {
            "kernel": self.kernel,
            "vendor": self.vendor,
            "scenarios": len(cases),
            "agree": len(cases) - len(disagreements),
            "disagreements": disagreements,
            "seconds": round(time.perf_counter() - t0, 2),
        }

    def vendor_differences(self) -> list[dict]:
        """What the vendor module does to a table after KVM_SET_CPUID2, as measured on this host
        (bits forced to 1 or 0 per register, leaves dropped), with field names where known."""

        rewrite = self.host.vendor_rewrite or {}
        rows = []
        for key, m in sorted(rewrite.get("registers", {}).items()):
            fn, idx, reg = key.split(".")
            leaf, sub = int(fn, 16), int(idx)
            for what in ("force1", "force0"):
                mask = m[what]
                names = sorted(
                    {
                        (fld.name if (fld := catalog().at(leaf, sub, reg, b)) else f"bit{b}")
                        for b in range(32)
                        if mask >> b & 1
                    }
                )
                if names:
                    rows.append(
                        {"register": key, "forced to": what[-1], "mask": f"{mask:#010x}", "fields": ", ".join(names)}
                    )
        for fn in rewrite.get("dropped", []):
            rows.append({"register": f"{int(fn):#x}", "forced to": "dropped", "mask": "", "fields": "whole leaf"})
        return rows
