"""Everything together: :class:`CpuidToggler`, all the views wired to one Lab."""

from __future__ import annotations

import ipywidgets as W

from cpuidkit.errors import InputError
from cpuidkit.ui import _inputs
from cpuidkit.ui.lab import Lab
from cpuidkit.ui.widgets.controls import ExportImport, WidthSliders
from cpuidkit.ui.widgets.grid import BitGrid, FieldTable, RegisterPicker
from cpuidkit.ui.widgets.panels import VerdictPanel
from cpuidkit.ui.widgets.pickers import HostPicker, KernelSelector, VendorSelector
from cpuidkit.ui.widgets.vcpu_state import RuntimeTriggers


class CpuidToggler(W.VBox):
    """The main toggler: host, kernel, vendor; a register grid; widths; vCPU state; verdict;
    field table; export/import.  All views share one :class:`Lab` (``toggler.lab``)."""

    def __init__(
        self,
        lab: Lab | None = None,
        leaf: int = 7,
        subleaf: int = 0,
        register: str = "ebx",
        live: bool | None = None,
        triggers: bool = True,
    ):
        if lab is not None and not isinstance(lab, Lab):
            raise InputError(f"CpuidToggler needs a cpuidkit.ui.Lab, got {_inputs.kind(lab)}", where="lab")
        ref = _inputs.position(leaf, subleaf, register)  # checked before any view follows the Lab
        _inputs.flag(triggers, "triggers")
        if live is not None:
            _inputs.flag(live, "live")
        self.lab = lab if lab is not None else Lab()
        self.host = HostPicker(self.lab, live=live)
        self.kernel = KernelSelector(self.lab)
        self.vendor = VendorSelector(self.lab)
        self.grid = BitGrid(self.lab, ref.leaf, ref.subleaf, ref.register)
        self.table = FieldTable(self.lab, scope=(ref.leaf, ref.subleaf))
        self.picker = RegisterPicker(
            self.lab, self.grid, on_pick=lambda leaf, sub, _reg: self.table.show_entry(leaf, sub)
        )
        self.widths = WidthSliders(self.lab)
        self.verdict = VerdictPanel(self.lab)
        self.triggers = RuntimeTriggers(self.lab)
        self.files = ExportImport(self.lab)
        state = W.Accordion(
            children=[self.triggers, self.files], titles=("vCPU state and runtime triggers", "export / import KVM JSON")
        )
        if triggers:
            state.selected_index = 0
        children = [
            W.HBox([self.host, W.VBox([self.kernel, self.vendor, self.vendor.message])]),
            self.verdict,
            self.picker,
            self.grid,
            self.widths,
            state,
            self.table,
        ]
        super().__init__(children)
        self.add_class("cpuidkit-toggler")
