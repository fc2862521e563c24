"""The one error type users see: what is wrong, where (file, line, key), and how to fix it.

The CLI prints an `AlignError` as a short message without a traceback (`--debug` shows it);
anything else that escapes is a bug in align and keeps its traceback.
"""

from __future__ import annotations


class AlignError(Exception):
    """A user-facing error: `problems` are lines like 'recipe.yaml line 4, model.nme: unknown key'."""

    def __init__(self, message: str, problems: list[str] | None = None, hint: str | None = None):
        self.message = message
        self.problems = problems or []
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        lines = [self.message] + [f"  - {p}" for p in self.problems]
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)
