"""What every view shares: the :class:`_View` mixin that subscribes a widget to its Lab, and the one way a
reader's action reaches the Lab (:meth:`_View._act`: a refused value is shown where the widget shows
messages, and the widget shows the Lab's unchanged state again)."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from cpuidkit.errors import CpuidkitError, InputError
from cpuidkit.ui._theme import VERDICT_COLOURS
from cpuidkit.ui.lab import Lab, LabView

MESSAGE_LIMIT = 400  # characters of an error shown in a widget (a message may quote a whole input)
INTERNAL = "internal error (please report it)"


def error_html(text: str) -> str:
    """An error as a widget's message line (escaped, shortened)."""
    if len(text) > MESSAGE_LIMIT:
        text = text[:MESSAGE_LIMIT] + f"… ({len(text)} characters)"
    return f'<span class="cpuidkit-error" style="color:{VERDICT_COLOURS["rejected"]}">{html.escape(text)}</span>'


class _View:
    """Mixin: subscribe to a Lab; ``_on_lab`` is called with the set of what changed.

    A view that shows the Lab (``panel=True``) defines ``content(view)`` (what it must show for a
    :class:`~cpuidkit.ui.lab.LabView`, computed without touching a widget) and ``shown()`` (the same
    structure read back from its widgets), so :meth:`Lab.expected` can say whether it is right.
    """

    lab: Lab
    message: Any  # the widget's message line (a W.HTML), where a refused action says why

    def _subscribe(self, lab: Lab, *, panel: bool = True) -> None:
        if not isinstance(lab, Lab):
            raise InputError(f"{type(self).__name__} needs a cpuidkit.ui.Lab, got {type(lab).__name__}", where="lab")
        self.lab = lab
        lab.on_change(lambda _lab, what: self._on_lab(what))
        if panel:
            lab.attach(self)

    def _on_lab(self, what: set) -> None:  # pragma: no cover - overridden
        pass

    def content(self, view: LabView) -> Any:  # pragma: no cover - overridden by every panel
        return None

    def shown(self) -> Any:  # pragma: no cover - overridden by every panel
        return None

    def refresh(self) -> None:  # pragma: no cover - overridden
        pass

    def _say(self, value: str) -> None:
        message = getattr(self, "message", None)
        if message is not None and message.value != value:
            message.value = value

    def _act(self, action: Callable[[], object], failed: str = "") -> bool:
        """Run a reader's action.  A ``CpuidkitError`` (a refused value: the Lab is unchanged) is shown in
        the message line (after ``failed``, e.g. "import failed, nothing changed") and the widget shows the
        Lab's state again; any other exception is shown as an internal error the same way, never raised
        into the notebook's event loop.  True if it worked."""
        try:
            action()
        except CpuidkitError as e:
            failure = str(e)
        except Exception as e:  # noqa: BLE001 - a bug: said on the widget, like the CLI's exit 3
            failure = f"{INTERNAL}: {type(e).__name__}: {e}"
        else:
            self._say("")
            return True
        self._say(error_html(f"{failed}: {failure}" if failed else failure))
        self.refresh()
        return False
