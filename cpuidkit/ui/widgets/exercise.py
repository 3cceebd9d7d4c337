"""An exercise answered on the page: a box holding the answer as Python, a button, the checker's feedback.

For a notebook shown with Voilà (code cells hidden), where ``answer = None`` in a code cell cannot be
edited: the box shows the answer as code to edit.  The text is read with :func:`ast.literal_eval`
(numbers, text, tuples, lists, sets, dicts: never a call), so nothing the reader types is run.
"""

from __future__ import annotations

import ast
import html
from collections.abc import Callable

import ipywidgets as W

from cpuidkit.ui._theme import VERDICT_COLOURS
from cpuidkit.ui.exercises import Feedback

MAX_ANSWER_CHARS = 2000  # an answer is a literal of a few lines; longer text is refused before it is parsed
_MARKS = {True: "✅ Right.", False: "❌ Not yet.", None: "✏️ Not answered yet."}


def read_answer(text: str) -> tuple[object, str | None]:
    """``(value, None)`` for the Python literal in ``text`` (empty text: ``None``), or ``(None, why not)``."""
    text = text.strip()
    if not text:
        return None, None
    if len(text) > MAX_ANSWER_CHARS:
        return None, f"the answer is {len(text)} characters long; an answer fits in {MAX_ANSWER_CHARS}"
    try:
        return ast.literal_eval(text), None
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as e:
        return None, (
            f"that is not a Python value ({type(e).__name__}); write text in quotes, e.g. "
            '{"osxsave"} for a set of names, "EINVAL" for an errno, 0xe7 for a number'
        )


class ExerciseBox(W.VBox):
    """``answer = [box]``, a **check** button and the feedback of ``checker`` (a ``check_…`` function of
    :mod:`cpuidkit.ui.exercises`).  ``answer``: a value to start from (the notebook's ``answer``);
    ``example``: the text the box starts with when ``answer`` is None."""

    def __init__(self, checker: Callable[[object], Feedback], answer: object = None, example: str = ""):
        if not callable(checker):
            raise TypeError(f"checker must be a check_… function, got {type(checker).__name__}")
        self.checker = checker
        self.code = W.Textarea(
            value=repr(answer) if answer is not None else example,
            placeholder="your answer, as Python",
            layout=W.Layout(width="520px", height="3.2em"),
        )
        self.code.add_class("cpuidkit-exercise-code")
        self.button = W.Button(description="check", icon="check", button_style="info")
        self.button.add_class("cpuidkit-exercise-check")
        self.feedback = W.HTML()
        self.feedback.add_class("cpuidkit-exercise-feedback")
        self.button.on_click(lambda _b: self.check())
        super().__init__([W.HBox([W.HTML("<code>answer =</code>&nbsp;"), self.code, self.button]), self.feedback])
        self.add_class("cpuidkit-exercise")
        if answer is None:
            self._show(None, "edit the answer in the box and press check.")
        else:
            self.check()

    def check(self) -> Feedback:
        """Read the box, ask the checker, show what it says (a checker never raises on an answer)."""
        value, problem = read_answer(self.code.value)
        if problem is not None:
            fb = Feedback(False, problem + ".")
        elif value is None:
            fb = Feedback(None, "type an answer in the box and press check.")
        else:
            fb = self.checker(value)
        self._show(fb.ok, fb.message)
        return fb

    def _show(self, ok: bool | None, message: str) -> None:
        colour = {True: VERDICT_COLOURS["accepted"], False: VERDICT_COLOURS["rejected"], None: "#555"}[ok]
        self.feedback.value = f'<span style="color:{colour}"><b>{_MARKS[ok]}</b></span> {html.escape(message)}'
