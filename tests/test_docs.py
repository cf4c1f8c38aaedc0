"""Every fenced code block of README.md and docs/*.md is run or checked, so the docs
never rot. The info string after the opening fence says what happens to a block:

=====================  ==================================================================
``python``             run. A document's python blocks run in order in one namespace
                       (later blocks use the names of earlier ones), in a temporary
                       directory, with ``TC_CACHE_DIR`` pointing into it; a
                       ``tc.TcWarning`` is an error there.
``python no-run``      not run (it needs a CUDA GPU, say), only compiled: a syntax error
                       still fails. Keep these few.
``tc``                 a TC text: ``tc.define(text, backend="reference")`` must accept it
                       without any ``tc.TcWarning``.
``tc warning``         must be accepted, with at least one ``tc.TcWarning``.
``tc error [Class]``   ``tc.define`` must raise a ``tc.TcError`` (of ``tc.Class`` when
                       named, e.g. ``tc error TcRangeError``).
``sh`` / ``console``   not run. Each ``python -m tc ...`` command in it must parse with the
                       CLI's own parser, and the TC files and scripts it names must exist.
``text``               not checked (output, grammar sketches).
=====================  ==================================================================

Any other info string, or none, fails the test, so that a typo never skips a block
silently. The harness itself is tested at the end on broken examples.
"""

from __future__ import annotations

import re
import shlex
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

