"""Compiled programs as artefacts: round trips, refusal of bad bytes, and executors
rebuilt from an artefact without scheduling or compiling."""

from __future__ import annotations

import hashlib
import os
import pickle

import pytest
import torch

import tc
from codegen import artifact, stats
from codegen.artifact import ArtifactError, ArtifactMismatch, dump_program, load_program
from codegen.executor import Executor
from tc.errors import TcBackendError

FC = """
def fc_relu(float(B, I) x, float(O, I) W, float(O) bias) -> (y) {
    y(b, o) +=! x(b, i) * W(o, i)
    y(b, o) = fmax(y(b, o) + bias(o), 0)
}
"""
ROWSUM = """
def rowsum(float(M, N) X) -> (S, T) {
    S(m) +=! X(m, n)
    T(m) = S(m) * 2
}
"""
OPTIONS = tc.MappingOptions("naive").tile(4, 4).mapToThreads(4, 2)


def _inputs(seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(5, 6, generator=g), torch.randn(3, 6, generator=g),
            torch.randn(3, generator=g))


def _expected(x, W, bias) -> torch.Tensor:
    return torch.relu(x @ W.T + bias)


@pytest.fixture(scope="module")
def opencl_executor() -> Executor:
    return tc.compile(FC, "fc_relu", OPTIONS, *_inputs(), backend="opencl")


def _delta(before: dict[str, int], event: str) -> int:
    return stats.COUNTERS[event] - before.get(event, 0)


def test_round_trip_keeps_the_program(opencl_executor) -> None:
    p = opencl_executor.program
    binaries = opencl_executor.binaries()
    assert len(binaries) == len(p.kernels) and all(isinstance(b, bytes) for b in binaries)
    q, loaded = load_program(dump_program(p, binaries))
    assert loaded == binaries
    assert q.fn == p.fn and q.fn.source == p.fn.source
    assert q.options == OPTIONS
    assert dict(q.sizes) == {"B": 5, "I": 6, "O": 3}
    assert q.buffers == p.buffers and q.host == p.host and q.checks == p.checks
    assert [k.kernel for k in q.kernels] == [k.kernel for k in p.kernels]
    assert [k.opencl_source for k in q.kernels] == [k.opencl_source for k in p.kernels]
    assert [k.cuda_source for k in q.kernels] == [k.cuda_source for k in p.kernels]
    assert q.stages == p.stages
    assert p.mapped is not None and q.mapped is None  # isl objects are dropped


def test_segmented_program_round_trips() -> None:
    X = torch.randn(3, 40)
    ex = tc.compile(ROWSUM, "rowsum", tc.MappingOptions("naive").matchLibraryCalls(True), X,
                    backend="opencl")
    assert ex.program.segments, "the reduction template should split this program"
    q, _ = load_program(dump_program(ex.program, [None] * len(ex.program.kernels)))
    assert [(s.kind, s.stages, s.kernels) for s in q.segments] == \
        [(s.kind, s.stages, s.kernels) for s in ex.program.segments]
    assert q.scratch == ex.program.scratch
    S, T = Executor(q, "opencl", ex.signature)(X)
    torch.testing.assert_close(S, X.sum(1))
    torch.testing.assert_close(T, 2 * X.sum(1))


def _blob(payload: bytes, version: int = artifact.FORMAT_VERSION) -> bytes:
    return (artifact.MAGIC + artifact._HEADER.pack(version, hashlib.sha256(payload).digest())
            + payload)


def test_bad_bytes_are_refused(opencl_executor) -> None:
    good = opencl_executor.artifact()
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0x40
    cases = {
        "magic": [b"", b"hello", b"SQLite format 3\x00" + good[16:], os.urandom(200)],
        "checksum": [bytes(flipped), good[:-10], good + b"\x00"],
        "version": [_blob(good[len(artifact.MAGIC) + artifact._HEADER.size:],
                          artifact.FORMAT_VERSION + 1)],
    }
    for what, blobs in cases.items():
        for blob in blobs:
            with pytest.raises(ArtifactError, match=what):
                load_program(blob)
    assert issubclass(ArtifactError, tc.TcError)


class _Evil:
    def __reduce__(self):
        return (os.getcwd, ())


def test_a_checksummed_payload_may_only_name_compiler_classes() -> None:
    with pytest.raises(ArtifactError, match="may not contain"):
        load_program(_blob(pickle.dumps({"program": _Evil(), "binaries": []})))
    with pytest.raises(ArtifactError, match="no compiled program"):
        load_program(_blob(pickle.dumps({"program": 1, "binaries": []})))
    with pytest.raises(ArtifactError, match="no compiled program"):
        load_program(_blob(pickle.dumps([1, 2])))


def test_binaries_must_match_the_kernels(opencl_executor) -> None:
    with pytest.raises(ArtifactError):
        dump_program(opencl_executor.program, [])


def test_executor_from_artifact_neither_schedules_nor_compiles(opencl_executor) -> None:
    blob = opencl_executor.artifact()
    n = len(opencl_executor.program.kernels)
    inputs = _inputs(1)
    before = stats.snapshot()
    ex = Executor.from_artifact(blob, "opencl", opencl_executor.signature,
                                fn=opencl_executor.fn)
    y = ex(*inputs)
    assert _delta(before, "compile_program") == 0
    assert _delta(before, "opencl_build") == 0
    assert _delta(before, "opencl_load_binary") == n
    torch.testing.assert_close(y, _expected(*inputs))
    assert [k.source for k in ex.kernels] == [k.source for k in opencl_executor.kernels]


