"""The wire format between the host (:class:`~cpuidkit.lab.KernelLab`) and the guest agent.

One JSON object per line (UTF-8, ``\\n``-terminated), over a virtio-serial
port.  The agent speaks first::

    guest -> {"event": "ready", "info": {...}}
    host  -> {"id": 1, "op": "vcpu.call", "handle": 3, "method": "set_cpuid", "args": [{"table": [[...]]}]}
    guest -> {"id": 1, "ok": true, "result": null, "t": 0.0012}
    guest -> {"id": 2, "ok": false, "error": {"kind": "KvmError", "errno": "EINVAL", ...}, "t": ...}

Values that are not plain JSON are tagged: a CPUID table is
``{"table": [[function, index, flags, eax, ebx, ecx, edx], ...]}`` and bytes are
``{"bytes": "<hex>"}``.  ``t`` is the time the guest spent on the request.
Errors carry enough to rebuild the exception LiveVcpu raised in the guest.
"""

from __future__ import annotations

import json

from cpuidkit.core.table import CpuidEntry, CpuidTable
from cpuidkit.errors import InputError, KvmError, KvmUnavailable

PORT_NAME = "cpuidkit.agent"  # the virtserialport name; the guest finds it in /sys/class/virtio-ports


def encode_value(value):
    if isinstance(value, CpuidTable):
        return {
            "table": [[e.function, e.index, e.flags, e.eax, e.ebx, e.ecx, e.edx] for e in value],
            "source": value.source,
        }
    if isinstance(value, (bytes, bytearray)):
        return {"bytes": bytes(value).hex()}
    if isinstance(value, (list, tuple)):
        return [encode_value(v) for v in value]
    if isinstance(value, dict):
        return {"dict": {str(k): encode_value(v) for k, v in value.items()}}
    return value


def decode_value(value):
    if isinstance(value, dict):
        if "table" in value:
            return CpuidTable((CpuidEntry(*row) for row in value["table"]), source=value.get("source"))
        if "bytes" in value:
            return bytes.fromhex(value["bytes"])
        if "dict" in value:
            return {k: decode_value(v) for k, v in value["dict"].items()}
        raise ValueError(f"unknown tagged value {sorted(value)}")
    if isinstance(value, list):
        return [decode_value(v) for v in value]
    return value


def encode_error(exc: BaseException) -> dict:
    if isinstance(exc, KvmError):
        return {
            "kind": "KvmError",
            "class": "KvmUnavailable" if isinstance(exc, KvmUnavailable) else "KvmError",
            "errno": exc.errno_name,
            "explanation": exc.explanation,
            "rule": exc.rule,
            "source": exc.source,
            "operation": exc.operation,
        }
    if isinstance(exc, InputError):
        return {"kind": "InputError", "message": exc.detail, "source": exc.source, "where": exc.where}
    return {"kind": "internal", "type": type(exc).__name__, "message": str(exc)}


def decode_error(error: dict) -> Exception | None:
    """The exception the guest raised, rebuilt; None for an internal error (the caller wraps it)."""
    kind = error.get("kind")
    if kind == "KvmError":
        cls = KvmUnavailable if error.get("class") == "KvmUnavailable" else KvmError
        return cls(
            error["errno"],
            error["explanation"],
            rule=error.get("rule"),
            source=error.get("source"),
            operation=error.get("operation"),
        )
    if kind == "InputError":
        return InputError(error["message"], source=error.get("source"), where=error.get("where"))
    return None


def dumps(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def loads(line: bytes):
    return json.loads(line)
