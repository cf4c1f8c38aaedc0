"""Every construct of LANGUAGE.md parses (and checks) into the expected AST and IR."""

from __future__ import annotations

import pytest
from programs import EVERYTHING

import tc
from tc.ir import nodes as ir
from tc.ir.types import ScalarType
from tc.lang import ast
from tc.lang.builtins import BUILTINS, MATH_BUILTINS
from tc.lang.frontend import check_text
from tc.lang.parser import parse


def sx(e: ast.Expr) -> str:
    """An s-expression of an AST expression, written independently of tc's printers."""
    if isinstance(e, ast.IntLit):
        return f"{e.value}"
    if isinstance(e, ast.FloatLit):
        return f"{e.value!r}f"
    if isinstance(e, ast.Name):
        return e.name
    if isinstance(e, ast.Call):
        return "(" + " ".join(["call", e.func.name, *map(sx, e.args)]) + ")"
    if isinstance(e, ast.Cast):
        return "(" + " ".join(["cast", e.type_name.name, *map(sx, e.args)]) + ")"
    if isinstance(e, ast.Unary):
        return f"({e.op} {sx(e.operand)})"
    if isinstance(e, ast.Binary):
        return f"({e.op} {sx(e.lhs)} {sx(e.rhs)})"
    if isinstance(e, ast.Select):
        return f"(? {sx(e.cond)} {sx(e.if_true)} {sx(e.if_false)})"
    raise AssertionError(type(e))


def rhs_of(expr: str) -> str:
    """The s-expression of ``expr`` parsed as the right-hand side of a statement."""
    program = parse(f"def f() -> () {{ z = {expr} }}")
    return sx(program.definitions[0].statements[0].rhs)


def one_def(text: str) -> ast.Definition:
    program = parse(text)
    assert len(program.definitions) == 1
    return program.definitions[0]


# -- programs and definitions ------------------------------------------------------------




def test_everything_parses_and_checks() -> None:
    checked = check_text(EVERYTHING)
    assert list(checked.functions) == ["everything", "second"]
    fn = checked.functions["everything"]
    assert [t.name for t in fn.inputs] == ["A", "B", "alpha", "idx", "d", "mask"]
    assert [t.name for t in fn.outputs] == ["C", "s", "O", "P"]
    assert [t.name for t in fn.temps] == ["t"]
    assert [st.tensor for st in fn.stages] == ["C", "C", "s", "t", "O", "O", "P", "P"]


def test_several_definitions_are_independent_entry_points() -> None:
    text = """
    def fwd(float(N) X) -> (Y) { Y(i) = X(i) * 2.0 }
    def bwd(float(N) X, float(N) dY) -> (dX) { dX(i) = dY(i) * 2.0 }
    def third(float(N) X) -> (Y) { Y(i) = X(i) }
    """
    T = tc.define(text)
    assert T.entry_points == ("fwd", "bwd", "third")
    assert [len(T[n].ir.inputs) for n in T.entry_points] == [1, 2, 1]


def test_a_text_without_definitions_parses_but_is_rejected() -> None:
    # The grammar allows it (the parser is a building block); tc.define does not (issue
    # 12: a unit with no entry point used to be accepted silently).
    assert parse("").definitions == ()
    assert parse("  # only a comment\n\n").definitions == ()
    with pytest.raises(tc.TcSyntaxError, match="no definition"):
        tc.define("# nothing\n")


def test_parameters_dims_and_results() -> None:
    d = one_def("def f(float(B, 3, H) img, float alpha) -> (float(B) y, z) { y(b) = 1.0 }")
    img, alpha = d.params
    assert (img.type_name.name, img.name.name) == ("float", "img")
    assert [(x.name, x.value) for x in img.dims] == [("B", None), (None, 3), ("H", None)]
    assert alpha.dims == () and alpha.name.name == "alpha"
    y, z = d.results
    assert y.type_name.name == "float" and [x.name for x in y.dims] == ["B"]
    assert z.type_name is None and z.dims == () and z.name.name == "z"


def test_typed_and_untyped_results_get_types_and_shapes() -> None:
    fn = check_text("""
    def f(int16(M, N) A) -> (int64(M, N) typed, untyped) {
        typed(i, j) = A(i, j)
        untyped(i, j) = A(i, j)
    }""").functions["f"]
    typed, untyped = fn.outputs
    assert typed.dtype is ScalarType.INT64 and untyped.dtype is ScalarType.INT16
    assert [str(s) for s in typed.shape] == ["M", "N"] == [str(s) for s in untyped.shape]