import tc

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^(\s*)(```+)(.*)$")
_KINDS = {"python", "python no-run", "tc", "tc warning", "tc error", "sh", "console", "text"}


@dataclass(frozen=True)
class Block:
    doc: str  # path relative to the repository
    line: int  # 1-based line of the first line of code (after the fence)
    info: str  # the info string, e.g. "tc error TcRangeError"
    code: str

    @property
    def kind(self) -> str:
        words = self.info.split()
        if words[:2] == ["tc", "error"]:
            return "tc error"
        return " ".join(words)

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"


def blocks_of(text: str, doc: str) -> list[Block]:
    """The fenced code blocks of a markdown text (fences may be indented, as in lists)."""
    out: list[Block] = []
    lines = text.split("\n")
    k = 0
    while k < len(lines):
        m = _FENCE.match(lines[k])
        if m is None:
            k += 1
            continue
        indent, fence, info = m.groups()
        body: list[str] = []
        k += 1
        start = k + 1
        while k < len(lines) and not lines[k].strip().startswith(fence):
            line = lines[k]
            body.append(line[len(indent):] if line.startswith(indent) else line.lstrip())
            k += 1
        if k == len(lines):
            raise AssertionError(f"{doc}:{start - 1}: code block never closed")
        out.append(Block(doc, start, info.strip(), "\n".join(body) + "\n"))
        k += 1
    return out


def all_blocks() -> list[Block]:
    return [b for path in DOCS
            for b in blocks_of(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))]


BLOCKS = all_blocks()


# ----------------------------------------------------------------------------- runners


def run_python(blocks: list[Block]) -> None:
    """Run one document's python blocks in order, in one namespace; a failure names the
    document and line (tracebacks point at the markdown's own line numbers)."""
    namespace: dict = {"__name__": "__docs__"}
    for b in blocks:
        code = compile("\n" * (b.line - 1) + b.code, b.doc, "exec")
        if b.kind == "python no-run":
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("error", tc.TcWarning)
            try:
                exec(code, namespace)  # noqa: S102 - the documentation's own examples
            except Exception as e:
                raise AssertionError(f"the python block at {b.where} failed: "
                                     f"{type(e).__name__}: {e}") from e


def check_tc(b: Block) -> None:
    """A ``tc`` block is accepted cleanly, warns, or raises the error it says."""
    words = b.info.split()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            tc.define(b.code, backend="reference")
        except tc.TcError as e:
            if b.kind != "tc error":
                raise AssertionError(f"the tc block at {b.where} is rejected:\n{e}") from e
            if len(words) > 2:
                cls = getattr(tc, words[2])
                assert isinstance(e, cls), (f"the tc block at {b.where} raises "
                                            f"{type(e).__name__}, not {words[2]}:\n{e}")
            return
    if b.kind == "tc error":
        raise AssertionError(f"the tc block at {b.where} is marked 'tc error' but is accepted")
    found = [w.message for w in caught if issubclass(w.category, tc.TcWarning)]
    if b.kind == "tc warning":
        assert found, f"the tc block at {b.where} is marked 'tc warning' but does not warn"
    else:
        assert not found, f"the tc block at {b.where} warns:\n{found[0]}"


def shell_commands(code: str) -> list[list[str]]:
    """The commands of a shell block: continuation lines joined, prompts and comments
    dropped."""
    commands, pending = [], ""
    for line in code.split("\n"):
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        line, pending = pending + line, ""
        line = line.strip()
        if line.startswith("$ "):
            line = line[2:]
        words = shlex.split(line, comments=True)
        if words:
            commands.append(words)
    return commands


def check_shell(b: Block) -> None:
    """``python -m tc`` commands parse; the files and scripts they name exist."""
    from tc.cli import build_parser

    for words in shell_commands(b.code):
        if words[0] != "python":
            continue
        if words[1:3] == ["-m", "tc"]:
            try:
                args = build_parser().parse_args(words[3:])
            except SystemExit as e:
                raise AssertionError(f"{b.where}: {shlex.join(words)} does not parse") from e
            files = list(getattr(args, "files", None) or [])
            if args.command in ("explain", "grad", "tune") and args.file is not None:
                files.append(args.file)  # (tune --untimed takes none)
            for f in files:
                assert f == "-" or (ROOT / f).is_file(), f"{b.where}: no file {f}"
        elif words[1].endswith(".py"):
            assert (ROOT / words[1]).is_file(), f"{b.where}: no script {words[1]}"


# ----------------------------------------------------------------------------- the tests


def test_every_block_has_a_known_info_string() -> None:
    unknown = [f"{b.where}: {b.info!r}" for b in BLOCKS if b.kind not in _KINDS]
    assert not unknown, "code blocks with an unknown info string:\n" + "\n".join(unknown)


def test_few_blocks_are_not_run() -> None:
    skipped = [b.where for b in BLOCKS if b.kind == "python no-run"]
    assert len(skipped) <= 3, f"too many 'python no-run' blocks: {skipped}"


@pytest.mark.parametrize("doc", sorted({b.doc for b in BLOCKS if b.kind.startswith("python")}))
def test_python_blocks_run(doc: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TC_CACHE_DIR", str(tmp_path / "cache"))
    run_python([b for b in BLOCKS if b.doc == doc and b.kind.startswith("python")])


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.kind.startswith("tc")],
                         ids=lambda b: b.where)
def test_tc_blocks(block: Block) -> None:
    check_tc(block)


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.kind in ("sh", "console")],
                         ids=lambda b: b.where)
def test_shell_commands_parse(block: Block) -> None:
    check_shell(block)


def test_readme_links_stay_in_the_repository() -> None:
    """Relative links of README and docs point at files of the repository."""
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        text = re.sub(r"```.*?```", "", text, flags=re.S)  # code is not a link
        text = re.sub(r"`[^`\n]*`", "", text)
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if re.match(r"[a-z]+://", target):
                continue
            resolved = (path.parent / target).resolve()
            assert resolved.is_relative_to(ROOT), f"{path.name}: link {target} leaves the repo"
            assert resolved.exists(), f"{path.name}: link {target} points at nothing"


def test_readme_states_the_python_requirement() -> None:
    assert "Python >= 3.11" in (ROOT / "README.md").read_text(encoding="utf-8")


# ----------------------------------------------------------------------------- the harness


def _doc(text: str) -> list[Block]:
    return blocks_of(text, "example.md")


def test_harness_finds_blocks_with_their_lines() -> None:
    bs = _doc("intro\n\n```python\nx = 1\n```\n\n* item\n\n  ```tc error TcNameError\n"
              "  def f(float(N) A) -> (B) { B(i) = C(i) }\n  ```\n")
    assert [(b.line, b.kind) for b in bs] == [(4, "python"), (10, "tc error")]
    assert bs[1].code.startswith("def f")


def test_harness_fails_on_broken_examples() -> None:
    python = _doc("```python\nx = 1\n```\n```python\ny = x + undefined_name\n```\n")
    with pytest.raises(AssertionError, match="example.md:5"):
        run_python(python)
    cases = [
        "```tc\ndef f(float(N) A) -> (B) { B(i) = C(i) }\n```\n",  # rejected
        "```tc error\ndef f(float(N) A) -> (B) { B(i) = A(i) }\n```\n",  # accepted
        "```tc error TcRangeError\ndef f(float(N) A) -> (B) { B(i) = C(i) }\n```\n",  # class
        "```tc warning\ndef f(float(N) A) -> (B) { B(i) = A(i) }\n```\n",  # no warning
        "```tc\ndef f(float(M, K) A, float(K, N) B) -> (C) { C(m, n) +=! A(m, k) * B(kk, n) }"
        "\n```\n",  # warns
    ]
    for text in cases:
        with pytest.raises(AssertionError):
            check_tc(_doc(text)[0])
    for command in ("python -m tc explain examples/kernels.tc --stage nonsense",
                    "python -m tc check examples/no-such-file.tc",
                    "python examples/no_such_script.py"):
        with pytest.raises(AssertionError):
            check_shell(_doc(f"```sh\n{command}\n```\n")[0])
    check_shell(_doc("```sh\npython -m tc explain examples/kernels.tc --entry matmul \\\n"
                     "    --stage ast   # a comment\n```\n")[0])
