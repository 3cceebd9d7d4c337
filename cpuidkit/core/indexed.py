"""Which CPUID functions KVM treats as indexed (``cpuid_function_is_indexed``).

Source: arch/x86/kvm/cpuid.h, ``cpuid_function_is_indexed()``; the list is the
same in 6.1, 6.12 and 6.18 (0x24 added with AVX10 in 6.10 is included).
"""

INDEXED_FUNCTIONS = frozenset(
    {0x4, 0x7, 0xB, 0xD, 0xF, 0x10, 0x12, 0x14, 0x17, 0x18, 0x1D, 0x1E, 0x1F, 0x24, 0x8000001D}
)


def function_is_indexed(function: int) -> bool:
    return function in INDEXED_FUNCTIONS
