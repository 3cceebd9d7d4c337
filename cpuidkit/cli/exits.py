"""The command's exit codes: one table, used by every subcommand.

=====  =====================  ======================================================================
code   name                   meaning
=====  =====================  ======================================================================
0      ``EXIT_OK``            done; the answer is yes (accepted, no finding, can migrate)
1      ``EXIT_VERDICT``       done; the answer is no: KVM rejects, an illegal finding, a blocker
2      ``EXIT_BAD_INPUT``     bad input or usage: one line on stderr naming the file, line or field
3      ``EXIT_INTERNAL``      a bug in cpuidkit: one line and "please report" (``--debug``: traceback)
130    ``EXIT_INTERRUPTED``   Ctrl-C
=====  =====================  ======================================================================

A crash never looks like a verdict: only a finished answer exits 1.
"""

EXIT_OK = 0
EXIT_VERDICT = 1
EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130

__all__ = ["EXIT_OK", "EXIT_VERDICT", "EXIT_BAD_INPUT", "EXIT_INTERNAL", "EXIT_INTERRUPTED"]
