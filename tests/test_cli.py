"""The command line: check and explain."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tc.cli import main, parse_sizes
from tc.errors import TcError

GOOD = """
def matmul(float(M, K) A, float(K, N) B) -> (C) {
    C(m, n) +=! A(m, k) * B(k, n)
}
def scale(float(N) X, float s) -> (Y) { Y(i) = X(i) * s }
"""
BAD = "def f(float(N) A) -> (B) {\n    B(i) = A(i) + W(i)\n}\n"


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    good, bad = tmp_path / "good.tc", tmp_path / "bad.tc"
    good.write_text(GOOD)
    bad.write_text(BAD)
    return good, bad


def test_check_ok(files, capsys) -> None:
    assert main(["check", str(files[0])]) == 0
    assert "ok (matmul, scale)" in capsys.readouterr().out


def test_check_error_prints_position_and_caret(files, capsys) -> None:
    assert main(["check", str(files[0]), str(files[1])]) == 1
    err = capsys.readouterr().err
    assert f"{files[1]}:2:19:" in err
    assert "undefined tensor 'W'" in err
    lines = err.splitlines()
    caret = next(i for i, line in enumerate(lines) if line.strip() == "^")
    assert lines[caret - 1].index("W(i)") == lines[caret].index("^")


def test_check_missing_file(tmp_path, capsys) -> None:
    assert main(["check", str(tmp_path / "nope.tc")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_explain_ir_with_sizes(files, capsys) -> None:
    assert main(["explain", str(files[0]), "--entry", "matmul", "--sizes", "M=3,K=5,N=7",
                 "--stage", "ir"]) == 0
    out = capsys.readouterr().out
    assert "float32(3, 5) A" in out and "float32(3, 7) C" in out
    assert "m in 0:3, n in 0:7, k in 0:5" in out


def test_explain_symbolic_and_ast(files, capsys) -> None:
    assert main(["explain", str(files[0]), "--entry", "matmul"]) == 0
    assert "m in 0:M, n in 0:N, k in 0:K" in capsys.readouterr().out
    assert main(["explain", str(files[0]), "--entry", "scale", "--stage", "ast"]) == 0
    out = capsys.readouterr().out
    assert "Definition" in out and "Ident 'scale'" in out and "@" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--entry", "nope"], "no definition named 'nope'"),
        ([], "pick one with --entry"),
        (["--entry", "matmul", "--sizes", "Q=3"], "Q is not a size of matmul"),
        (["--entry", "matmul", "--sizes", "M=x"], "--sizes"),
    ],
)
def test_explain_errors(files, capsys, argv, message) -> None:
    assert main(["explain", str(files[0]), *argv]) == 1
    assert message in capsys.readouterr().err


def test_explain_bad_text(files, capsys) -> None:
    assert main(["explain", str(files[1])]) == 1
    assert "line 2, column 19" in capsys.readouterr().err


def test_parse_sizes() -> None:
    assert parse_sizes("M=64, N=32") == {"M": 64, "N": 32}
    assert parse_sizes(None) == {}
    for bad in ["M", "M=-1", "=3", "M=3,,"]:
        with pytest.raises(TcError):
            parse_sizes(bad)


def test_module_entry_point(files) -> None:
    r = subprocess.run([sys.executable, "-m", "tc", "check", str(files[1])],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 1 and "undefined tensor" in r.stderr


def test_explain_cuda_prints_resources_and_launch(files, capsys) -> None:
    assert main(["explain", str(files[0]), "--entry", "matmul", "--sizes", "M=40,K=5,N=70",
                 "--stage", "cuda", "--arch", "sm_80"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("# kernel tc_matmul_0:"))
    launch = re.search(r"grid \(([\d, ]+)\), block \(([\d, ]+)\)", lines[head])
    assert launch is not None
    blocks = math.prod(int(v) for v in launch.group(1).split(", "))
    threads = math.prod(int(v) for v in launch.group(2).split(", "))
    assert blocks >= 1 and threads > 1
    assert lines[head + 1] == (
        f"# launch: {blocks} blocks x {threads} threads per block = {blocks * threads} "
        "threads; shared memory per block: 0 bytes static, 0 bytes dynamic")
    usage = re.fullmatch(r"# sm_80: (\d+) registers, 0 spill bytes \(0 stores, 0 loads\), "
                         r"0 shared bytes, (\d+) local bytes", lines[head + 2])
    assert usage is not None and int(usage.group(1)) > 0
    assert 'extern "C" __global__ void tc_matmul_0(' in out
