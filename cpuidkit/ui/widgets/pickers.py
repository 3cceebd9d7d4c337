"""What the vCPU is: the kernel version, the vendor module and the host."""

from __future__ import annotations

import html

import ipywidgets as W

from cpuidkit.core.hosts import VENDORS, builtin_hosts
from cpuidkit.core.kernels import named_kernels, parse_version
from cpuidkit.errors import InputError
from cpuidkit.live import kvm_available
from cpuidkit.ui import _inputs
from cpuidkit.ui.lab import Lab, LabView
from cpuidkit.ui.widgets._common import _View


class KernelSelector(W.VBox, _View):
    """The kernel version: the named profiles of data/kernels.toml, with their notes.  The dropdown lists
    only named kernels; a Lab on another modelled kernel (``lab.update(kernel="6.5")``) leaves it without a
    selection and the notes say which kernel the Lab has."""

    def __init__(self, lab: Lab):
        self._subscribe(lab)
        self._syncing = False
        named = named_kernels()
        self.names = sorted(named, key=parse_version)
        self._notes = {k: str(v.get("notes", "")) for k, v in named.items()}
        self.dropdown = W.Dropdown(description="kernel", options=self.names, value=None, layout=W.Layout(width="180px"))
        self.dropdown.style.description_width = "50px"
        self.dropdown.add_class("cpuidkit-kernel")
        self.notes = W.HTML(layout=W.Layout(max_width="640px"))
        self.notes.add_class("cpuidkit-kernel-notes")
        self.message = W.HTML()
        self.dropdown.observe(self._picked, "value")
        super().__init__([self.dropdown, self.notes, self.message])
        self.refresh()

    def _picked(self, change) -> None:
        if not self._syncing and change["new"] is not None:
            self._act(lambda: self.lab.update(kernel=change["new"]))

    def content(self, view: LabView) -> dict:
        named = view.kernel in self.names
        note = (
            self._notes[view.kernel]
            if named
            else f"kernel {view.kernel}: modelled, but not one of the named profiles listed here"
        )
        return {
            "value": view.kernel if named else None,
            "notes": f'<div style="font-size:85%;color:#444">{html.escape(note)}</div>',
        }

    def shown(self) -> dict:
        return {"value": self.dropdown.value, "notes": self.notes.value}

    def refresh(self) -> None:
        c = self.content(self.lab.view)
        self._syncing = True
        try:
            if self.dropdown.value != c["value"]:
                self.dropdown.value = c["value"]
        finally:
            self._syncing = False
        if self.notes.value != c["notes"]:
            self.notes.value = c["notes"]

    def _on_lab(self, what: set) -> None:
        if "kernel" in what:
            self.refresh()


class VendorSelector(W.ToggleButtons, _View):
    """The KVM vendor module: kvm_intel (vmx), kvm_amd (svm) or kvm_pvm (pvm).  ``message`` (shown by
    :class:`~cpuidkit.ui.widgets.CpuidToggler` beside it) says why a change was refused."""

    value: str  # the ipywidgets trait (untyped there)

    def __init__(self, lab: Lab):
        self._subscribe(lab)
        self._syncing = False
        self.message = W.HTML()
        super().__init__(
            options=list(VENDORS),
            value=lab.vendor,
            description="vendor",
            tooltips=["kvm_intel", "kvm_amd", "kvm_pvm (measured rewrites where the host has them)"],
            style={"button_width": "56px", "description_width": "50px"},
        )
        self.add_class("cpuidkit-vendor")
        self.observe(self._picked, "value")

    def _picked(self, change) -> None:
        if not self._syncing:
            self._act(lambda: self.lab.update(vendor=change["new"]))

    def content(self, view: LabView) -> dict:
        return {"value": view.vendor}

    def shown(self) -> dict:
        return {"value": self.value}

    def refresh(self) -> None:
        if self.value != self.lab.vendor:
            self._syncing = True
            try:
                self.value = self.lab.vendor
            finally:
                self._syncing = False

    def _on_lab(self, what: set) -> None:
        if "vendor" in what:
            self.refresh()


