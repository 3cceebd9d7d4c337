"""Filling an ``ipywidgets.Output`` without capturing: its ``outputs`` state is set from here.

``with out: display(x)`` while a cell runs can leave Voilà at "Executing n of m" for good: Voilà runs cells
through nbclient, whose stand-in for an Output widget answers a capture with a message on the shell socket
it is polling for the cell's reply, and the reply can go unnoticed (4 of 5 loads of notebook 09 on voila
0.5.13 with nbclient 0.11; upstream voila-dashboards/voila#1428, jupyter/jupyter_client#1010).  Setting the
widget's state never involves the front end's capture, so it draws the same in JupyterLab and in Voilà.

``Output.append_display_data`` is not enough: it puts a PNG's ``bytes`` into the state, where they travel
as a binary buffer and the page shows a broken image.  Here binary data is base64 text, as a kernel sends
it in a display_data message.
"""

from __future__ import annotations

import base64


def display_data(obj) -> dict:
    """``obj`` as a display_data output (every representation IPython's formatter gives; binary as base64)."""
    from IPython.core.formatters import format_display_data  # heavy: imported on use

    data, metadata = format_display_data(obj)
    return output("display_data", data, metadata)


def output(kind: str, data: dict, metadata: dict | None = None) -> dict:
    """A display_data output from a mime bundle (binary values as base64 text)."""
    clean = {
        k: base64.b64encode(v).decode("ascii") if isinstance(v, (bytes, bytearray)) else v for k, v in data.items()
    }
    return {"output_type": kind, "data": clean, "metadata": metadata or {}}


def show(out, *objects) -> None:
    """Replace what ``out`` (an ``ipywidgets.Output``) shows with ``objects``, each as ``display()`` would."""
    out.outputs = tuple(display_data(o) for o in objects)
