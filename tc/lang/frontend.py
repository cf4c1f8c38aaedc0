"""The front end as one call: TC text to checked, verified IR functions."""

from __future__ import annotations

from dataclasses import dataclass

from tc.errors import TcError, TcInternalError, TcSyntaxError, TcWarning
from tc.ir.nodes import Function
from tc.ir.verify import verify
from tc.lang import ast
from tc.lang.parser import parse
from tc.lang.sema import check_program


@dataclass(frozen=True)
class CheckedProgram:
    """A parsed and checked TC text: its AST, one IR function per definition, and the
    text's warnings (not emitted: :func:`tc.define` and ``python -m tc check`` do)."""

    program: ast.Program
    functions: dict[str, Function]
    warnings: tuple[TcWarning, ...] = ()

    def definition(self, name: str) -> ast.Definition:
        for d in self.program.definitions:
            if d.name.name == name:
                return d
        raise KeyError(name)


def check_text(text: str) -> CheckedProgram:
    """Parse and check ``text``. Any problem with the text raises a positioned TcError.

    An unexpected exception is a bug of tc; it is reported as :class:`TcInternalError`
    rather than leaking a raw exception to the user.
    """
    try:
        program = parse(text)
        warnings: list[TcWarning] = []
        functions = check_program(program, warnings)
        for fn in functions.values():
            verify(fn)
        return CheckedProgram(program, functions, tuple(warnings))
    except TcError:
        raise
    except RecursionError:
        raise TcSyntaxError("the text is nested too deeply", line=1, column=1,
                            source=text) from None
    except Exception as e:  # noqa: BLE001 - converted, never swallowed
        raise TcInternalError(
            f"internal error while checking the TC text ({type(e).__name__}: {e}); "
            "please report it with the text"
        ) from e
