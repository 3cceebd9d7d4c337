"""CLI fuzz bench: every subcommand, every option that names a file or takes a value, fed hostile inputs.

Counts per subcommand/option: attempts, tracebacks (an exception escaping ``main``, or exit 3 — an
internal error), hangs (no answer within the per-attempt limit) and the exit codes seen.  Goals:
tracebacks 0, hangs 0.  Prints a table and writes ``bench/cli-fuzz.json``.

    .venv/bin/python bench/bench_cli_fuzz.py [ROUNDS] [SEED]
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import stat
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from cpuidkit._files import atomic_write_text  # noqa: E402
from cpuidkit.cli.main import main  # noqa: E402

DATA = ROOT / "tests" / "data"
GOOD = DATA / "live-kvm" / "supported-cpuid.json"
LIMIT_S = 60.0


def hostile_files(tmp: Path, rng: random.Random) -> dict[str, str]:
    """name -> path of one hostile input each (made by this bench, never a system file but /dev/zero)."""
    out: dict[str, str] = {}
    good = GOOD.read_text(encoding="utf-8")
    fifo = tmp / "fifo"
    os.mkfifo(fifo)
    out["fifo"] = str(fifo)
    node = tmp / "device"
    with contextlib.suppress(PermissionError):
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 5))  # a zero device of our own
        out["device"] = str(node)
    out["dev-zero"] = "/dev/zero"
    out["folder"] = str(tmp)
    loop = tmp / "loop"
    loop.symlink_to(loop.name)
    out["symlink-loop"] = str(loop)
    out["missing"] = str(tmp / "missing.json")
    out["long-name"] = str(tmp / ("n" * 300))
    out["newline-name"] = str(tmp / "two\nlines.json")
    Path(out["newline-name"]).write_text("[{]")  # scratch: a hostile input in the bench's own temp folder
    samples = {
        "empty": b"",
        "latin1": b'{"cr4": "\xe9"}',
        "nul": b"[\x00]",
        "deep-json": b"[" * 100_000 + b"]" * 100_000,
        "big-number": b'{"cr4": ' + b"9" * 5000 + b"}",
        "truncated": good[: len(good) // 2].encode(),
        "not-json": b"hello",
        "wrong-json": b'{"unexpected": [1, 2, 3]}',
        "list-json": b"[1, 2, 3]",
        "huge": b" " * (17 * 1024 * 1024),
    }
    for name, data in samples.items():
        p = tmp / f"{name}.json"
        p.write_bytes(data)  # scratch
        out[name] = str(p)
    for i in range(5):  # random bytes flipped in a real dump
        b = bytearray(good.encode())
        for _ in range(rng.randrange(1, 20)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        p = tmp / f"mutant{i}.json"
        p.write_bytes(bytes(b))  # scratch
        out[f"mutant{i}"] = str(p)
    unreadable = tmp / "unreadable.json"
    atomic_write_text(unreadable, good)
    os.chmod(unreadable, 0)
    out["unreadable"] = str(unreadable)
    return out


VALUES = ["", "-1", "0x10000000000000000", "nan", "1e300", "six", "0.0", "99.99", "6.18x", "x" * 300, "live", "\n"]


def attempts(files: dict[str, str], tmp: Path) -> list[tuple[str, list[str]]]:
    """(label, argv) for every subcommand and option."""
    g = str(GOOD)
    out: list[tuple[str, list[str]]] = []
    outs = {"fifo-out": files["fifo"], "folder-out": str(tmp), "long-out": str(tmp / ("o" * 300))}
    if "device" in files:
        outs["device-out"] = files["device"]
    for name, f in files.items():
        out += [
            ("decode FILE", ["decode", f]),
            ("check TABLE", ["check", f]),
            ("check --state", ["check", g, "--state", f]),
            ("check --host", ["check", g, "--host", f]),
            ("xcr0 --table", ["xcr0", "--table", f]),
            ("xcr0 --host", ["xcr0", "--table", g, "--host", f]),
            ("migrate GUEST", ["migrate", f, "--to", "cascade-lake"]),
            ("migrate --to", ["migrate", g, "--to", f]),
            ("migrate --from", ["migrate", g, "--to", "cascade-lake", "--from", f]),
            ("xsave CPU", ["xsave", f]),
            ("maxphyaddr --host", ["maxphyaddr", "--guest-bits", "46", "--host", f]),
            ("maxphyaddr --layout", ["maxphyaddr", "--guest-bits", "46", "--host", "46", "--layout", f]),
            ("lint TABLE", ["lint", f]),
            ("lint --intended", ["lint", g, "--intended", f]),
            ("lint --host", ["lint", g, "--host", f]),
            ("review TEMPLATE", ["review", f]),
            ("review --host", ["review", g, "--host", f]),
        ]
        if os.access("/dev/kvm", os.R_OK | os.W_OK):
            out.append(("live check TABLE", ["live", "check", f]))
    for name, o in outs.items():
        out += [
            ("review -o", ["review", g, "-o", o]),
            ("live supported -o", ["live", "supported", "-o", o]),
            ("fleet -o", ["fleet", str(DATA / "cpuid-dumps" / "libcpuid"), "-o", o]),
            ("fleet --baseline", ["fleet", str(DATA / "cpuid-dumps" / "libcpuid"), "--baseline", o]),
        ]
    for v in VALUES:
        out += [
            ("check --kernel", ["check", g, "--kernel", v]),
            ("check --vendor", ["check", g, "--vendor", v]),
            ("xcr0 --over", ["xcr0", "--table", g, "--accept-set", "--over", v]),
            ("xcr0 --xcr-index", ["xcr0", "--table", g, "--xcr-index", v]),
            ("migrate --xcr0", ["migrate", g, "--to", "cascade-lake", "--xcr0", v]),
            ("xsave --xcr0", ["xsave", g, "--xcr0", v]),
            ("xsave --xss", ["xsave", g, "--xss", v]),
            ("maxphyaddr --guest-bits", ["maxphyaddr", "--guest-bits", v, "--host", "46"]),
            ("maxphyaddr --pte", ["maxphyaddr", "--guest-bits", "46", "--host", "46", "--pte", v]),
            ("maxphyaddr --layout inline", ["maxphyaddr", "--guest-bits", "46", "--host", "46", "--layout", v]),
            ("review --kernel", ["review", g, "--kernel", v]),
            ("decode --cpu", ["decode", g, "--cpu", v]),
            ("fleet DIR", ["fleet", v]),
        ]
    return out


def run_one(argv: list[str]) -> tuple[str, int | None]:
    """('ok'|'traceback'|'hang', exit code)."""
    box: dict = {}

    def target():
        err = io.StringIO()
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
                box["code"] = main(argv)
        except BaseException as e:  # noqa: BLE001 -- anything escaping main is what we count
            box["exc"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(LIMIT_S)
    if t.is_alive():
        return "hang", None
    if "exc" in box:
        return "traceback", None
    code = box["code"]
    return ("traceback" if code == 3 else "ok"), code


def measure(rounds: int = 1, seed: int = 1) -> dict:
    """The figures (``total`` has attempts, tracebacks, hangs; flattened into the top level for run_all)."""
    res = _measure(rounds, seed)
    return {**res["total"], **res}


def _measure(rounds: int, seed: int) -> dict:
    rng = random.Random(seed)
    stats: dict[str, dict] = defaultdict(lambda: {"attempts": 0, "tracebacks": 0, "hangs": 0, "exits": Counter()})
    bad: list[str] = []
    t0 = time.perf_counter()
    for r in range(rounds):
        with tempfile.TemporaryDirectory(prefix="cpuidkit-cli-fuzz-") as d:
            tmp = Path(d)
            files = hostile_files(tmp, rng)
            try:
                for label, argv in attempts(files, tmp):
                    outcome, code = run_one(argv)
                    s = stats[label]
                    s["attempts"] += 1
                    s["exits"][str(code)] += 1
                    if outcome == "traceback":
                        s["tracebacks"] += 1
                        bad.append(f"traceback: {argv!r}")
                    elif outcome == "hang":
                        s["hangs"] += 1
                        bad.append(f"hang: {argv!r}")
            finally:
                with contextlib.suppress(OSError):
                    os.chmod(tmp / "unreadable.json", 0o600)
    total = {
        "attempts": sum(s["attempts"] for s in stats.values()),
        "tracebacks": sum(s["tracebacks"] for s in stats.values()),
        "hangs": sum(s["hangs"] for s in stats.values()),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    return {
        "total": total,
        "per_option": {k: {**v, "exits": dict(v["exits"])} for k, v in sorted(stats.items())},
        "problems": bad[:50],
    }


def main_bench() -> int:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    res = _measure(rounds, seed)
    print(f"{'subcommand / option':<30} {'attempts':>8} {'tracebacks':>10} {'hangs':>6}  exit codes")
    for label, s in res["per_option"].items():
        exits = " ".join(f"{k}:{v}" for k, v in sorted(s["exits"].items()))
        print(f"{label:<30} {s['attempts']:>8} {s['tracebacks']:>10} {s['hangs']:>6}  {exits}")
    t = res["total"]
    print(f"{'total':<30} {t['attempts']:>8} {t['tracebacks']:>10} {t['hangs']:>6}  ({t['seconds']} s)")
    for p in res["problems"]:
        print(" ", p)
    atomic_write_text(ROOT / "bench" / "cli-fuzz.json", json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main_bench())
