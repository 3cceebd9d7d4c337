"""Exceptions raised by cpuidkit.

The whole tree::

    CpuidkitError                 root of everything cpuidkit raises on purpose
    ├── InputError (ValueError)   a file or value a user gave is malformed;
    │                             carries the source (file), where (line/entry/field)
    │                             and what was expected
    ├── LookupFailed (KeyError)   a field name or leaf the catalog does not know,
    │                             or a name that is ambiguous
    ├── KvmError (OSError)        KVM (real or modelled) refused an operation;
    │   │                         carries the errno name, the rule id, an
    │   │                         explanation and the kernel source
    │   └── KvmUnavailable        /dev/kvm is missing or not accessible
    └── WriteFailed (OSError)     an output file could not be written; the old
                                  file, if any, is unchanged

Catch ``CpuidkitError`` to catch everything; catch ``ValueError`` or ``OSError``
where the built-in meaning is what matters.
"""

from __future__ import annotations

import errno as _errno

__all__ = [
    "CpuidkitError",
    "InputError",
    "LookupFailed",
    "KvmError",
    "KvmUnavailable",
    "WriteFailed",
]


class CpuidkitError(Exception):
    """Root of every error cpuidkit raises on purpose."""


class InputError(CpuidkitError, ValueError):
    """Malformed input: names the source, the place in it, and what was expected."""

    def __init__(self, message: str, *, source: str | None = None, where: str | None = None):
        self.source = source
        self.where = where
        self.detail = message
        parts = [p for p in (source, where) if p]
        prefix = ":".join(parts)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class LookupFailed(CpuidkitError, KeyError):
    """A field or leaf that the catalog does not know, or an ambiguous name."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want plain text
        return str(self.args[0]) if self.args else ""


class KvmError(CpuidkitError, OSError):
    """KVM refused an operation (for real, or as the model predicts).

    ``errno_name`` is the symbolic errno (``"EINVAL"``, ``"E2BIG"``, ``"EPERM"``…),
    ``rule`` the id of the rule in ``data/kvm-rules.csv`` that explains it,
    ``source`` the kernel function/file/version range it comes from.
    """

    def __init__(
        self,
        errno_name: str,
        explanation: str,
        *,
        rule: str | None = None,
        source: str | None = None,
        operation: str | None = None,
    ):
        self.errno_name = errno_name
        self.rule = rule
        self.explanation = explanation
        self.source = source
        self.operation = operation
        code = getattr(_errno, errno_name, 0)
        text = f"{operation}: " if operation else ""
        text += f"{errno_name}: {explanation}"
        if rule:
            text += f" [rule {rule}]"
        super().__init__(code, text)

    def __str__(self) -> str:
        return self.args[1]

    def as_dict(self) -> dict:
        return {
            "errno": self.errno_name,
            "rule": self.rule,
            "explanation": self.explanation,
            "source": self.source,
            "operation": self.operation,
        }

    def _render_traceback_(self) -> list[str]:
        """How IPython shows it in a notebook: KVM's answer in a few lines, not a Python stack (a refusal
        is the model's answer, not a bug; ``%debug`` and ``traceback`` still have the stack)."""
        lines = [f"{type(self).__name__}: {self.operation + ' → ' if self.operation else ''}{self.errno_name}"]
        lines.append(f"  {self.explanation}")
        if self.rule or self.source:
            lines.append("  " + " · ".join(p for p in (self.rule and f"rule {self.rule}", self.source) if p))
        return lines


class KvmUnavailable(KvmError):
    """/dev/kvm is missing or cannot be opened by this process."""


class WriteFailed(CpuidkitError, OSError):
    """Writing an output file failed; the old file (if any) is unchanged.

    An ``OSError`` (with the original errno) and a :class:`CpuidkitError`, so
    the command line reports it in one line instead of a traceback.
    """

    def __init__(self, path: str, reason: str, code: int | None = None):
        self.path = path
        self.reason = reason
        super().__init__(code or _errno.EIO, f"cannot write {path}: {reason}; the old file, if any, is unchanged")

    def __str__(self) -> str:
        return self.args[1]
