"""The command line: check and explain."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tc.cli import explain_stages, main, parse_sizes
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


# Per stage, a text its output must hold for the matmul below (``None``: only that it
# prints more than the host program); a stage added without an entry fails here.
_MARKERS = {
    "ast": "Ident 'matmul'", "ir": "float32(8, 5) A", "mlir": "linalg.generic",
    "scop": "S0_init", "dependences": "flow",
    "schedule": "domain:", "map": "# isl AST:", "lower": "kernel tc_matmul_0(",
    "private": "kernel tc_matmul_0(", "barriers": "kernel tc_matmul_0(",
    "kernel": "kernel tc_matmul_0(", "cpu": "void tc_matmul_0(", "c": "void tc_matmul_0(",
    "opencl": "__kernel void tc_matmul_0(", "cuda": '__global__ void tc_matmul_0(',
}


def test_explain_stages_follow_the_pipeline_and_the_targets() -> None:
    from codegen.compiler import PIPELINE
    from codegen.targets import target_names

    stages = explain_stages()
    assert len(set(stages)) == len(stages)
    # the pipeline's stages in its order, every target's source, the old names
    assert tuple(s for s in stages if s in PIPELINE) == PIPELINE
    assert set(target_names()) | {"ast", "ir", "scop", "schedule", "kernel", "c"} <= set(stages)
    assert set(stages) == set(_MARKERS)


@pytest.mark.parametrize("target", ["cpu", "opencl"])
@pytest.mark.parametrize("stage", explain_stages())
def test_explain_prints_every_stage(files, capsys, stage: str, target: str) -> None:
    assert main(["explain", str(files[0]), "--entry", "matmul", "--sizes", "M=8,K=5,N=7",
                 "--stage", stage, "--target", target]) == 0
    out = capsys.readouterr().out
    body = out.split("launch kernel 0", 1)[-1]  # what follows the host program, if any
    assert body.strip() and _MARKERS[stage] in body


def test_kernel_stages_show_the_kernel_after_each_step(files, capsys) -> None:
    def stage(name: str) -> str:
        assert main(["explain", str(files[0]), "--entry", "matmul", "--sizes", "M=8,K=5,N=7",
                     "--stage", name, "--target", "cpu"]) == 0
        return capsys.readouterr().out

    lower, private, barriers, kernel = map(stage, ("lower", "private", "barriers", "kernel"))
    # the CPU strategy keeps the accumulators in scalars after lowering
    assert " p_0 = " not in lower and " p_0 = " in private
    assert barriers == kernel  # the final kernel AST is the barriers stage's


def test_explain_schedule_and_map_are_separate(files, capsys) -> None:
    args = ["explain", str(files[0]), "--entry", "matmul", "--sizes", "M=64,K=32,N=48",
            "--target", "opencl", "--stage"]
    assert main([*args, "schedule"]) == 0
    schedule = capsys.readouterr().out
    assert main([*args, "map"]) == 0
    mapped = capsys.readouterr().out
    assert "mark:" not in schedule  # the mapping's kernel and thread marks come with map
    assert mapped.startswith("# mapped for the opencl target:") and 'mark: "kernel' in mapped


def test_export_writes_mlir(files, tmp_path, capsys) -> None:
    out = tmp_path / "matmul.mlir"
    assert main(["export", str(files[0]), "--entry", "matmul", "--sizes", "M=3,K=5,N=7",
                 "-o", str(out)]) == 0
    text = out.read_text()
    assert "func.func @matmul(%A: tensor<3x5xf32>, %B: tensor<5x7xf32>)" in text
    assert 'iterator_types = ["parallel", "parallel", "reduction"]' in text
    assert main(["export", str(files[0]), "--entry", "scale", "--sizes", "N=4",
                 "--dynamic"]) == 0
    assert "%X: tensor<?xf32>, %s: tensor<f32>" in capsys.readouterr().out


def test_export_and_explain_mlir_errors(files, tmp_path, capsys) -> None:
    assert main(["export", str(files[0]), "--entry", "matmul", "--sizes", "M=3"]) == 1
    assert "missing: K, N" in capsys.readouterr().err
    assert main(["explain", str(files[0]), "--entry", "matmul", "--stage", "mlir"]) == 1
    assert "--sizes" in capsys.readouterr().err
    bad = tmp_path / "bad.tc"
    # tgamma exports for float, not for double (tc.mlir.special)
    bad.write_text("def f(double(N) X) -> (Y) {\n    Y(i) = tgamma(X(i))\n}\n")
    assert main(["export", str(bad), "--sizes", "N=3"]) == 1
    err = capsys.readouterr().err
    assert "tgamma" in err and "line 2, column 12" in err and "^" in err
    assert main(["explain", str(files[0]), "--entry", "matmul", "--sizes", "M=3,K=5,N=7",
                 "--stage", "mlir"]) == 0
    assert "func.func @matmul" in capsys.readouterr().out
