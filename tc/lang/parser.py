"""TC text to AST: a lark LALR parser with positions, and readable syntax errors."""

from __future__ import annotations

import functools
from importlib import resources

import lark
from lark import Token, Tree

from tc.errors import TcSyntaxError
from tc.ir.span import Span
from tc.lang import ast

# Readable names for the grammar's terminals, used in "expected ..." messages.
_TERMINALS = {
    "NAME": "a name",
    "INT": "an integer",
    "FLOAT": "a number",
    "TYPE": "a type",
    "ASSIGN_OP": "an assignment operator (=, +=!, ...)",
    "CMP_OP": "a comparison",
    "ADD_OP": "'+' or '-'",
    "MUL_OP": "'*', '/' or '%'",
    "MINUS": "'-'",
    "BANG": "'!'",
    "OROR": "'||'",
    "ANDAND": "'&&'",
    "QMARK": "'?'",
    "ARROW": "'->'",
    "EQUIV": "'<=>'",
    "LPAR": "'('",
    "RPAR": "')'",
    "LBRACE": "'{'",
    "RBRACE": "'}'",
    "COMMA": "','",
    "COLON": "':'",
    "EQUAL": "'='",
    "DEF": "'def'",
    "WHERE": "'where'",
    "IN": "'in'",
    "EXISTS": "'exists'",
    "$END": "the end of the text",
}

#: How deeply expressions may nest. Every pass after the parser walks expressions
#: recursively; this bound keeps them all far from Python's recursion limit, so that a
#: text the front end accepts never crashes a later pass.
MAX_EXPR_DEPTH = 256


@functools.lru_cache(maxsize=1)
def _parser() -> lark.Lark:
    grammar = resources.files("tc.lang").joinpath("grammar.lark").read_text()
    return lark.Lark(
        grammar, parser="lalr", propagate_positions=True, maybe_placeholders=True
    )


def parse(source: str) -> ast.Program:
    """Parse a whole TC text; raises :class:`TcSyntaxError` with the position on failure."""
    if not isinstance(source, str):
        raise TcSyntaxError(f"a TC text must be a str, not {type(source).__name__}")
    try:
        tree = _parser().parse(source)
    except lark.exceptions.UnexpectedInput as e:
        raise _syntax_error(e, source) from None
    except lark.exceptions.LarkError as e:  # defensive: any other lark failure
        raise TcSyntaxError(f"cannot parse the text: {e}", source=source) from None
    try:
        defs = tuple(_Builder(source).definition(d) for d in tree.children)
    except RecursionError:
        raise TcSyntaxError("the text is nested too deeply", line=1, column=1,
                            source=source) from None
    return ast.Program(defs, source)


def _describe(token: Token) -> str:
    if token.type == "$END":
        return "end of text"
    return repr(str(token))


def _expected(names: set[str]) -> str:
    readable = sorted({_TERMINALS.get(n, repr(n.lower())) for n in names})
    if not readable:
        return ""
    if len(readable) > 6:
        return ""
    return "; expected " + (readable[0] if len(readable) == 1 else
                            ", ".join(readable[:-1]) + " or " + readable[-1])


def _end_position(source: str) -> tuple[int, int]:
    """Just after the last character that is not white space, so that the message can
    show the line where the text stops (1, 1 for a blank text)."""
    lines = source.rstrip().split("\n")
    return len(lines), len(lines[-1]) + 1


def _syntax_error(e: lark.exceptions.UnexpectedInput, source: str) -> TcSyntaxError:
    line, column = getattr(e, "line", -1), getattr(e, "column", -1)
    if isinstance(e, lark.exceptions.UnexpectedCharacters):
        char = source[e.pos_in_stream] if 0 <= e.pos_in_stream < len(source) else "?"
        msg = f"unexpected character {char!r}"
    elif isinstance(e, lark.exceptions.UnexpectedToken):
        msg = f"unexpected {_describe(e.token)}{_expected(set(e.expected))}"
        if e.token.type == "$END":
            line, column = _end_position(source)
    elif isinstance(e, lark.exceptions.UnexpectedEOF):
        msg = f"unexpected end of text{_expected(set(e.expected))}"
        line, column = _end_position(source)
    else:
        msg = "invalid syntax"
    if line is None or line < 1:
        line, column = _end_position(source)
    return TcSyntaxError(msg, line=line, column=column, source=source)


def _span(node: Tree | Token) -> Span:
    if isinstance(node, Token):
        return Span(node.line, node.column, node.end_line, node.end_column)
    m = node.meta
    return Span(m.line, m.column, m.end_line, m.end_column)