def test_scalar_parameters_and_scalar_outputs() -> None:
    fn = check_text("""
    def f(float(N) X, float alpha) -> (s, float m) {
        s +=! X(i) * alpha
        m max=! X(i)
    }""").functions["f"]
    assert fn.inputs[1].rank == 0
    assert [t.rank for t in fn.outputs] == [0, 0]
    assert fn.stages[0].lhs == () and fn.stages[0].op == "+" and fn.stages[0].init
    assert [d.name for d in fn.stages[0].reduction_dims] == ["i"]


TYPES = {
    "bool": ScalarType.BOOL,
    "int8": ScalarType.INT8,
    "int16": ScalarType.INT16,
    "int32": ScalarType.INT32,
    "int64": ScalarType.INT64,
    "uint8": ScalarType.UINT8,
    "uint16": ScalarType.UINT16,
    "uint32": ScalarType.UINT32,
    "uint64": ScalarType.UINT64,
    "float16": ScalarType.FLOAT16,
    "bfloat16": ScalarType.BFLOAT16,
    "float32": ScalarType.FLOAT32,
    "float64": ScalarType.FLOAT64,
    "float": ScalarType.FLOAT32,
    "double": ScalarType.FLOAT64,
    "half": ScalarType.FLOAT16,
}


@pytest.mark.parametrize("spelling", sorted(TYPES))
def test_every_scalar_type_and_alias(spelling: str) -> None:
    want = TYPES[spelling]
    fn = check_text(f"""
    def f({spelling}(N) A, {spelling} a) -> ({spelling}(N) B, C) {{
        B(i) = A(i)
        C(i) = {spelling}(i) where i in 0:N
    }}""").functions["f"]
    assert [t.dtype for t in fn.inputs + fn.outputs] == [want] * 4
    cast = fn.stages[1].rhs
    assert isinstance(cast, ir.Cast) and cast.type is want


@pytest.mark.parametrize(
    ("op", "stage_op", "init"),
    [
        ("+=!", "+", True),
        ("*=!", "*", True),
        ("min=!", "min", True),
        ("max=!", "max", True),
        ("+=", "+", False),
        ("*=", "*", False),
        ("min=", "min", False),
        ("max=", "max", False),
    ],
)
def test_every_reduction_operator(op: str, stage_op: str, init: bool) -> None:
    fn = check_text(f"""
    def f(float(N, K) A) -> (C) {{
        C(n) = 1.0 where n in 0:N
        C(n) {op} A(n, k)
    }}""").functions["f"]
    st = fn.stages[1]
    assert (st.op, st.init) == (stage_op, init)
    assert [d.name for d in st.reduction_dims] == ["k"]


def test_plain_assignment_and_bang_without_reduction_index() -> None:
    fn = check_text("""
    def f(float(N) A) -> (C, D) {
        C(n) = A(n)
        D(n) +=! A(n)
    }""").functions["f"]
    assert [(st.op, st.init) for st in fn.stages] == [(None, False), (None, False)]


def test_operators_need_no_spaces_and_statements_no_separator() -> None:
    fn = check_text("def f(float(N,K) A)->(C,D){C(n)+=!A(n,k) D(n)max=!A(n,k)C(n)min=D(n)}")
    fn = fn.functions["f"]
    assert [(st.tensor, st.op, st.init) for st in fn.stages] == [
        ("C", "+", True), ("D", "max", True), ("C", "min", False)]


# -- where clauses --------------------------------------------------------------------


def test_where_clauses() -> None:
    d = one_def("""
    def f(float(N) I, float(K) W) -> (O) {
        O(i) +=! W(k) * y where k in 0:K, exists I(i + k), y = 2.0, j in 1 : N - 1
    }""")
    rng, ex, let, rng2 = d.statements[0].clauses
    assert isinstance(rng, ast.RangeClause) and rng.index.name == "k"
    assert (sx(rng.lo), sx(rng.hi)) == ("0", "K")
    assert isinstance(ex, ast.ExistsClause) and sx(ex.expr) == "(call I (+ i k))"
    assert isinstance(let, ast.LetClause) and let.name.name == "y" and sx(let.expr) == "2.0f"
    assert isinstance(rng2, ast.RangeClause) and sx(rng2.hi) == "(- N 1)"


