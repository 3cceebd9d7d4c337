"""Widget toggle → redraw, measured on the Python side (goal: p95 ≤ 16 ms, one frame at 60 Hz).

One "redraw" is everything that runs in the kernel between a reader's action and the
last widget-state message it causes: the observer chain, ``cpuidkit.check()``, each
view's diff against what it showed, and the JSON encoding of every state message
(comms are replaced by one that serialises like a kernel would, and counts).
The browser's own paint is not included.  Prints the figures; asserts nothing.

    .venv/bin/python bench/bench_widgets.py
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MESSAGES = {"n": 0, "bytes": 0}


def _install_counting_comm() -> None:
    import comm
    from comm.base_comm import BaseComm

    class CountingComm(BaseComm):
        def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
            MESSAGES["n"] += 1
            MESSAGES["bytes"] += len(json.dumps(data, default=str))

    comm.create_comm = lambda *a, **k: CountingComm(*a, **k)


def _p(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def measure(n: int = 400, seed: int = 7) -> dict:
    _install_counting_comm()
    from cpuidkit.ui import CpuidToggler

    t = CpuidToggler(live=False)
    rng = random.Random(seed)
    regs = [(1, 0, "ecx"), (1, 0, "edx"), (7, 0, "ebx"), (7, 0, "ecx"), (0xD, 0, "eax"), (0x80000001, 0, "edx")]
    times, msgs = {"bit": [], "slider": [], "trigger": []}, {"bit": [], "slider": [], "trigger": []}
    # warm up every path once
    t.grid.toggle(5), t.grid.toggle(5)
    for i in range(n):
        if i % 40 == 0:  # change the register shown now and then (not timed: it is navigation, not a toggle)
            leaf, sub, reg = rng.choice(regs)
            t.picker.entry.value = (leaf, sub)
            t.picker.reg.value = reg
        kind = rng.choices(["bit", "slider", "trigger"], weights=[8, 1, 1])[0]
        before = MESSAGES["n"]
        start = time.perf_counter()
        if kind == "bit":
            t.grid.toggle(rng.randrange(32))
        elif kind == "slider":
            s = rng.choice([t.widths.linear, t.widths.maxphyaddr])
            s.value = rng.choice([48, 50, 57]) if s is t.widths.linear else rng.choice([36, 46, 52])
        else:
            box = rng.choice([t.triggers.osxsave, t.triggers.pke, t.triggers.apic])
            box.value = not box.value
        times[kind].append((time.perf_counter() - start) * 1e3)
        msgs[kind].append(MESSAGES["n"] - before)
    every = [x for v in times.values() for x in v]
    return {
        "widget_p95_ms": round(_p(every, 0.95), 3),
        "widget_p50_ms": round(statistics.median(every), 3),
        "widget_max_ms": round(max(every), 3),
        "actions": len(every),
        "per_kind_p95_ms": {k: round(_p(v, 0.95), 3) for k, v in times.items() if v},
        "messages_per_action_median": {k: statistics.median(v) for k, v in msgs.items() if v},
        "entries": len(t.lab.table),
    }


if __name__ == "__main__":
    r = measure()
    print(f"CpuidToggler, {r['entries']}-entry table, {r['actions']} seeded actions (bit toggles, sliders, CR4/APIC boxes)")
    print(f"toggle -> redraw (Python side): p50 {r['widget_p50_ms']:.2f} ms, p95 {r['widget_p95_ms']:.2f} ms, "
          f"max {r['widget_max_ms']:.2f} ms  (goal: p95 <= 16 ms)")
    print("p95 by action:", ", ".join(f"{k} {v:.2f} ms" for k, v in r["per_kind_p95_ms"].items()))
    print("widget messages per action (median):", r["messages_per_action_median"])