def _ident(tok: Token) -> ast.Ident:
    return ast.Ident(str(tok), _span(tok))


class _Builder:
    """Turns lark's parse tree into AST nodes."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.depth = 0

    def definition(self, t: Tree) -> ast.Definition:
        name, *rest = t.children
        params, results, statements = [], [], []
        arrow = None
        for c in rest:
            if c is None:
                continue
            if isinstance(c, Token):  # ARROW: kept to position "no results"
                arrow = _span(c)
                continue
            if c.data == "param":
                params.append(self.param(c))
            elif c.data in ("typed_result", "bare_result"):
                results.append(self.result(c))
            else:
                statements.append(self.statement(c))
        return ast.Definition(_span(t), _ident(name), tuple(params), tuple(results),
                              tuple(statements), arrow)

    def dims(self, t: Tree | None) -> tuple[ast.DimDecl, ...]:
        if t is None:
            return ()
        out = []
        for d in t.children:
            tok = d.children[0]
            if tok.type == "INT":
                out.append(ast.DimDecl(_span(tok), value=int(tok)))
            else:
                out.append(ast.DimDecl(_span(tok), name=str(tok)))
        return tuple(out)

    def param(self, t: Tree) -> ast.Param:
        type_tok, dims, name = t.children
        return ast.Param(_span(t), _ident(type_tok), self.dims(dims), _ident(name))

    def result(self, t: Tree) -> ast.Result:
        if t.data == "bare_result":
            return ast.Result(_span(t), _ident(t.children[0]))
        type_tok, dims, name = t.children
        return ast.Result(_span(t), _ident(name), _ident(type_tok), self.dims(dims))

    def statement(self, t: Tree) -> ast.Statement:
        lhs, op, rhs, equivalent, where = t.children
        tensor, *indices = [c for c in lhs.children if c is not None]
        clauses = tuple(self.clause(c) for c in where.children) if where is not None else ()
        return ast.Statement(
            _span(t), _ident(tensor), tuple(_ident(i) for i in indices), str(op), _span(op),
            self.expr(rhs), clauses, self.equivalent(equivalent),
        )

    def equivalent(self, t: Tree | None) -> ast.Equivalent | None:
        if t is None:
            return None
        _, name, *args = t.children
        return ast.Equivalent(_span(t), _ident(name),
                              tuple(self.expr(a) for a in args if a is not None))

    def clause(self, t: Tree) -> ast.Clause:
        if t.data == "range_clause":
            idx, lo, hi = t.children
            return ast.RangeClause(_span(t), _ident(idx), self.expr(lo), self.expr(hi))
        if t.data == "exists_clause":
            return ast.ExistsClause(_span(t), self.expr(t.children[0]))
        name, e = t.children
        return ast.LetClause(_span(t), _ident(name), self.expr(e))

    def expr(self, t: Tree | Token) -> ast.Expr:
        self.depth += 1
        try:
            if self.depth > MAX_EXPR_DEPTH:
                span = _span(t)
                raise TcSyntaxError(f"the expression is nested too deeply (more than "
                                    f"{MAX_EXPR_DEPTH} levels)", line=span.line,
                                    column=span.column, source=self.source)
            return self._expr(t)
        finally:
            self.depth -= 1

    def _expr(self, t: Tree | Token) -> ast.Expr:
        kind = t.data
        c = t.children
        span = _span(t)
        if kind == "int_lit":
            return ast.IntLit(span, int(c[0]))
        if kind == "float_lit":
            return ast.FloatLit(span, float(c[0]), str(c[0]))
        if kind == "name":
            return ast.Name(span, str(c[0]))
        if kind == "call":
            args = tuple(self.expr(a) for a in c[1:] if a is not None)
            return ast.Call(span, _ident(c[0]), args)
        if kind == "cast":
            args = tuple(self.expr(a) for a in c[1:] if a is not None)
            return ast.Cast(span, _ident(c[0]), args)
        if kind == "unary":
            return ast.Unary(span, str(c[0]), _span(c[0]), self.expr(c[1]))
        if kind == "binary":
            return ast.Binary(span, str(c[1]), _span(c[1]), self.expr(c[0]), self.expr(c[2]))
        if kind == "select":
            return ast.Select(span, _span(c[1]), self.expr(c[0]), self.expr(c[2]),
                              self.expr(c[3]))
        raise AssertionError(f"unknown parse-tree node {kind}")
