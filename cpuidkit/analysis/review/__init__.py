"""``cpuidkit review``: one CPU template against one host, as a report for a design doc.

:func:`review` collects what the other parts of cpuidkit say about a template
(a guest CPUID table) on a host, for a kernel version and vendor module:

1. KVM's verdict on KVM_SET_CPUID2 (errno, rule, kernel source) and the state
   KVM derives (:func:`cpuidkit.kvm.check.check`);
2. the fields the template sets that KVM owns at run time (pointless to set);
3. the features it advertises beyond what KVM virtualizes on that host
   (``migrate``'s feature rules against KVM's supported CPUID: measured where
   the host profile has KVM_GET_SUPPORTED_CPUID, else derived from the host's
   own CPUID, and the report says which);
4. the sanity lint (:func:`cpuidkit.analysis.lint.lint_table`);
5. XSAVE: the XCR0 the template allows, KVM's sizes on the host's offsets;
6. MAXPHYADDR and the linear-address width against the host (``migrate``'s
   rules);
7. kernel-version notes: the rows of ``data/kvm-behaviours.csv`` that change
   between 5.10 and 6.18 and touch something this template uses.

With ``pool=[hosts]`` an eighth section says what ``migrate`` finds for each
host of a migration pool.

The result is a small document (sections of paragraphs, lists, tables and
figures) rendered as Markdown, HTML or JSON; the HTML embeds two figures as
inline SVG (a bit grid of the feature registers, the XSAVE layout), drawn by
:mod:`cpuidkit.analysis.figures` without matplotlib.  Nothing in a report
depends on the time or the machine (file names are shown without their
folders), so a review is reproducible.  In a notebook a :class:`Review` shows
itself as the HTML report's body, figures included.

The package, one job per module:

* :mod:`~cpuidkit.analysis.review.engine`: :func:`review`, which collects and assembles;
* :mod:`~cpuidkit.analysis.review.facts`: what the review reads about the template and the host;
* :mod:`~cpuidkit.analysis.review.notes`: the kernel-version notes (the ``review`` column of
  ``data/kvm-behaviours.csv``, its named :data:`CONDITIONS`, :func:`review_class`);
* :mod:`~cpuidkit.analysis.review.sections`: the header, the summary and the numbered sections;
* :mod:`~cpuidkit.analysis.review.document`: :class:`Review` and :class:`Section`;
* :mod:`~cpuidkit.analysis.review.to_markdown`, :mod:`~cpuidkit.analysis.review.to_html`,
  :mod:`~cpuidkit.analysis.review.to_json` and :func:`render`: the formats.
"""

from __future__ import annotations

from cpuidkit.analysis.review.document import Review, Section
from cpuidkit.analysis.review.engine import review
from cpuidkit.analysis.review.notes import CONDITIONS, REVIEW_CLASSES, changing_behaviours, review_class
from cpuidkit.analysis.review.render import FORMATS, render
from cpuidkit.analysis.review.to_html import render_html, render_html_fragment
from cpuidkit.analysis.review.to_json import render_json
from cpuidkit.analysis.review.to_markdown import render_markdown

__all__ = [
    "Review",
    "Section",
    "review",
    "render_markdown",
    "render_html",
    "render_html_fragment",
    "render_json",
    "render",
    "FORMATS",
    "CONDITIONS",
    "REVIEW_CLASSES",
    "review_class",
    "changing_behaviours",
]
