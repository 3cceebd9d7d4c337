"""The core floor: what every other floor stands on, and nothing KVM does.

* :mod:`~cpuidkit.core.bits` -- registers, bit ranges, field positions;
* :mod:`~cpuidkit.core.table` -- CPUID entries and tables with KVM's lookup rule;
* :mod:`~cpuidkit.core.catalog` -- every named field (``data/fields.csv``);
* :mod:`~cpuidkit.core.indexed` -- which leaves are indexed;
* :mod:`~cpuidkit.core.xsave` -- XSAVE arithmetic (components, sizes, layouts);
* :mod:`~cpuidkit.core.kernels` -- the modelled kernel versions (``data/kernels.toml``);
* :mod:`~cpuidkit.core.history` -- features KVM offers by kernel version;
* :mod:`~cpuidkit.core.sources` -- importers and writers of CPUID dumps;
* :mod:`~cpuidkit.core.hosts` -- host profiles and the one vendor-module resolver.

Nothing here imports the model (:mod:`cpuidkit.kvm`) or anything above it.
"""
