"""What the vCPU is: the kernel version, the vendor module and the host."""

from __future__ import annotations

import html

import ipywidgets as W

from cpuidkit.core.hosts import VENDORS, builtin_hosts
from cpuidkit.core.kernels import named_kernels, parse_version
from cpuidkit.live import kvm_available, resolve_host
from cpuidkit.ui._theme import VERDICT_COLOURS
from cpuidkit.ui.lab import Lab
from cpuidkit.ui.widgets._common import _View


class KernelSelector(W.VBox, _View):
    """The kernel version: the named profiles of data/kernels.toml, with their notes."""

    def __init__(self, lab: Lab):
        self._subscribe(lab)
        names = sorted(named_kernels(), key=parse_version)
        if lab.kernel not in names:
            names.append(lab.kernel)
        self.dropdown = W.Dropdown(
            description="kernel", options=names, value=lab.kernel, layout=W.Layout(width="180px")
        )
        self.dropdown.style.description_width = "50px"
        self.dropdown.add_class("cpuidkit-kernel")
        self.notes = W.HTML(layout=W.Layout(max_width="640px"))
        self.dropdown.observe(lambda c: self.lab.update(kernel=c["new"]), "value")
        super().__init__([self.dropdown, self.notes])
        self._on_lab({"kernel"})

    def _on_lab(self, what: set) -> None:
        if "kernel" in what:
            if self.dropdown.value != self.lab.kernel:
                self.dropdown.value = self.lab.kernel
            note = named_kernels().get(self.lab.kernel, {}).get("notes", "")
            self.notes.value = f'<div style="font-size:85%;color:#444">{html.escape(note)}</div>'


class VendorSelector(W.ToggleButtons, _View):
    """The KVM vendor module: kvm_intel (vmx), kvm_amd (svm) or kvm_pvm (pvm)."""

    value: str  # the ipywidgets trait (untyped there)

    def __init__(self, lab: Lab):
        self._subscribe(lab)
        super().__init__(
            options=list(VENDORS),
            value=lab.vendor,
            description="vendor",
            tooltips=["kvm_intel", "kvm_amd", "kvm_pvm (measured rewrites where the host has them)"],
            style={"button_width": "56px", "description_width": "50px"},
        )
        self.observe(lambda c: self.lab.update(vendor=c["new"]), "value")

    def _on_lab(self, what: set) -> None:
        if "vendor" in what and self.value != self.lab.vendor:
            self.value = self.lab.vendor


def _live_available() -> bool:
    try:
        return kvm_available()[0]
    except Exception:  # noqa: BLE001 - any platform problem just hides the option
        return False


class HostPicker(W.VBox, _View):
    """A built-in host profile, this machine (``live``, where /dev/kvm works), or a dump file.

    Picking a host also loads its KVM_GET_SUPPORTED_CPUID as the guest table
    (untick "take its supported CPUID" to keep the current table).
    """

    def __init__(self, lab: Lab, live: bool | None = None):
        self._subscribe(lab)
        names = sorted(builtin_hosts())
        if live if live is not None else _live_available():
            names.append("live")
        if lab.host.name not in names:
            names.insert(0, lab.host.name)
        self.dropdown = W.Dropdown(
            description="host", options=names, value=lab.host.name, layout=W.Layout(width="260px")
        )
        self.dropdown.style.description_width = "40px"
        self.take_table = W.Checkbox(value=True, description="take its supported CPUID", indent=False)
        self.path = W.Text(
            placeholder="or a dump file: cpuid -r, KVM JSON, libvirt XML…", layout=W.Layout(width="320px")
        )
        self.load = W.Button(description="load host file", layout=W.Layout(width="120px"))
        self.message = W.HTML()
        self.description = W.HTML()
        self.dropdown.observe(self._picked, "value")
        self.load.on_click(self._load_file)
        super().__init__(
            [W.HBox([self.dropdown, self.take_table]), W.HBox([self.path, self.load]), self.description, self.message]
        )
        self._describe()

    def _apply(self, spec) -> None:
        try:
            host = resolve_host(spec)
        except Exception as e:  # noqa: BLE001 - shown to the user; the Lab is unchanged
            self.message.value = f'<span style="color:{VERDICT_COLOURS["rejected"]}">{html.escape(str(e))}</span>'
            return
        table = host.supported_cpuid() if self.take_table.value else None
        self.lab.update(host=host, table=table)
        self.message.value = ""

    def _picked(self, change) -> None:
        if change["new"] != self.lab.host.name:
            self._apply(change["new"])

    def _load_file(self, _btn) -> None:
        if self.path.value.strip():
            self._apply(self.path.value.strip())

    def _describe(self) -> None:
        h = self.lab.host
        self.description.value = (
            f'<div style="font-size:85%;color:#444">{html.escape(h.description or h.source)}; '
            f"MAXPHYADDR {h.maxphyaddr}, XCR0 mask {h.xcr0_mask:#x}</div>"
        )

    def _on_lab(self, what: set) -> None:
        if "host" in what:
            options = list(self.dropdown.options)
            if self.lab.host.name not in options:
                self.dropdown.options = [self.lab.host.name, *options]
            if self.dropdown.value != self.lab.host.name:
                self.dropdown.value = self.lab.host.name
            self._describe()
