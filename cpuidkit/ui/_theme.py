"""Colours and labels shared by the widgets, the field table and the plots.

One colour per owner class, so a bit that is orange in a grid is orange in the
table and in every figure.  The classes are those of
``cpuidkit.kvm.ownership``; ``unnamed`` is a bit the catalog has no field for
(KVM passes it through like any other).
"""

from __future__ import annotations

import html

OWNER_COLOURS = {
    "passthrough": "#cfe8cf",  # green: userspace decides, KVM stores and shows it unchanged
    "runtime": "#ffd39b",  # orange: KVM overwrites it from vCPU state
    "vendor": "#c9d7f5",  # blue: the vendor module (pvm) decides it after KVM_SET_CPUID2
    "not-virtualized": "#e8c8e8",  # purple: visible to the guest, absent from KVM's caps
    "unnamed": "#eeeeee",  # grey: no catalog field at this position (passed through)
}
OWNER_TEXT = {
    "passthrough": "passes through unchanged",
    "runtime": "computed by KVM at runtime",
    "vendor": "decided by the vendor module",
    "not-virtualized": "shown to the guest, but not virtualized by KVM",
    "unnamed": "no named field (passes through)",
}
VERDICT_COLOURS = {"accepted": "#2e7d32", "rejected": "#c62828"}
CHANGED_OUTLINE = "#c62828"  # a stored bit that differs from what userspace set

# XSAVE components in plots: user (XCR0) vs supervisor (IA32_XSS)
XSAVE_USER = "#8fbbe0"
XSAVE_SUPERVISOR = "#f0b27a"
XSAVE_LEGACY = "#bbbbbb"


def owner_colour(owner: str) -> str:
    return OWNER_COLOURS.get(owner, OWNER_COLOURS["unnamed"])


def legend_html() -> str:
    """A one-line HTML legend of the owner colours."""
    cells = "".join(
        f'<span style="background:{c};padding:1px 6px;margin-right:6px;border:1px solid #999">{name}</span>'
        for name, c in OWNER_COLOURS.items()
    )
    return f'<div style="font-size:90%">{cells}</div>'


# whether a real kernel confirmed the model's answer (cpuidkit.core.confirmed): a small line under a verdict
CONFIRMATION_STYLE = {
    "confirmed": ("#2e7d32", "✓"),  # a real kernel of this series and vendor agreed on every case run
    "disagreed": ("#c62828", "✗"),  # it ran and the model missed cases
    "source": ("#6d6d6d", "◌"),  # never run: read from the kernel source only
}


def confirmation_html(c) -> str:
    """A :class:`~cpuidkit.core.confirmed.Confirmation` as a one-line badge (the longer text on hover)."""
    colour, mark = CONFIRMATION_STYLE[c.status]
    return (
        f'<div class="cpuidkit-confirmation cpuidkit-confirmation-{c.status}" '
        f'style="font-size:80%;color:{colour}" title="{html.escape(c.text)}">{mark} {html.escape(c.badge)}</div>'
    )
