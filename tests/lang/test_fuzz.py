"""Fuzzing the front end: random token sequences, random mutations of valid programs and
random well-formed programs only ever raise TcError (never a TcInternalError, never a
raw Python exception), with a position for errors about the text; what the front end
accepts runs on the reference back end raising nothing but TcError.

A few hundred examples by default; ``pytest --fuzz-long`` (``make fuzz``) runs thousands.
"""

from __future__ import annotations

import math
import random
import re
import warnings

import pytest
import torch
from hypothesis import HealthCheck, currently_in_test_context, event, given, note, settings
from hypothesis import strategies as st
from programs import OWN_PROGRAMS

import tc
from tc.arguments import TORCH_DTYPES
from tc.catalogue import KERNELS
from tc.errors import TcError, TcInternalError, TcWarning
from tc.ir import nodes as ir
from tc.lang.builtins import BUILTINS

# -- the corpus and the vocabulary ------------------------------------------------------------

CORPUS = sorted({k.tc for k in KERNELS.values()}) + OWN_PROGRAMS

TOKEN = re.compile(
    r"\s+|#[^\n]*|[A-Za-z_]\w*|\d*\.\d+(?:[eE][+-]?\d+)?|\d+\.?(?:[eE][+-]?\d+)?"
    r"|\+=!|\*=!|min=!|max=!|\+=|\*=|<=|>=|==|!=|&&|\|\||->|.",
    re.S,
)

VOCAB = sorted(
    set("def where in exists -> ( ) { } , : ? ! = += *= min= max= +=! *=! min=! max=!".split())
    | set("+ - * / % < <= > >= == != && ||".split())
    | set("bool int8 int16 int32 int64 uint8 uint16 uint32 uint64 float16 bfloat16 float32 "
          "float64 float double half".split())
    | set(BUILTINS)
    | set("A B C D X Y O W I s t x y i j k m n N M K H 0 1 2 3 10 1.0 .5 2.5E+2 1e-3".split())
    | {"#", "# comment\n", "\n", "\t"}
)

CHARS = list("abijkNMABC_0123456789.()+-*/%<>=!?:,{}#\n \t$@\"'\\é")

MAX_WORK = 50_000  # elements: mutated literals can make huge domains; those are skipped


def parts_of(text: str) -> list[str]:
    parts = TOKEN.findall(text)
    assert "".join(parts) == text
    return parts


def check_text_error(err: TcError | TcWarning, text: str) -> None:
    """An error (or warning) about a text: positioned inside (or just after) it."""
    assert not isinstance(err, TcInternalError), f"{err}\n--- text:\n{text}"
    assert err.line is not None and err.column is not None, f"{err!r}\n--- text:\n{text}"
    assert 1 <= err.line <= text.count("\n") + 2, (err.line, text)
    assert err.column >= 1
    str(err)  # the rendering never fails


def define_or_error(text: str):
    """``tc.define(text)`` on the reference back end, or None if it raised a TcError."""
    if currently_in_test_context():
        note(text)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            T = tc.define(text, backend="reference")
    except TcError as err:
        check_text_error(err, text)
        if currently_in_test_context():
            event(type(err).__name__)
        return None
    for w in caught:
        # A warning is about the text, positioned like an error (LANGUAGE.md section 5).
        assert issubclass(w.category, TcWarning), w
        check_text_error(w.message, text)
    if currently_in_test_context():
        event("accepted" if not caught else "accepted with a warning")
    return T


# -- running what the front end accepts ----------------------------------------------------------


def _inputs(fn: ir.Function, sizes_pool: list[int], gen: torch.Generator):
    sizes: dict[str, int] = {}
    tensors = []
    k = 0
    for decl in fn.inputs:
        shape = []
        for s in decl.shape:
            if s.is_const:
                shape.append(s.const)
            else:
                (name,) = s.symbols()
                if name not in sizes:
                    sizes[name] = sizes_pool[k % len(sizes_pool)]
                    k += 1
                shape.append(sizes[name])
        if math.prod(shape) > MAX_WORK or any(n < 0 for n in shape):
            return None
        dtype = TORCH_DTYPES[decl.dtype]
        if decl.dtype.is_float:
            t = torch.randn(shape, generator=gen).to(dtype)
        elif decl.dtype.is_bool:
            t = torch.rand(shape, generator=gen) > 0.5
        else:
            low = 0 if not decl.dtype.is_signed else -1
            t = torch.randint(low, 4, shape, generator=gen).to(dtype)
        tensors.append(t)
    return sizes, tensors


def _work(fn: ir.Function, sizes: dict[str, int]) -> int:
    total = 0
    for stage in fn.stages:
        n = 1
        for d in stage.domain:
            n *= max(0, d.hi.evaluate(sizes) - d.lo.evaluate(sizes))
        total += n
    for t in fn.outputs + fn.temps:
        total += math.prod(max(0, s.evaluate(sizes)) for s in t.shape)
    return total


