"""ipywidgets views of a :class:`~cpuidkit.ui.lab.Lab`.

Every view subscribes to its Lab and, on a change, recomputes what it shows
and pushes to the browser **only the parts that differ** from what it last
showed (one button's colour, one label), so a toggle costs one ``check()``
and a handful of widget messages.  Views:

=====================  ============================================================
``BitGrid``            32 buttons for one leaf/subleaf/register, coloured by owner,
                       field name and owner on hover; the stored value underneath
``RegisterPicker``     choose the leaf/subleaf/register a grid shows
``WidthSliders``       MAXPHYADDR (0x80000008.EAX[7:0]) and linear width ([15:8])
``Xcr0Checkboxes``     one checkbox per XSAVE component; KVM_SET_XCRS and XSETBV results
``AmxPermissionToggle`` arch_prctl(ARCH_REQ_XCOMP_GUEST_PERM): KVM_SET_CPUID2 and XSETBV for AMX
``KernelSelector``     the kernel version (named profiles of data/kernels.toml)
``VendorSelector``     vmx / svm / pvm
``HostPicker``         built-in host profiles, a dump file, or this machine ("live")
``VerdictPanel``       accepted / rejected, errno, rule, explanation, kernel source
``FieldTable``         the named fields as a pandas Styler, coloured by owner
``RuntimeTriggers``    CR4.OSXSAVE/PKE, APIC_BASE.EN, MISC_ENABLE.MWAIT, quirk, HLT, run
``ExportImport``       the table as KVM JSON (written atomically); a bad import changes nothing
``CpuidToggler``       all of the above wired to one Lab
``ExerciseBox``        an exercise answered on the page (for Voilà): answer box, check
``TemplatePanel``      a VMM's CPU template (Firecracker, QEMU model, or uploaded) on two hosts and the fleet
=====================  ============================================================

The modules, each importing only those above it in this list:

* ``_common``: the ``_View`` mixin every view uses to follow its Lab
* ``grid``: ``BitGrid``, ``RegisterPicker``, ``FieldTable`` (and ``style_fields``)
* ``panels``: ``VerdictPanel`` (``verdict_html``), ``LintPanel``, ``KernelBehaviours``, ``ReviewPanel``
* ``pickers``: ``KernelSelector``, ``VendorSelector``, ``HostPicker``
* ``vcpu_state``: ``RuntimeTriggers`` (``runtime_view_html``), ``Xcr0Checkboxes`` (``xsetbv_result``)
* ``controls``: ``WidthSliders``, ``ExportImport``, ``RejectionExplorer``
* ``toggler``: ``CpuidToggler``
* ``interact``: ``interact`` (ipywidgets' ``interact`` without capturing output while a cell runs:
  safe in Voilà)
* ``exercise``: ``ExerciseBox`` (not a view of a Lab: a ``check_…`` function's answer box)
* ``templates``: ``TemplatePanel`` (not a view of a Lab: a template reviewed on hosts)

Import the views from here (``from cpuidkit.ui.widgets import BitGrid``).
"""

from __future__ import annotations

from cpuidkit.ui.widgets.controls import ExportImport, RejectionExplorer, WidthSliders
from cpuidkit.ui.widgets.exercise import ExerciseBox
from cpuidkit.ui.widgets.grid import BitGrid, FieldTable, RegisterPicker
from cpuidkit.ui.widgets.grid import style_fields as style_fields
from cpuidkit.ui.widgets.interact import interact
from cpuidkit.ui.widgets.panels import KernelBehaviours, LintPanel, ReviewPanel, VerdictPanel, verdict_html
from cpuidkit.ui.widgets.pickers import HostPicker, KernelSelector, VendorSelector
from cpuidkit.ui.widgets.templates import TemplatePanel
from cpuidkit.ui.widgets.toggler import CpuidToggler
from cpuidkit.ui.widgets.vcpu_state import APIC_DEFAULT_BASE as APIC_DEFAULT_BASE
from cpuidkit.ui.widgets.vcpu_state import RUNTIME_FIELDS as RUNTIME_FIELDS
from cpuidkit.ui.widgets.vcpu_state import AmxPermissionToggle, RuntimeTriggers, Xcr0Checkboxes, xsetbv_result
from cpuidkit.ui.widgets.vcpu_state import runtime_view_html as runtime_view_html

__all__ = [
    "AmxPermissionToggle",
    "TemplatePanel",
    "BitGrid",
    "RegisterPicker",
    "WidthSliders",
    "Xcr0Checkboxes",
    "KernelSelector",
    "VendorSelector",
    "HostPicker",
    "VerdictPanel",
    "FieldTable",
    "RuntimeTriggers",
    "ExportImport",
    "CpuidToggler",
    "LintPanel",
    "KernelBehaviours",
    "RejectionExplorer",
    "ReviewPanel",
    "ExerciseBox",
    "interact",
    "verdict_html",
    "xsetbv_result",
]
