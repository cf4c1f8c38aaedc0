"""The front end as one call: TC text to checked, verified IR functions."""

from __future__ import annotations

from dataclasses import dataclass

from tc.errors import TcError, TcInternalError, TcSyntaxError
from tc.ir.nodes import Function
from tc.ir.verify import verify
from tc.lang import ast
from tc.lang.parser import parse
from tc.lang.sema import check_program


@dataclass(frozen=True)
class CheckedProgram:
    """A parsed and checked TC text: its AST and one IR function per definition."""

    program: ast.Program
    functions: dict[str, Function]

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
        functions = check_program(program)
        for fn in functions.values():
            verify(fn)
        return CheckedProgram(program, functions)
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
