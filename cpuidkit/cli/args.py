"""Argument types shared by the subcommands: each turns a bad value into argparse's one-line usage error (exit 2)."""

from __future__ import annotations

import argparse

from cpuidkit.core.kernels import modelled_kernel
from cpuidkit.errors import InputError


def kernel_version(text: str) -> str:
    """``--kernel``: a modelled kernel (``6.12``, ``6.1.170``, ``6.18.44-fc``); others are refused with the list."""
    try:
        return modelled_kernel(text)
    except InputError as e:
        raise argparse.ArgumentTypeError(e.detail) from None
