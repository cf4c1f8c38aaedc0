"""The error hierarchy of tc.

Every error that tc raises on purpose is a :class:`TcError`. Errors about a TC text
carry the 1-based ``line`` and ``column`` of the offending token and show the source
line with a caret under it; errors about call arguments also derive from
``ValueError`` or ``TypeError`` so that generic handlers keep working.
"""

from __future__ import annotations


class TcError(Exception):
    """Base class of every error raised by tc.

    ``line`` and ``column`` are 1-based positions in the TC text when the error is
    about the text, otherwise ``None``.
    """

    kind = "error"

    def __init__(
        self,
        message: str,
        *,
        line: int | None = None,
        column: int | None = None,
        source: str | None = None,
    ) -> None:
        self.message = message
        self.line = line
        self.column = column
        self.source = source
        super().__init__(self._render())

    def _render(self) -> str:
        return _positioned(self.kind, self.message, self.line, self.column, self.source)


def _positioned(kind: str, message: str, line: int | None, column: int | None,
                source: str | None) -> str:
    """``message`` with its position and the source line with a caret under it."""
    if line is None:
        return message
    text = f"{kind}: {message} at line {line}, column {column}"
    if source is not None:
        # Lines end at "\n" only, as the parser counts them (splitlines() would also
        # split at "\r", "\f", ... and show the wrong line).
        lines = source.split("\n")
        if 1 <= line <= len(lines):
            src = lines[line - 1].rstrip("\r").expandtabs(1)
            col = max(1, column or 1)
            text += f"\n    {src}\n    {' ' * (col - 1)}^"
    return text


class TcWarning(UserWarning):
    """A TC text that is valid but probably not what was meant (see docs/language.md section
    5). Positioned and rendered like :class:`TcError`; ``python -m tc check --strict``
    and ``warnings.simplefilter("error", tc.TcWarning)`` turn it into an error.
    """

    kind = "warning"

    def __init__(
        self,
        message: str,
        *,
        line: int | None = None,
        column: int | None = None,
        source: str | None = None,
    ) -> None:
        self.message = message
        self.line = line
        self.column = column
        self.source = source
        super().__init__(_positioned(self.kind, message, line, column, source))


class TcSyntaxError(TcError):
    """The text does not follow the grammar of the TC language."""

    kind = "syntax error"


class TcNameError(TcError):
    """An undefined, duplicated or reserved name."""


class TcTypeError(TcError):
    """A type mismatch, a wrong arity, a non-integer subscript."""


class TcSemanticError(TcError):
    """A statement that is well typed but not meaningful (reductions, writes to inputs)."""


class TcRangeError(TcError):
    """Range inference failed, a range is empty, sizes disagree, or an access is out of bounds."""


class TcArgumentError(TcError, ValueError):
    """A call received a wrong number of arguments, or tensors of wrong sizes or devices."""


class TcArgumentTypeError(TcError, TypeError):
    """A call received an argument of a wrong type or dtype."""


class TcOptionsError(TcError, ValueError):
    """Invalid mapping options or tuner configuration."""


class TcBackendError(TcError, RuntimeError):
    """A back end cannot run here (no device, no compiler) or failed to compile."""


class TcInternalError(TcError, RuntimeError):
    """A bug in tc itself: please report it with the TC text that triggered it."""


class TcGradientError(TcError):
    """A definition cannot be differentiated (the message names the statement)."""
