"""QEMU's expansion of a CPU model against the CPUID a guest of that model really sees (issue 16, item 2).

For a model, :func:`expansion_vs_guest` asks the installed QEMU for ``query-cpu-model-expansion`` and for the
features TCG cannot give (``query-cpu-definitions``' ``unavailable-features``; QEMU drops those at start), boots
the kernel lab's Debian kernel under ``-cpu MODEL,-svm`` (TCG, as the lab always runs) and reads the guest's own
CPUID instruction there.  Every QEMU feature name of ``data/qemu-cpu-features.csv`` is one comparison: the
expansion says on (and TCG can give it) or off, the guest's CPUID bit says what the guest got.  Not compared:
bits the guest's OS sets at run time (``osxsave``, ``ospke``: CR4), ``svm`` and SVM's feature leaf 0x8000000A
(the guest is booted with ``-svm`` so that Intel and AMD models boot alike; QEMU then fills no SVM leaf).

The guest runs under TCG, not KVM: nested ``-accel kvm`` inside the TCG guest was not used (see docs/lab.md).
"""

from __future__ import annotations

from cpuidkit.core.catalog import qemu_feature_positions
from cpuidkit.lab import KernelLab
from cpuidkit.lab.qmp import expand_cpu_model

__all__ = ["expansion_vs_guest", "RUNTIME_NAMES", "AGREEMENT_MODELS"]

RUNTIME_NAMES = frozenset({"osxsave", "ospke"})  # follow the guest's CR4, not the model
SVM_LEAF = 0x8000000A  # SVM's own features: the lab boots every model with -svm, and QEMU then fills none of them
AGREEMENT_MODELS = ("Skylake-Server", "Cascadelake-Server", "Cooperlake", "Icelake-Server", "EPYC-Rome", "EPYC-Milan")


def compare(expansion: dict, guest) -> dict:
    """Compare an :func:`~cpuidkit.lab.qmp.expand_cpu_model` answer with a guest's CPUID table."""
    props = {str(k).replace("_", "-").lower(): v for k, v in expansion["props"].items()}
    unavailable = {str(n).replace("_", "-").lower() for n in expansion.get("unavailable", [])}
    compared = agree = on = 0
    wrong: list[dict] = []
    for name, (leaf, sub, reg, bit) in sorted(qemu_feature_positions().items()):
        key = name.replace("_", "-").lower()
        if name in RUNTIME_NAMES or key == "svm" or leaf == SVM_LEAF:
            continue
        e = next((x for x in guest if x.function == leaf and x.index == sub), None)
        if e is None:
            continue  # a leaf beyond the model's level: the guest has none, nothing to compare
        want = props.get(key) is True and key not in unavailable
        got = bool(e.reg(reg) >> bit & 1)
        compared += 1
        on += want
        if want == got:
            agree += 1
        else:
            wrong.append(
                {"name": name, "expansion": props.get(key), "tcg_unavailable": key in unavailable, "guest": got}
            )
    return {"compared": compared, "agree": agree, "on": on, "disagreements": wrong}


def expansion_vs_guest(model: str, series: str = "6.12", *, log=None) -> dict:
    """``{"model", "qemu_version", "kernel", "compared", "agree", "disagreements"}`` for one model."""
    exp = expand_cpu_model(model, accel="tcg")  # the lab's guest runs under TCG
    with KernelLab(series, cpu=f"{model},-svm", need_kvm=False, log=log) as lab:
        guest = lab.request("cpuid_instruction")
        release = lab.kernel_release
    out = {"model": model, "qemu_version": exp["qemu_version"], "kernel": release}
    out.update(compare(exp, guest))
    return out