def test_artifact_without_binaries_still_skips_scheduling(opencl_executor) -> None:
    program = opencl_executor.program
    blob = dump_program(program, [None] * len(program.kernels))
    before = stats.snapshot()
    ex = Executor.from_artifact(blob, "opencl", opencl_executor.signature)
    assert _delta(before, "compile_program") == 0
    inputs = _inputs(2)
    torch.testing.assert_close(ex(*inputs), _expected(*inputs))


def test_artifact_for_another_call_is_refused() -> None:
    # A program compiled for one shape (fixed parameters) serves that shape only.
    inputs = _inputs()
    x, W, bias = inputs
    fixed = tc.compile(FC, "fc_relu", OPTIONS.fixParametersBeforeScheduling(True), *inputs,
                       backend="opencl")
    assert not fixed.program.symbolic
    blob = fixed.artifact()
    other_shape = tc.define(FC).fc_relu.bind(torch.randn(4, 6), W, bias).signature()
    with pytest.raises(ArtifactError, match="compiled for inputs"):
        Executor.from_artifact(blob, "opencl", other_shape)
    _refuses_other_classes(blob, x, W, bias)
    renamed = tc.define(FC.replace("bias", "b0"))["fc_relu"].ir
    with pytest.raises(ArtifactMismatch):
        Executor.from_artifact(blob, "opencl", fixed.signature, fn=renamed)


def _refuses_other_classes(blob: bytes, x, W, bias) -> None:
    """The artefact is refused for a transposed (other unit-stride) input and doubles."""
    transposed = tc.define(FC).fc_relu.bind(torch.randn(6, 5).T, W, bias).signature()
    with pytest.raises(ArtifactError, match="compiled for inputs"):
        Executor.from_artifact(blob, "opencl", transposed)
    doubles = tc.define(FC.replace("float", "double")).fc_relu.bind(
        x.double(), W.double(), bias.double()).signature()
    with pytest.raises(ArtifactError, match="compiled for inputs"):
        Executor.from_artifact(blob, "opencl", doubles)


def test_a_symbolic_artifact_serves_its_signature_class_only(opencl_executor) -> None:
    # Sizes left symbolic: the artefact serves every size of its signature class ...
    assert opencl_executor.program.symbolic
    blob = opencl_executor.artifact()
    _, W, bias = _inputs()
    define = tc.define(FC).fc_relu
    for rows in (4, 1, 37):
        x = torch.randn(rows, 6, generator=torch.Generator().manual_seed(rows))
        ex = Executor.from_artifact(blob, "opencl", define.bind(x, W, bias).signature(),
                                    fn=opencl_executor.fn)
        torch.testing.assert_close(ex(x, W, bias), _expected(x, W, bias))
    g = torch.Generator().manual_seed(7)
    x, W, bias = (torch.randn(9, 11, generator=g), torch.randn(13, 11, generator=g),
                  torch.randn(13, generator=g))
    ex = Executor.from_artifact(blob, "opencl", define.bind(x, W, bias).signature())
    torch.testing.assert_close(ex(x, W, bias), _expected(x, W, bias))
    # ... and no other class: another unit-stride pattern, dtype or rank.
    x, W, bias = _inputs()
    _refuses_other_classes(blob, x, W, bias)
    (dtype, _, _), *rest, device = opencl_executor.signature
    rank3 = ((dtype, (5, 6, 2), (12, 2, 1)), *rest, device)
    with pytest.raises(ArtifactError, match="compiled for inputs"):
        Executor.from_artifact(blob, "opencl", rank3)


def test_a_rejected_binary_is_a_backend_error(opencl_executor) -> None:
    program = opencl_executor.program
    blob = dump_program(program, [b"not a PoCL binary"] * len(program.kernels))
    with pytest.raises(TcBackendError, match="binary"):
        Executor.from_artifact(blob, "opencl", opencl_executor.signature)


def test_cuda_artifact_reloads_ptx_and_cubin_without_nvrtc() -> None:
    inputs = _inputs()
    ex = tc.compile(FC, "fc_relu", OPTIONS, *inputs, backend="cuda", arch="sm_80")
    blob = ex.artifact()
    before = stats.snapshot()
    again = Executor.from_artifact(blob, "cuda", ex.signature, "sm_80", fn=ex.fn)
    assert _delta(before, "nvrtc_compile") == 0 and _delta(before, "compile_program") == 0
    assert [k.ptx for k in again.kernels] == [k.ptx for k in ex.kernels]
    assert [k.resources for k in again.kernels] == [k.resources for k in ex.kernels]
    assert all(k.resources.get("registers", 0) > 0 for k in again.kernels)
    assert [cc.cubin for cc in again._compiled] == [cc.cubin for cc in ex._compiled]
    assert all(cc.cubin for cc in again._compiled)
    with pytest.raises(TcBackendError, match="sm_90"):
        Executor.from_artifact(blob, "cuda", ex.signature, "sm_90")
