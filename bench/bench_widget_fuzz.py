"""Widget fuzz bench: a Lab with every view attached, driven through many random sequences of reader actions.

The actions and the rule are ``tests/test_ui_property.py``'s (valid and invalid kernels, vendors, XCR0 values,
widths, bit toggles, hosts, imports of bad files, FIFOs and devices, plots with bad arguments, exercise answers
of wrong types), drawn here from a seeded ``random.Random`` instead of Hypothesis, more of them and longer.
After every step: no exception escaped (nor hung), a refused value changed nothing and was said, and every
panel shows what ``lab.expected()`` says.  Goals: escaped exceptions 0, inconsistent panels 0.  Prints the
figures, the actions by kind and any failing step; exits 1 if there was one.

    .venv/bin/python bench/bench_widget_fuzz.py [--sequences 200] [--steps 60] [--seed 1]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import test_ui_property as fuzz  # noqa: E402  (tests/test_ui_property.py: actions, rig and rule)


def run(sequences: int, steps: int, seed: int) -> tuple[dict, Counter, list[list[str]]]:
    figures = fuzz.new_figures()
    kinds: Counter = Counter()
    failures: list[list[str]] = []
    rng = random.Random(seed)

    def actions(chooser):
        for _ in range(steps):
            action = fuzz.draw_action(chooser)
            kinds[action[0]] += 1
            yield action

    with tempfile.TemporaryDirectory(prefix="cpuidkit-widget-fuzz-") as tmp:
        files = fuzz.file_names(Path(tmp))
        # the review panel's display() prints outside a kernel: keep the bench's own output readable
        with contextlib.redirect_stdout(io.StringIO()):
            for _ in range(sequences):
                chooser = fuzz.RandomChooser(random.Random(rng.getrandbits(64)))
                problems = fuzz.run_sequence(files, figures, actions(chooser))
                if problems:
                    failures.append(problems)
    return figures, kinds, failures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sequences", type=int, default=200, help="random sequences, each on a fresh Lab (default 200)")
    p.add_argument("--steps", type=int, default=60, help="actions per sequence (default 60)")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    start = time.perf_counter()
    figures, kinds, failures = run(args.sequences, args.steps, args.seed)
    wall = time.perf_counter() - start
    print(f"widget fuzz: seed {args.seed}, {args.sequences} sequences of up to {args.steps} actions, {wall:.1f} s")
    print(fuzz.figures_line(figures).replace("ui property test", "figures"))
    print(f"  {figures['steps'] / max(figures['seconds'], 1e-9):.0f} steps/s; goals: escaped exceptions 0, "
          "inconsistent panels 0")
    print("actions by kind: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1])))
    for problems in failures[:10]:
        print("FAILED " + "\n  ".join(problems))
    return 1 if failures or figures["escaped_exceptions"] or figures["inconsistent_panels"] else 0


if __name__ == "__main__":
    sys.exit(main())
