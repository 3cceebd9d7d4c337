"""The ``cpuidkit`` command: the parser, built from one module per subcommand group, and the exit-code rule.

Exit codes (:mod:`cpuidkit.cli.exits`): 0 ok, 1 a verdict (rejected, an illegal finding, a blocker),
2 bad input (one line on stderr naming the file, line or field), 3 an internal error (one line and
"please report"; ``--debug`` shows the traceback), 130 on Ctrl-C.  A crash never exits 1.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence

from cpuidkit.cli import check, decode, guest, lint, review
from cpuidkit.cli.exits import EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_VERDICT
from cpuidkit.errors import CpuidkitError, KvmError, KvmUnavailable

# Each module adds its subcommands with ``register(subparsers)``.
SUBCOMMAND_MODULES = (decode, check, guest, lint, review)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # bad usage is bad input: one line, exit 2
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="cpuidkit", description="Make Linux KVM's CPUID contract visible.")
    p.add_argument("--debug", action="store_true", help="show the traceback of an internal error")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for module in SUBCOMMAND_MODULES:
        module.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # usage errors (exit 2, one line) and --help (exit 0): returned, not raised
        return e.code if isinstance(e.code, int) else EXIT_BAD_INPUT
    try:
        return args.func(args)
    except CpuidkitError as e:
        print(f"cpuidkit {args.command}: {e}", file=sys.stderr)
        return EXIT_VERDICT if _is_kvm_refusal(e) else EXIT_BAD_INPUT
    except BrokenPipeError:
        return EXIT_OK
    except KeyboardInterrupt:
        print("cpuidkit: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as e:  # a file the user named that could not be read or written
        where = f"{e.filename}: " if e.filename else ""
        print(f"cpuidkit {args.command}: {where}{e.strerror or e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as e:  # a bug: never let it look like a verdict
        if args.debug:
            traceback.print_exc()
        print(
            f"cpuidkit {args.command}: internal error: {type(e).__name__}: {e} "
            "(please report this, with the command line; --debug shows the traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


def _is_kvm_refusal(e: Exception) -> bool:
    return isinstance(e, KvmError) and not isinstance(e, KvmUnavailable)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
