"""What every view shares: the :class:`_View` mixin that subscribes a widget to its Lab."""

from __future__ import annotations

from cpuidkit.ui.lab import Lab


class _View:
    """Mixin: subscribe to a Lab; ``_on_lab`` is called with the set of what changed."""

    lab: Lab

    def _subscribe(self, lab: Lab) -> None:
        self.lab = lab
        lab.on_change(lambda _lab, what: self._on_lab(what))

    def _on_lab(self, what: set) -> None:  # pragma: no cover - overridden
        pass