def _live_available() -> bool:
    try:
        return kvm_available()[0]
    except Exception:  # noqa: BLE001 - any platform problem just hides the option
        return False


class HostPicker(W.VBox, _View):
    """A built-in host profile, this machine (``live``, where /dev/kvm works), or a dump file.

    Picking a host also loads its KVM_GET_SUPPORTED_CPUID as the guest table
    (untick "take its supported CPUID" to keep the current table).  A dump file is read
    by the hardened reader (a FIFO, a device or a folder is refused at once); a refusal
    is shown underneath and the Lab keeps its host.
    """

    def __init__(self, lab: Lab, live: bool | None = None):
        if live is not None:
            _inputs.flag(live, "live")
        self._subscribe(lab)
        self._syncing = False
        names = sorted(builtin_hosts())
        if live if live is not None else _live_available():
            names.append("live")
        if lab.host.name not in names:
            names.insert(0, lab.host.name)
        self.dropdown = W.Dropdown(
            description="host", options=names, value=lab.host.name, layout=W.Layout(width="260px")
        )
        self.dropdown.style.description_width = "40px"
        self.dropdown.add_class("cpuidkit-host")
        self.take_table = W.Checkbox(value=True, description="take its supported CPUID", indent=False)
        self.path = W.Text(
            placeholder="or a dump file: cpuid -r, KVM JSON, libvirt XML…", layout=W.Layout(width="320px")
        )
        self.load = W.Button(description="load host file", layout=W.Layout(width="120px"))
        self.message = W.HTML()
        self.description = W.HTML()
        self.description.add_class("cpuidkit-host-description")
        self.dropdown.observe(self._picked, "value")
        self.load.on_click(self._load_file)
        super().__init__(
            [W.HBox([self.dropdown, self.take_table]), W.HBox([self.path, self.load]), self.description, self.message]
        )
        self.refresh()

    def _apply(self, spec) -> bool:
        def go() -> None:
            host = _inputs.host(spec)  # a file goes through the hardened reader
            table = host.supported_cpuid() if self.take_table.value else None
            self.lab.update(host=host, table=table)

        return self._act(go)

    def _picked(self, change) -> None:
        if not self._syncing and change["new"] != self.lab.host.name:
            self._apply(change["new"])

    def _load_file(self, _btn) -> None:
        self.load_file(self.path.value)

    def load_file(self, path: str) -> bool:
        """Load a host from a dump file (or a host name) as the button does.  True if the Lab took it."""
        if not isinstance(path, str) or not path.strip():
            return self._act(lambda: _refuse("give a dump file (cpuid -r, KVM JSON, libvirt XML…) or a host name"))
        return self._apply(path.strip())

    def content(self, view: LabView) -> dict:
        h = view.host
        return {
            "value": h.name,
            "description": (
                f'<div style="font-size:85%;color:#444">{html.escape(h.description or h.source)}; '
                f"MAXPHYADDR {h.maxphyaddr}, XCR0 mask {h.xcr0_mask:#x}</div>"
            ),
        }

    def shown(self) -> dict:
        return {"value": self.dropdown.value, "description": self.description.value}

    def refresh(self) -> None:
        c = self.content(self.lab.view)
        self._syncing = True
        try:
            if c["value"] not in self.dropdown.options:
                self.dropdown.options = [c["value"], *self.dropdown.options]
            if self.dropdown.value != c["value"]:
                self.dropdown.value = c["value"]
        finally:
            self._syncing = False
        if self.description.value != c["description"]:
            self.description.value = c["description"]

    def _on_lab(self, what: set) -> None:
        if "host" in what:
            self.refresh()


def _refuse(text: str) -> None:
    raise InputError(text)
