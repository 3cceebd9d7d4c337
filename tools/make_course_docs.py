"""Regenerate the course's generated documents in docs/:

* ``docs/answer-key.md``: every exercise's question, its right answer (computed by the ``answer_…()`` function
  next to its checker in cpuidkit/ui/exercises.py) and what the checker says to it;
* ``docs/call-path.svg``: KVM_SET_CPUID2 step by step, drawn from data/call-path.csv
  (cpuidkit.analysis.figures.call_path_svg, the figure notebook 03 shows).

    .venv/bin/python tools/make_course_docs.py [--out DIR] [--check]      (or: make course-docs)

Both depend on nothing but the data and the model (no dates, no paths, no live kernel), so
tests/test_ui_exercises.py and tests/test_ui_course.py regenerate them and compare.  ``--check`` writes
nothing and exits 1 when a file is stale.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cpuidkit._files import atomic_write_text  # noqa: E402
from cpuidkit.analysis.figures import call_path_rows, call_path_svg  # noqa: E402
from cpuidkit.ui.exercises import answer_key_markdown  # noqa: E402


def documents() -> dict[str, str]:
    """File name in docs/ → its text."""
    return {"answer-key.md": answer_key_markdown(), "call-path.svg": call_path_svg(call_path_rows()) + "\n"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs", help="folder to write into (default: docs/)")
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file differs")
    args = ap.parse_args(argv)
    stale = []
    for name, text in documents().items():
        path = args.out / name
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            print(f"{path}: current")
        elif args.check:
            stale.append(name)
            print(f"{path}: stale (run make course-docs)")
        else:
            atomic_write_text(path, text)
            print(f"{path}: written")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