def run_everything(T, sizes_pool: list[int], seed: int) -> None:
    """Call every entry point on small random inputs: only TcError may come out."""
    gen = torch.Generator().manual_seed(seed)
    for name in T.entry_points:
        fn = T[name]
        made = _inputs(fn.ir, sizes_pool, gen)
        if made is None:
            continue
        sizes, tensors = made
        try:
            if _work(fn.ir, sizes) > MAX_WORK:
                continue
        except KeyError:
            pass  # a size no input binds cannot happen; the call below would say so
        try:
            outs = fn(*tensors)
        except TcError as err:
            assert not isinstance(err, TcInternalError), str(err)
            continue
        outs = outs if isinstance(outs, tuple) else (outs,)
        assert len(outs) == len(fn.ir.outputs)
        for out, decl in zip(outs, fn.ir.outputs, strict=True):
            assert out.dtype == TORCH_DTYPES[decl.dtype]
            assert tuple(out.shape) == tuple(s.evaluate(sizes) for s in decl.shape)


SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck), derandomize=False)

# -- the fuzz tests ------------------------------------------------------------------------------


def test_random_token_sequences(fuzz_examples) -> None:
    @settings(max_examples=fuzz_examples(300), **SETTINGS)
    @given(st.lists(st.sampled_from(VOCAB), max_size=40), st.sampled_from([" ", "", "\n"]))
    def check(tokens: list[str], sep: str) -> None:
        define_or_error(sep.join(tokens))

    check()


def test_random_token_sequences_after_a_valid_prefix(fuzz_examples) -> None:
    prefix = "def f(float(N, M) A, float(M) B, int32(N) x, float s) -> (C, D) {\n"

    @settings(max_examples=fuzz_examples(200), **SETTINGS)
    @given(st.lists(st.sampled_from(VOCAB), max_size=30), st.booleans())
    def check(tokens: list[str], close: bool) -> None:
        define_or_error(prefix + " ".join(tokens) + ("\n}" if close else ""))

    check()


_mutation = st.tuples(
    st.sampled_from(["delete", "duplicate", "swap", "replace", "char-delete", "char-duplicate",
                     "char-replace", "char-insert"]),
    st.integers(0, 10**6),
    st.integers(0, 10**6),
    st.sampled_from(VOCAB),
    st.sampled_from(CHARS),
)


def mutate(text: str, mutations) -> str:
    for kind, p, q, token, char in mutations:
        if kind.startswith("char-"):
            chars = list(text)
            if not chars:
                chars = [char]
            i = p % len(chars)
            if kind == "char-delete":
                del chars[i]
            elif kind == "char-duplicate":
                chars.insert(i, chars[i])
            elif kind == "char-replace":
                chars[i] = char
            else:
                chars.insert(i, char)
            text = "".join(chars)
            continue
        parts = parts_of(text) or [token]
        words = [k for k, w in enumerate(parts) if not w.isspace()] or [0]
        i, j = words[p % len(words)], words[q % len(words)]
        if kind == "delete":
            del parts[i]
        elif kind == "duplicate":
            parts.insert(i, parts[i] + " ")
        elif kind == "swap":
            parts[i], parts[j] = parts[j], parts[i]
        else:
            parts[i] = token
        text = "".join(parts)
    return text


def test_mutations_of_valid_programs(fuzz_examples) -> None:
    @settings(max_examples=fuzz_examples(800), **SETTINGS)
    @given(st.sampled_from(CORPUS), st.lists(_mutation, min_size=1, max_size=4),
           st.lists(st.sampled_from([1, 2, 3, 5]), min_size=1, max_size=4), st.integers(0, 99))
    def check(program: str, mutations, sizes_pool: list[int], seed: int) -> None:
        T = define_or_error(mutate(program, mutations))
        if T is not None:
            run_everything(T, sizes_pool, seed)

    check()


def test_the_corpus_is_valid_and_runs() -> None:
    for program in CORPUS:
        T = tc.define(program, backend="reference")
        run_everything(T, [3, 5, 2, 1], 0)


# -- random well-formed programs ---------------------------------------------------------------
# Written with a seeded random.Random (hypothesis draws the seed): nested hypothesis
# strategies are an order of magnitude slower, and the failing text is noted anyway.

_TYPES = ["float", "float", "double", "half", "bfloat16", "int32", "int8", "uint8", "int64",
          "bool"]
_ANCHORS = {0: ["A(i, j)", "B(j)", "s"], 1: ["A(i, j)", "x(i)", "A(i, 0)"],
            2: ["A(i, j)", "A(j, i)", "A(i, 2 * j)", "A(N - 1 - i, j) * B(j)"]}