def test_range_bounds_may_use_sizes_min_max_and_arithmetic() -> None:
    fn = check_text("""
    def f(float(N) A) -> (C) {
        C(i) = A(i) where i in max(0, 1) : min(N, 2 * N - N) / 1
    }""").functions["f"]
    (dim,) = fn.stages[0].domain
    assert (dim.lo.evaluate({"N": 5}), dim.hi.evaluate({"N": 5})) == (1, 5)


def test_let_clauses_see_earlier_lets() -> None:
    fn = check_text("""
    def f(float(N) A) -> (C) { C(i) = b where a = A(i) * 2.0, b = a + 1.0 }
    """).functions["f"]
    rhs = fn.stages[0].rhs
    assert isinstance(rhs, ir.Let) and rhs.name == "a"
    assert isinstance(rhs.body, ir.Let) and rhs.body.name == "b"


# -- expressions ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("a + b * c", "(+ a (* b c))"),
        ("a * b + c", "(+ (* a b) c)"),
        ("a - b - c", "(- (- a b) c)"),
        ("a / b / c", "(/ (/ a b) c)"),
        ("a + b * c - d / e % f", "(- (+ a (* b c)) (% (/ d e) f))"),
        ("-a * b", "(* (- a) b)"),
        ("a * -b", "(* a (- b))"),
        ("a - -b", "(- a (- b))"),
        ("--a", "(- (- a))"),
        ("!!c", "(! (! c))"),
        ("!a && b", "(&& (! a) b)"),
        ("a || b && c", "(|| a (&& b c))"),
        ("a && b || c", "(|| (&& a b) c)"),
        ("a < b + 1 && c >= d || !e", "(|| (&& (< a (+ b 1)) (>= c d)) (! e))"),
        ("a == b && c != d", "(&& (== a b) (!= c d))"),
        ("a <= b || a > b", "(|| (<= a b) (> a b))"),
        ("a ? b : c", "(? a b c)"),
        ("a ? b : c ? d : e", "(? a b (? c d e))"),
        ("a ? b ? c : d : e", "(? a (? b c d) e)"),
        ("(a ? b : c) ? d : e", "(? (? a b c) d e)"),
        ("a || b ? c + 1 : d * 2", "(? (|| a b) (+ c 1) (* d 2))"),
        ("(a + b) * c", "(* (+ a b) c)"),
        ("((a))", "a"),
        ("min(a, b) + max(a, b)", "(+ (call min a b) (call max a b))"),
        ("fma(a, b, c)", "(call fma a b c)"),
        ("A(i, j + 1, k * 2)", "(call A i (+ j 1) (* k 2))"),
        ("float(i) + int8(j) + double(k)", "(+ (+ (cast float i) (cast int8 j)) (cast double k))"),
        ("half(x) * bfloat16(y)", "(* (cast half x) (cast bfloat16 y))"),
    ],
)
def test_expression_precedence_and_associativity(text: str, tree: str) -> None:
    assert rhs_of(text) == tree


@pytest.mark.parametrize(
    ("text", "value", "is_float"),
    [
        ("1", 1, False),
        ("0", 0, False),
        ("2147483647", 2147483647, False),
        ("1.0", 1.0, True),
        ("1.", 1.0, True),
        (".5", 0.5, True),
        ("1e-3", 1e-3, True),
        ("2.5E+2", 250.0, True),
        ("3e2", 300.0, True),
        ("0.125e1", 1.25, True),
    ],
)
def test_literals(text: str, value: float, is_float: bool) -> None:
    e = parse(f"def f() -> () {{ z = {text} }}").definitions[0].statements[0].rhs
    assert isinstance(e, ast.FloatLit if is_float else ast.IntLit)
    assert e.value == value


def test_literal_types() -> None:
    fn = check_text("def f() -> (a, b, c) { a = 1\n b = 1.5\n c = 3000000000 }")
    a, b, c = fn.functions["f"].outputs
    assert (a.dtype, b.dtype, c.dtype) == (ScalarType.INT32, ScalarType.FLOAT32, ScalarType.INT64)


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_every_builtin(name: str) -> None:
    n = BUILTINS[name]
    args = ", ".join(["A(i)"] * n)
    fn = check_text(f"def f(float(N) A) -> (C) {{ C(i) = {name}({args}) }}").functions["f"]
    rhs = fn.stages[0].rhs
    if name in MATH_BUILTINS:
        assert isinstance(rhs, ir.Call) and rhs.fn == name and len(rhs.args) == n
    else:
        assert isinstance(rhs, ir.Binary) and rhs.op == name
    assert rhs.type is ScalarType.FLOAT32


