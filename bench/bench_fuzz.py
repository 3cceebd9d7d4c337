"""Fuzz every importer: N mutated inputs per format; count anything but a table or a good InputError.

    .venv/bin/python bench/bench_fuzz.py                 # 100,000 inputs per format
    .venv/bin/python bench/bench_fuzz.py -n 5000 --formats libvirt-xml

Inputs are the shared real dumps (and texts made from them) mutated by
``tests/strategies.py`` (truncations, flipped characters, huge/negative
numbers, wrong JSON types, duplicated elements and lines, mixed formats, random
bytes, DTDs, deep nesting…).  Each is parsed in-process: as text with the
format forced, as text with the format detected, or as the bytes of a file
(``loads_bytes``, what ``load`` and ``cpuidkit decode`` read); every
``--cli-every``-th input also goes through ``cpuidkit decode`` (``cli.main``
in-process, from a temporary file), which must exit 0, or 2 with one line on
stderr.  The outcome rule is ``strategies.check_outcome``: a table, or an
InputError whose one-line message starts with the source and says where or
what was expected.  Anything else is counted in "other" (goal: 0), and so is
an input that takes longer than ``--slow`` seconds.

Then the hostile-XML inputs are timed (billion laughs, external entity, deep
nesting, a huge attribute, an oversized file): each must be refused or parsed
within ``HOSTILE_BOUND`` seconds.  Nothing is written unless
``--save-failures DIR`` is given (then each failing input, atomically).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import hashlib
import io
import multiprocessing
import os
import random
import shutil
import sys
import tempfile
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import strategies  # noqa: E402  (tests/strategies.py: corpus, mutator, outcome rule)

HOSTILE_BOUND = 3.0  # seconds for each hostile-XML input (the worst, 15 MB of <cpuid> elements, takes 1.5-1.9 s)
SOURCE = "fuzz-input"


def _cli_decode(data: bytes, folder: str) -> str | None:
    """``cpuidkit decode`` on ``data``; None if it behaved (exit 0, or 2 with one line), else why not."""
    from cpuidkit.cli.main import main

    path = os.path.join(folder, "input")
    with open(path, "wb") as fh:  # scratch: the input handed to `cpuidkit decode`, in a temporary folder
        fh.write(data)
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["decode", path, "--format", "json"])
    except SystemExit as e:
        code = e.code
    except Exception as e:  # noqa: BLE001 - a traceback is what we count
        return f"cpuidkit decode raised {type(e).__name__}: {e!s:.200}"
    if code == 0:
        return None
    lines = err.getvalue().splitlines()
    if code != 2:
        return f"cpuidkit decode exited {code}"
    if len(lines) != 1 or "Traceback" in err.getvalue() or out.getvalue():
        return f"cpuidkit decode exit 2 printed {len(lines)} line(s) on stderr"
    return None


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def run_chunk(args: tuple) -> dict:
    fmt, seed, count, cli_every, slow_limit = args
    from cpuidkit.core.sources import loads, loads_bytes

    r = random.Random(seed)
    counts: collections.Counter = collections.Counter()
    samples: dict[str, bytes] = {}
    slowest = 0.0
    with tempfile.TemporaryDirectory(prefix="cpuidkit-fuzz-") as folder:
        for i in range(count):
            text = strategies.mutate(r, fmt)
            mode = i % 4
            if mode == 0:
                call = lambda: loads(text, source=SOURCE, format=fmt)  # noqa: E731
            elif mode == 1:
                call = lambda: loads(text, source=SOURCE)  # noqa: E731
            elif mode == 2:
                cpu = r.choice((None, 0, 1, 7)) if fmt in ("cpuid-raw", "libcpuid") else None
                call = lambda: loads(text, source=SOURCE, format=fmt, cpu=cpu)  # noqa: E731
            else:
                data = _encode(text)
                call = lambda: loads_bytes(data, source=SOURCE)  # noqa: E731
            started = time.perf_counter()
            kind, why = strategies.check_outcome(call, SOURCE)
            took = time.perf_counter() - started
            slowest = max(slowest, took)
            counts[kind] += 1
            if took > slow_limit:
                counts["slow"] += 1
                why = why or f"took {took:.2f} s"
            if cli_every and i % cli_every == 0:
                counts["cli"] += 1
                cli_why = _cli_decode(_encode(text), folder)
                if cli_why:
                    counts["cli-bad"] += 1
                    why = why or cli_why
            if why and len(samples) < 5:
                samples.setdefault(why, _encode(text))
    return {"counts": counts, "samples": samples, "slowest": slowest}


def fuzz(formats, n: int, seed: int, jobs: int, cli_every: int, slow_limit: float) -> dict:
    strategies.seeds()  # load the corpus once, before forking
    chunk = max(1, min(2500, n // (jobs * 4) or 1))
    results = {}
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(jobs) as pool:
        for fmt in formats:
            started = time.perf_counter()
            tasks = []
            left, k = n, 0
            while left > 0:
                c = min(chunk, left)
                tasks.append((fmt, zlib.crc32(f"{seed}/{fmt}/{k}".encode()), c, cli_every, slow_limit))
                left -= c
                k += 1
            counts: collections.Counter = collections.Counter()
            samples: dict[str, bytes] = {}
            slowest = 0.0
            for res in pool.imap_unordered(run_chunk, tasks):
                counts.update(res["counts"])
                for why, data in res["samples"].items():
                    samples.setdefault(why, data)
                slowest = max(slowest, res["slowest"])
            results[fmt] = {"counts": counts, "samples": samples, "slowest": slowest,
                            "seconds": time.perf_counter() - started}
            c = counts
            other = c["other"] + c["slow"] + c["cli-bad"]
            print(f"{fmt:<13} {n:>8} {c['table']:>8} {c['input-error']:>8} {other:>6}   "
                  f"{c['cli']:>5}/{c['cli-bad']:<3} {results[fmt]['slowest'] * 1000:>8.1f} {results[fmt]['seconds']:>7.1f}",
                  flush=True)
    return results


def hostile_xml() -> list[tuple[str, float, str]]:
    """Time each hostile XML input; (name, seconds, outcome)."""
    from cpuidkit import InputError
    from cpuidkit.core.sources import load, loads

    entity = '<!ENTITY a0 "lol">' + "".join(f'<!ENTITY a{i} "{("&a%d;" % (i - 1)) * 10}">' for i in range(1, 10))
    cpuid = "<cpuid eax_in='0x0' ecx_in='0x0' eax='0x1' ebx='0x0' ecx='0x0' edx='0x0'/>"
    docs = {
        "billion laughs (10^9 'lol')": f"<?xml version='1.0'?><!DOCTYPE cpudata [{entity}]><cpudata>&a9;</cpudata>",
        "quadratic blowup (one 100 kB entity x 10k)": "<!DOCTYPE cpudata [<!ENTITY e '" + "x" * 100_000 + "'>]><cpudata>"
        + "&e;" * 10_000 + "</cpudata>",
        "external entity (file://)": "<!DOCTYPE cpudata [<!ENTITY x SYSTEM 'file:///etc/passwd'>]><cpudata>&x;</cpudata>",
        "external DTD (http://)": "<!DOCTYPE cpudata SYSTEM 'http://127.0.0.1:9/x.dtd'><cpudata/>",
        "deep nesting (1,000,000 levels)": "<cpudata>" + "<x>" * 1_000_000 + "</x>" * 1_000_000 + cpuid + "</cpudata>",
        "huge attribute (15 MiB)": "<cpudata><cpuid junk='" + "A" * (15 << 20) + "' " + cpuid[7:] + "</cpudata>",
        "200,000 <cpuid> elements (15 MB)": "<cpudata>" + cpuid * 200_000 + "</cpudata>",
        "deep nesting inside <cpuid> (2,000,000 levels)": "<cpudata><cpuid eax_in='0x0' ecx_in='0x0' eax='0x1' ebx='0x0' "
        "ecx='0x0' edx='0x0'>" + "<x>" * 2_000_000 + "</x>" * 2_000_000 + "</cpuid></cpudata>",
    }
    out = []
    for name, doc in docs.items():
        started = time.perf_counter()
        try:
            t = loads(doc, source="hostile.xml", format="libvirt-xml")
            outcome = f"parsed ({len(t)} entries)"
        except InputError as e:
            outcome = f"refused: {str(e)[:90]}"
        out.append((name, time.perf_counter() - started, outcome))
    with tempfile.TemporaryDirectory() as d:
        big = Path(d) / "big.xml"
        with open(big, "wb") as fh:  # scratch: a sparse oversized input, in a temporary folder
            fh.write(b"<cpudata>")
            fh.truncate((16 << 20) + 1)
        started = time.perf_counter()
        try:
            load(big)
            outcome = "parsed"
        except InputError as e:
            outcome = f"refused: {str(e).replace(str(big), 'big.xml')[:90]}"
        out.append(("16 MiB + 1 byte file", time.perf_counter() - started, outcome))
    return out


def atheris_fuzz(fmt: str, runs: int) -> int:
    """Coverage-guided fuzzing of ``fmt`` with atheris, from the same seeds, under the same rule."""
    try:
        import atheris
    except ImportError:
        print("atheris is not installed (pip install atheris); it is optional and no test needs it")
        return 2
    with atheris.instrument_imports():
        import cpuidkit.core.sources
        from cpuidkit.core.sources import (
            cpuid_raw,
            firecracker,
            kvm_json,
            libcpuid,
            libvirt,
            loads,
            loads_bytes,
            proc_cpuinfo,
        )  # noqa: F401

    failures: list[str] = []
    seen = [0]
    corpus = tempfile.mkdtemp(prefix="cpuidkit-atheris-")
    seed_files = []
    for i, seed in enumerate(strategies.seeds()[fmt]):
        path = os.path.join(corpus, f"seed{i}")
        with open(path, "wb") as fh:  # scratch: the starting inputs, removed at the end
            fh.write(_encode(seed))
        seed_files.append(path)
    started = time.perf_counter()

    def one(data: bytes) -> None:
        kind, why = strategies.check_outcome(lambda: loads_bytes(data, source=SOURCE, format=fmt), SOURCE)
        if kind != "other":  # most mutated bytes are not UTF-8: also hand the parser their Latin-1 reading
            kind, why = strategies.check_outcome(lambda: loads(data.decode("latin-1"), source=SOURCE, format=fmt), SOURCE)
        seen[0] += 1
        if kind == "other":
            failures.append(why)
            raise AssertionError(why)  # atheris prints it and saves the input as crash-*
        if seen[0] == runs:  # libFuzzer ends the process right after the last run
            shutil.rmtree(corpus, ignore_errors=True)
            print(f"atheris {fmt}: {runs:,} inputs, anything but a table or InputError: 0, "
                  f"{time.perf_counter() - started:.1f} s", flush=True)

    # -seed_inputs: start from the real dumps without writing new corpus files anywhere
    atheris.Setup([sys.argv[0], f"-runs={runs}", "-max_len=262144", "-seed_inputs=" + ",".join(seed_files)], one)
    atheris.Fuzz()
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", "--inputs", type=int, default=100_000, help="inputs per format (default 100,000)")
    ap.add_argument("--formats", nargs="+", default=list(strategies.FORMATS), choices=strategies.FORMATS)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--cli-every", type=int, default=50, help="every Nth input also through `cpuidkit decode` (0: never)")
    ap.add_argument("--slow", type=float, default=1.0, help="seconds after which one input counts as a failure")
    ap.add_argument("--save-failures", default=None, metavar="DIR", help="write each failing input there")
    ap.add_argument("--no-hostile", action="store_true", help="skip the hostile-XML timings")
    ap.add_argument("--atheris", default=None, metavar="FORMAT", choices=strategies.FORMATS,
                    help="instead: coverage-guided fuzzing of one format with atheris (pip install atheris)")
    ap.add_argument("--runs", type=int, default=100_000, help="atheris: inputs to try")
    args = ap.parse_args(argv)
    if args.atheris:
        return atheris_fuzz(args.atheris, args.runs)

    started = time.perf_counter()
    print(f"fuzzing {args.inputs:,} inputs per format, seed {args.seed}, {args.jobs} process(es)")
    print(f"{'format':<13} {'inputs':>8} {'tables':>8} {'InputErr':>8} {'other':>6}   {'cli/bad':>9} {'max ms':>8} {'seconds':>7}")
    results = fuzz(args.formats, args.inputs, args.seed, args.jobs, args.cli_every, args.slow)
    total_other = 0
    for fmt, res in results.items():
        c = res["counts"]
        total_other += c["other"] + c["slow"] + c["cli-bad"]
        for why, data in res["samples"].items():
            print(f"  {fmt}: {why}")
            if args.save_failures:
                from cpuidkit._files import atomic_write_bytes

                Path(args.save_failures).mkdir(parents=True, exist_ok=True)
                name = f"{fmt}-{hashlib.sha1(data).hexdigest()[:12]}.in"
                atomic_write_bytes(Path(args.save_failures) / name, data)
    elapsed = time.perf_counter() - started
    print(f"total: {args.inputs * len(results):,} inputs, anything but a table or InputError: {total_other} "
          f"(goal 0), {elapsed:.1f} s")

    if not args.no_hostile:
        print(f"\nhostile XML (bound {HOSTILE_BOUND:g} s each):")
        worst = 0.0
        for name, took, outcome in hostile_xml():
            worst = max(worst, took)
            flag = "ok  " if took <= HOSTILE_BOUND else "SLOW"
            print(f"  {flag} {took * 1000:8.1f} ms  {name:<44} {outcome}")
        if worst > HOSTILE_BOUND:
            total_other += 1
    return 0 if total_other == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