class ProgramGenerator:
    """Random programs over ``A(N, M), B(M), x(N) (int32), s`` that often pass the checks."""

    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)

    def subscript(self) -> str:
        r = self.r
        i = r.choice(["i", "i", "j", "j", "k"])
        return r.choice([i, i, f"{i} + {r.randint(0, 2)}", f"{i} - 1",
                         f"2 * {i} + {r.choice('ijk')}", f"N - 1 - {i}", f"{i} / 2", f"x({i})",
                         "0", f"{i} % 2"])

    def expr(self, depth: int = 0, lets: int = 0) -> str:
        r = self.r
        if depth >= 3 or r.randint(0, 3) == 0:
            return r.choice([
                f"A({self.subscript()}, {self.subscript()})", f"B({self.subscript()})",
                f"x({self.subscript()})",
                r.choice(["s", "i", "j", "N", "1", "2.5", ".5", "0"] +
                         [f"y{k}" for k in range(lets)]),
            ])
        kind = r.randint(0, 5)

        def sub() -> str:
            return self.expr(depth + 1, lets)

        if kind == 0:
            return f"({sub()} {r.choice('+-*/%+-*+*')} {sub()})"
        if kind == 1:
            cmp = r.choice("< <= > >= == !=".split())
            return (f"({sub()} {cmp} {sub()} {r.choice(['&&', '||'])} !({sub()} != 0) ? "
                    f"{sub()} : {sub()})")
        if kind == 2:
            return f"({sub()} < {sub()} ? {sub()} : {sub()})"
        if kind == 3:
            fn = r.choice(sorted(BUILTINS))
            return f"{fn}({', '.join(sub() for _ in range(BUILTINS[fn]))})"
        if kind == 4:
            return f"{r.choice(_TYPES)}({sub()})"
        return f"-{sub()}"

    def statement(self, tensor: str, rank: int, first: bool) -> str:
        r = self.r
        lhs = tensor + (f"({', '.join('ijk'[:rank])})" if rank else "")
        op = r.choice(["=", "+=!", "*=!", "min=!", "max=!"] +
                      ([] if first else ["+=", "max=", "*="]))
        clauses = []
        if r.randint(0, 2) == 0:
            clauses.append(f"{r.choice('ijk')} in {r.randint(0, 1)}:"
                           f"{r.choice(['N', 'M', '3', 'N - 1'])}")
        if r.randint(0, 4) == 0:
            clauses.append(f"exists B({self.subscript()})")
        lets = r.randint(0, 2)
        clauses += [f"y{k} = {self.expr(2)}" for k in range(lets)]
        rhs = self.expr(0, lets)
        if r.randint(0, 3) > 0:
            rhs = f"{r.choice(_ANCHORS[rank])} {r.choice('+*-')} {rhs}"
        return f"    {lhs} {op} {rhs}" + (" where " + ", ".join(clauses) if clauses else "")

    def program(self) -> str:
        r = self.r
        ta, tb = r.choice(_TYPES), r.choice(_TYPES)
        writes = r.choice([["C"], ["C", "C"], ["T", "C"], ["C", "D", "C"], ["T", "C", "D", "T"]])
        typed = "D" not in writes and r.random() < 0.5
        ranks = {"C": 1 if typed else r.choice([0, 1, 2, 2]), "D": r.choice([0, 1, 2]),
                 "T": r.choice([1, 2])}
        results = "C, D" if "D" in writes else ("float(N) C" if typed else "C")
        body = "\n".join(self.statement(t, ranks[t], t not in writes[:k])
                         for k, t in enumerate(writes))
        return (f"def f({ta}(N, M) A, {tb}(M) B, int32(N) x, float s) -> ({results}) {{\n"
                f"{body}\n}}")


def test_random_well_formed_programs(fuzz_examples) -> None:
    @settings(max_examples=fuzz_examples(800), **SETTINGS)
    @given(st.integers(0, 2**32), st.sampled_from([[1, 3], [3, 5], [5, 1], [2, 2]]))
    def check(seed: int, sizes_pool: list[int]) -> None:
        T = define_or_error(ProgramGenerator(seed).program())
        if T is not None:
            run_everything(T, sizes_pool, seed % 100)

    check()


@pytest.mark.parametrize("text", [
    "def f(float(N) A) -> (C) { C(i) = A(i) }\x00",
    "def f(float(N) A) -> (C) { C(i) = A(i) }\ufeff",
    "\ud800",
    "def f(float(N) A) -> (C) { C(i) = A(i) }\r",
    "def f(float(N) A) -> (C) {\x0c C(i) = A(i) \x0b }",
    "}" * 1000,
    "def " * 500,
    "(" * 100_000,
])
def test_odd_texts(text: str) -> None:
    define_or_error(text)