def test_the_builtin_list_is_the_documented_one() -> None:
    documented = """exp exp2 exp10 expm1 log log2 log10 log1p sqrt rsqrt cbrt rcbrt sin cos tan
        asin acos atan atan2 sinh cosh tanh asinh acosh atanh erf erfc erfinv erfcinv
        lgamma tgamma fabs floor ceil round trunc fmax fmin fmod fdim hypot pow
        copysign fma sigmoid min max cospi sinpi cyl_bessel_i0 cyl_bessel_i1 erfcx fdivide
        j0 j1 y0 y1 logb nextafter norm3d norm4d rnorm3d rnorm4d normcdf normcdfinv
        remainder rhypot""".split()
    assert sorted(BUILTINS) == sorted(documented)


def test_math_builtins_on_integers_and_doubles() -> None:
    fn = check_text("""
    def f(int32(N) A, double(N) D, half(N) H) -> (x, y, z, w) {
        x(i) = sqrt(A(i))
        y(i) = pow(D(i), 2)
        z(i) = exp(H(i))
        w(i) = max(A(i), 3)
    }""").functions["f"]
    assert [t.dtype for t in fn.outputs] == [
        ScalarType.FLOAT32, ScalarType.FLOAT64, ScalarType.FLOAT16, ScalarType.INT32]


def test_sizes_and_indices_as_values() -> None:
    fn = check_text("def f(float(N, D) X) -> (m) { m(n) +=! X(n, d) / D + n }").functions["f"]
    names = {(v.name, v.kind) for v in ir.walk(fn.stages[0].rhs) if isinstance(v, ir.Var)}
    assert names == {("D", "size"), ("d", "index"), ("n", "index")}


def test_comments_and_free_white_space() -> None:
    text = (
        "# leading comment\n"
        "def f(float(N) A # a comment inside the parameters\n"
        "     ) -> (C) {   # and after the brace\n"
        "\tC(i)\n\n   =   A(i)   # comment\n"
        "} # trailing comment without a newline"
    )
    d = one_def(text)
    assert d.name.name == "f" and len(d.statements) == 1
    check_text(text)
    assert one_def("def f(float(N) A) -> (C) { C(i) = A(i) # x }\n}").name.name == "f"


def test_keywords_are_not_prefixes_of_names() -> None:
    d = one_def("def f(float(N) index, float(N) define, float(N) whereas) -> (existsx) {"
                " existsx(inp) = index(inp) + define(inp) + whereas(inp) + floaty + float3"
                " where floaty = 1.0, float3 = 2.0 }")
    assert [p.name.name for p in d.params] == ["index", "define", "whereas"]
    assert d.statements[0].indices[0].name == "inp"


def test_spans_point_at_the_tokens() -> None:
    text = "def f(float(N) A) -> (C) {\n    C(i) +=! A(i) * 2.0\n}"
    st = one_def(text).statements[0]
    assert (st.tensor.span.line, st.tensor.span.column) == (2, 5)
    assert (st.op_span.line, st.op_span.column) == (2, 10)
    assert isinstance(st.rhs, ast.Binary)
    assert (st.rhs.op_span.line, st.rhs.op_span.column) == (2, 19)
    assert (st.rhs.lhs.span.line, st.rhs.lhs.span.column) == (2, 14)


@pytest.mark.parametrize(
    "text",
    [
        "def f(float(N) A) -> (C) { C(i) = A(i) }",
        "def f(float(N) A) -> (C) {\r\n  C(i) = A(i)\r\n}\r\n",
        "def f(float(N) A)\t->\t(C)\t{\tC(i)\t=\tA(i)\t}",
        "\n\n\ndef f(float(N) A) -> (C) { C(i) = A(i) }\n\n",
    ],
)
def test_line_endings_and_tabs(text: str) -> None:
    assert list(check_text(text).functions) == ["f"]


def test_definition_without_parameters_or_results_parses() -> None:
    d = one_def("def f() -> () { }")
    assert d.params == () and d.results == () and d.statements == ()
