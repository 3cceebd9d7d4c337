"""``interact``: ipywidgets' ``interact`` for the course, safe in Voilà.

``ipywidgets.interact`` draws its first output by capturing it in an ``Output`` widget (``with out:``) while
the cell runs, which can leave Voilà at "Executing n of m" for good (:mod:`cpuidkit.ui._output` says why).
This ``interact`` collects what the function shows with IPython's ``capture_output`` and sets the ``Output``
widget's state instead: the same picture in JupyterLab and in Voilà.
"""

from __future__ import annotations

from collections.abc import Callable

import ipywidgets as W

from cpuidkit.errors import InputError
from cpuidkit.ui import _inputs, _output


def _control(name: str, spec) -> W.ValueWidget:
    if isinstance(spec, W.ValueWidget):
        if not getattr(spec, "description", None):
            spec.description = name
        return spec
    if isinstance(spec, (list, tuple)) and spec:
        return W.Dropdown(options=list(spec), description=name)
    raise InputError(f"{name}: give a widget or a non-empty list of choices, got {_inputs.kind(spec)}", where=name)


def interact(f: Callable, **controls) -> W.VBox:
    """Call ``f(**values)`` now and whenever a control changes; show what it displays, prints or returns.

    ``controls``: for each argument of ``f``, a value widget (an ``IntSlider``…) or a list of choices (a
    dropdown), as ``ipywidgets.interact`` takes them.  Returns the box (controls, then the output); the
    output widget is ``box.out``."""
    from IPython.utils.capture import capture_output

    if not callable(f):
        raise InputError(f"interact needs a function, got {_inputs.kind(f)}", where="f")
    widgets = {name: _control(name, spec) for name, spec in controls.items()}
    out = W.Output()

    def show(_change=None) -> None:
        with capture_output() as shown:
            result = f(**{name: w.value for name, w in widgets.items()})
        outputs = [
            {"output_type": "stream", "name": n, "text": t}
            for n, t in (("stdout", shown.stdout), ("stderr", shown.stderr))
            if t
        ]
        outputs += [_output.output("display_data", o.data, o.metadata) for o in shown.outputs]
        if result is not None:
            outputs.append(_output.display_data(result))
        out.outputs = tuple(outputs)

    show()
    for w in widgets.values():
        w.observe(show, "value")
    box = W.VBox([*widgets.values(), out])
    box.out = out
    box.add_class("cpuidkit-interact")
    return box
