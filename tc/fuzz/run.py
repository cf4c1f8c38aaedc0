"""The differential runner: a generated case on every target, judged against the
reference interpreter.

Each case runs in a worker process (:class:`Worker`, one kept alive across cases so
that compiled-kernel caches stay warm), target after target: the interpreter (the
truth), the CPU target, PoCL (``opencl``) and, where NVRTC is available, a CUDA
compilation (no GPU needed) whose kernels must compile with no spills. The worker
says which target it starts, so a segfault or a hang (the parent kills the worker
after a timeout) is a finding on that target. :func:`judge` turns the outcomes into
:class:`Finding` s:

* a value that differs beyond its dtype's tolerance (:func:`difference`);
* a target that misses the interpreter's ``TcRangeError``, or raises one it did not;
* any exception but a ``TcError`` (never a ``TcInternalError``), or an unpositioned
  ``TcError``, for a program the interpreter ran (a positioned error is a target
  declining the program: counted, not a finding);
* an input modified, a crash, a hang, a kernel that spills.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import multiprocessing as mp
import os
import re
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st

from tc.fuzz.generate import Case, key_value
from tc.options import FUSION_STRATEGIES, MappingOptions

_log = logging.getLogger(__name__)

#: Compiled targets, in the order they run (the interpreter runs first).
TARGETS = ("cpu", "opencl", "cuda")
#: (rtol, atol) per result dtype: half computes in float on the targets and rounds
#: once, where the interpreter rounds after every operation.
TOLERANCES = {torch.float64: (1e-9, 1e-9), torch.float32: (1e-4, 1e-5),
              torch.float16: (2e-2, 2e-2), torch.bfloat16: (6e-2, 6e-2)}
#: Large finite values per input dtype (the "special" inputs).
LARGE = {torch.float64: 1e300, torch.float32: 1e30, torch.float16: 6e4, torch.bfloat16: 1e30}
#: Cap on (blocks x threads) launched: PoCL runs every work-item on the CPU.
WORK_ITEMS = 1 << 14
TILE_SIZES = (0, 1, 2, 3, 5, 7, 16, 32, 64)
THREAD_SIZES = (1, 2, 3, 4, 5, 7, 8, 13, 16, 32, 64, 128, 256)
BLOCK_SIZES = (1, 2, 3, 5, 7, 16, 64, 256)
THREAD_LIMITS = (1024, 1024, 64)

_DTYPES = {"float": torch.float32, "double": torch.float64, "half": torch.float16,
           "bfloat16": torch.bfloat16, "int32": torch.int32, "int64": torch.int64,
           "int8": torch.int8, "int16": torch.int16, "uint8": torch.uint8, "bool": torch.bool}


# -- inputs and options --------------------------------------------------------------------------


def make_inputs(case: Case) -> list[torch.Tensor]:
    """The input tensors of a case, made from its seed (the same on every call)."""
    gen = torch.Generator().manual_seed(case.seed)
    sizes = dict(case.sizes)
    out = []
    for spec in case.inputs:
        shape = [key_value(d, sizes) for d in spec.dims]
        dtype = _DTYPES[spec.dtype]
        if spec.bound is not None:
            bound = max(1, key_value(spec.bound, sizes))
            t = torch.randint(0, bound, shape, generator=gen).to(dtype)
            if spec.out_of_range and t.numel():
                t.view(-1)[0] = bound  # one past the end
        elif dtype.is_floating_point:
            t = torch.randn(shape, generator=gen, dtype=torch.float64) * 2
            if case.special and t.numel():
                pick = torch.rand(shape, generator=gen)
                specials = torch.tensor([math.nan, math.inf, -math.inf, LARGE[dtype],
                                         -LARGE[dtype], 0.0], dtype=torch.float64)
                which = torch.randint(0, len(specials), shape, generator=gen)
                t = torch.where(pick < 0.25, specials[which], t)
            t = t.to(dtype)
        elif dtype == torch.bool:
            t = torch.rand(shape, generator=gen) < 0.5
        else:
            low = 0 if dtype == torch.uint8 else -3
            t = torch.randint(low, 4, shape, generator=gen).to(dtype)
        out.append(t)
    return out


def _bounded(draw, choices: tuple[int, ...], count: int, budget: int,
             limits: tuple[int, ...] = (1 << 31,) * 3) -> list[int]:
    out = []
    for axis in range(count):
        size = draw(st.sampled_from([c for c in choices if c <= budget and c <= limits[axis]]))
        out.append(size)
        budget //= size
    return out


@st.composite
def mapping_options(draw, work_items: int = WORK_ITEMS) -> MappingOptions:
    """Random valid mapping options, GPU and CPU fields (as tests/codegen/
    test_random_options.py draws them, plus the CPU mapping)."""
    o = MappingOptions("naive")
    o.tile(draw(st.lists(st.sampled_from(TILE_SIZES), min_size=1, max_size=4)))
    threads = _bounded(draw, THREAD_SIZES, draw(st.integers(1, 3)), 1024, THREAD_LIMITS)
    o.mapToThreads(threads)
    o.mapToBlocks(_bounded(draw, BLOCK_SIZES, draw(st.integers(1, 3)),
                           max(1, work_items // math.prod(threads))))
    o.outerScheduleFusionStrategy(draw(st.sampled_from(FUSION_STRATEGIES)))
    o.intraTileScheduleFusionStrategy(draw(st.sampled_from(FUSION_STRATEGIES)))
    o.outerScheduleAllowSkewing(draw(st.booleans()))
    o.outerSchedulePositiveOrthant(draw(st.booleans()))
    o.intraTileScheduleAllowSkewing(draw(st.booleans()))
    o.intraTileSchedulePositiveOrthant(draw(st.booleans()))
    o.fixParametersBeforeScheduling(draw(st.booleans()))
    o.tileImperfectlyNested(draw(st.booleans()))
    o.unroll(draw(st.integers(1, 8)))
    o.useSharedMemory(draw(st.booleans()))
    o.sharedDepth(draw(st.integers(0, 6)))
    o.maxSharedMemory(draw(st.sampled_from([None, None, 0, 64, 1024, 4096])))
    o.usePrivateMemory(draw(st.booleans()))
    o.privateDepth(draw(st.integers(0, 6)))
    o.unrollCopyShared(draw(st.booleans()))
    o.useReadOnlyCache(draw(st.booleans()))
    o.matchLibraryCalls(draw(st.booleans()))
    o.cpuThreads(draw(st.sampled_from([0, 1, 2, 3])))
    o.cpuParallel(draw(st.booleans()))
    o.cpuVectorize(draw(st.booleans()))
    o.cpuRegisterTile(draw(st.sampled_from([1, 2, 4, 8])))
    return o


# -- one target, in the worker ---------------------------------------------------------------------


def _error(e: BaseException) -> dict[str, Any]:
    from tc.errors import TcError, TcInternalError, TcRangeError

    if isinstance(e, TcError):
        return {"status": "tcerror", "type": type(e).__name__, "message": str(e),
                "positioned": e.line is not None, "range": isinstance(e, TcRangeError),
                "internal": isinstance(e, TcInternalError)}
    return {"status": "exception", "type": type(e).__name__, "message": str(e)[:2000],
            "traceback": traceback.format_exc()[-4000:]}


def _arrays(outs) -> list[tuple[str, np.ndarray]]:
    outs = (outs,) if isinstance(outs, torch.Tensor) else tuple(outs)
    return [(str(o.dtype), (o.float() if o.dtype == torch.bfloat16 else o).numpy().copy())
            for o in outs]


def promote_text(text: str) -> str:
    """The program with every float type (and cast) made ``double``: the exact values
    that float results are judged against."""
    return re.sub(r"\b(float|half|bfloat16|float16|float32)\b", "double", text)


def run_target(case: Case, target: str, options: MappingOptions) -> dict[str, Any]:
    """The outcome of ``case`` on one target: its outputs (as ``(dtype, array)`` pairs),
    a ``TcError`` or another exception, described by a picklable dict."""
    import tc

    inputs = make_inputs(case)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if target == "reference":
                outs = tc.define(case.text, backend="reference")[case.entry](*inputs)
            elif target == "exact":
                inputs = [t.double() if t.is_floating_point() else t for t in inputs]
                text = promote_text(case.text)
                outs = tc.define(text, backend="reference")[case.entry](*inputs)
            elif target == "cuda":
                ex = tc.compile(case.text, case.entry, options, *inputs, backend="cuda")
                return {"status": "ok", "resources": [dict(k.resources) for k in ex.kernels]}
            else:
                ex = tc.compile(case.text, case.entry, options, *inputs, backend=target)
                outs = ex(*inputs)
    except Exception as e:  # noqa: BLE001 - every exception is an outcome to judge
        return _error(e)
    if target == "exact":
        return {"status": "ok", "outputs": _arrays(outs), "inputs_intact": True}
    same = all(torch.equal(a, b) if not a.is_floating_point() else
               torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(), b.nan_to_num())
               for a, b in zip(inputs, make_inputs(case), strict=True))
    return {"status": "ok", "outputs": _arrays(outs), "inputs_intact": same}


def _serve(conn, runner, parent: int | None = None) -> None:
    """The worker's loop: (case dict, options text, targets) in; progress and outcomes out
    (``runner`` is :func:`run_target`, or a test's stand-in). ``parent``: the campaign's
    pid; the worker is killed when it ends, even mid-case (:mod:`tc.processes`)."""
    if parent is not None:
        from tc.processes import die_with_parent

        die_with_parent(parent)
    logging.disable(logging.WARNING)
    # PoCL writes files (broken.dot.N) into the working directory when its kernel
    # compiler fails: keep them out of the repository.
    os.chdir(tempfile.mkdtemp(prefix="tc-fuzz-"))
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        case, options, targets = Case.from_json(msg[0]), MappingOptions.deserialize(msg[1]), msg[2]
        for target in targets:
            conn.send(("start", target))
            outcome = runner(case, target, options)
            conn.send(("done", target, outcome))
            if target == "reference" and outcome["status"] != "ok" and not outcome.get("range"):
                break  # a program the interpreter rejects (or crashes on) is not compared
        conn.send(("end",))


class Worker:
    """A worker process that runs cases; a crash or a hang is reported, then the worker
    is replaced."""

    def __init__(self, timeout: float = 120.0, runner=run_target) -> None:
        self.timeout = timeout
        self.runner = runner  # a module-level function: the spawned worker imports it
        self.proc: mp.process.BaseProcess | None = None
        self.conn = None

    def _start(self) -> None:
        ctx = mp.get_context("spawn")  # no fork: OpenMP and PoCL threads do not survive it
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, self.runner, os.getpid()),
                                daemon=True)
        self.proc.start()
        child.close()

    def stop(self) -> None:
        """End the worker (killed if it does not leave at once)."""
        if self.proc is not None and self.proc.pid is not None:
            try:
                self.conn.send(None)
            except OSError:
                pass
            self.proc.join(2)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join()
        self.proc = None

    def run(self, case: Case, options: MappingOptions,
            targets: tuple[str, ...]) -> dict[str, dict[str, Any]]:
        """Outcomes by target; a target that crashed or hung gets status ``crash`` or
        ``hang`` (and the targets after it none)."""
        if self.proc is None or not self.proc.is_alive():
            self._start()
        self.conn.send((case.to_json(), options.serialize(), list(targets)))
        outcomes: dict[str, dict[str, Any]] = {}
        current = targets[0]
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            try:
                ready = self.conn.poll(max(0.0, left))
                msg = self.conn.recv() if ready else None
            except (EOFError, OSError):
                self.proc.join(5)
                code = self.proc.exitcode
                self.proc = None
                outcomes[current] = {"status": "crash", "message": f"worker exit code {code}"}
                return outcomes
            if msg is None:
                self.proc.kill()
                self.proc.join()
                self.proc = None
                outcomes[current] = {"status": "hang",
                                     "message": f"no answer after {self.timeout:.0f} s"}
                return outcomes
            if msg[0] == "start":
                current = msg[1]
            elif msg[0] == "done":
                outcomes[msg[1]] = msg[2]
            else:
                return outcomes


# -- judging -------------------------------------------------------------------------------------


_LOOSEST = (("bfloat16", torch.bfloat16), ("half", torch.float16), ("float", torch.float32))


def program_precision(text: str) -> torch.dtype:
    """The least precise float type a program computes in: a double result computed
    from float values is only as good as float (a float literal is a float)."""
    words = set(re.findall(r"[A-Za-z_]\w*|\d*\.\d+|\d+e-?\d+", text))
    for word, dtype in _LOOSEST:
        if word in words:
            return dtype
    return torch.float32 if any(w[0].isdigit() or w[0] == "." for w in words) else torch.float64


def difference(want: list[tuple[str, np.ndarray]], got: list[tuple[str, np.ndarray]],
               precision: torch.dtype = torch.float64,
               exact: list[tuple[str, np.ndarray]] | None = None) -> str | None:
    """Why ``got`` differs from ``want`` (None when equal): integers exactly, floats
    within the tolerance of their dtype or of ``precision`` (the looser), NaN equal to
    NaN, infinities exactly.

    ``exact`` (the program in double precision, :func:`promote_text`) excuses a float
    that differs only as much as rounding allows: one no further from the exact value
    than a few times the reference's own error (a difference of sums, one rounded to
    half, amplifies an ulp of difference between summation orders), or close to it
    where the reference overflowed (a product reduced in another order).
    """
    if len(want) != len(got):
        return f"{len(got)} outputs, expected {len(want)}"
    for k, ((wd, w), (gd, g)) in enumerate(zip(want, got, strict=True)):
        if wd != gd or w.shape != g.shape:
            return f"output {k}: {gd}{list(g.shape)}, expected {wd}{list(w.shape)}"
        dtype = getattr(torch, wd.removeprefix("torch."))
        if not dtype.is_floating_point:
            bad = w != g
        else:
            rtol, atol = (max(a, b) for a, b in zip(TOLERANCES[dtype], TOLERANCES[precision],
                                                     strict=True))
            w64, g64 = w.astype(np.float64), g.astype(np.float64)
            with np.errstate(all="ignore"):
                close = np.abs(g64 - w64) <= atol + rtol * np.maximum(np.abs(w64), np.abs(g64))
            close |= (w64 == g64) | (np.isnan(w64) & np.isnan(g64))
            if exact is not None and exact[k][1].shape == w.shape:
                x = exact[k][1].astype(np.float64)
                with np.errstate(all="ignore"):
                    slack = atol + rtol * np.abs(x)
                    # A reference that overflowed where the exact value did not (a product
                    # reduced in another order: 0 * inf) excuses a target close to it.
                    excused = np.where(np.isfinite(w64), np.abs(g64 - x) <= 4 * np.abs(w64 - x)
                                       + slack, np.abs(g64 - x) <= 10 * slack)
                close |= excused & np.isfinite(x) & np.isfinite(g64)
            bad = ~close
        if bad.any():
            at = tuple(int(i[0]) for i in np.nonzero(bad)) if w.ndim else ()
            return (f"output {k} ({wd}): {int(bad.sum())} of {w.size} elements differ; at "
                    f"{list(at)} got {g[at]!r}, expected {w[at]!r}")
    return None


@dataclass
class Finding:
    """Something wrong on one target, with everything needed to replay it."""

    kind: str
    target: str
    detail: str
    case: Case
    options: MappingOptions
    observed: str = ""
    expected: str = ""

    def key(self) -> tuple[str, str, str]:
        """What tells two findings apart (for deduplication): kind, target and the
        detail's first words, numbers left out. A mismatch: its dtype and the classes
        of the values (``inf`` for ``nan``); between finite values, the program too
        (one wrong sum must not hide the next); a crash or a hang: the program."""
        if self.kind in ("crash", "hang"):  # nothing tells two crashes apart but the program
            return self.kind, self.target, self.case.digest()
        if self.kind != "mismatch":
            return self.kind, self.target, " ".join(re.sub(r"\d+", "#", self.detail).split()[:8])
        dtype = self.detail.split("(")[1].split(")")[0] if "(" in self.detail else ""
        values = re.search(r"got (.*), expected (.*)$", self.detail)
        classes = [("nan" if "nan" in v else "inf" if "inf" in v else "finite")
                   for v in (values.groups() if values else ("", ""))]
        if classes == ["finite", "finite"]:
            classes.append(self.case.digest())
        return self.kind, self.target, " ".join([dtype, *classes])

    def to_json(self) -> dict:
        """A JSON-able record (read back by :func:`load_finding`)."""
        return {"kind": self.kind, "target": self.target, "detail": self.detail,
                "observed": self.observed, "expected": self.expected,
                "case": self.case.to_json(), "options": json.loads(self.options.serialize())}


def load_finding(path: str | Path) -> tuple[dict, Case, MappingOptions]:
    """A stored finding: its record, case and options."""
    record = json.loads(Path(path).read_text())
    return (record, Case.from_json(record["case"]),
            MappingOptions.deserialize(json.dumps(record["options"])))


def _summary(outcome: dict[str, Any]) -> str:
    if outcome["status"] == "ok":
        if "resources" in outcome:
            return f"resources {outcome['resources']}"
        return "; ".join(f"{d}{list(a.shape)} {np.array2string(a.reshape(-1)[:8], threshold=8)}"
                         for d, a in outcome["outputs"])
    return f"{outcome['status']}: {outcome.get('type', '')} {outcome.get('message', '')}"[:1500]


@dataclass
class Verdict:
    """The findings of one case, and what happened on each target (for the stats)."""

    findings: list[Finding] = field(default_factory=list)
    events: dict[str, str] = field(default_factory=dict)
    declined: dict[str, str] = field(default_factory=dict)  # target -> the error's first line


def judge(case: Case, options: MappingOptions, outcomes: dict[str, dict[str, Any]]) -> Verdict:
    """The findings of a case from its outcomes by target."""
    v = Verdict()
    ref = outcomes.get("reference", {"status": "crash", "message": "no outcome"})

    def find(kind: str, target: str, detail: str, observed: str = "", expected: str = "") -> None:
        v.findings.append(Finding(kind, target, detail, case, options, observed, expected))

    if ref["status"] != "tcerror" and ref["status"] != "ok":
        find(ref["status"], "reference", f"{ref.get('type', '')} {ref.get('message', '')}",
             _summary(ref))
        return v
    if ref["status"] == "tcerror":
        if ref["internal"] or not ref["positioned"]:
            find("bad-error", "reference", ref["message"], _summary(ref))
        if not ref["range"] or "out of bounds" not in ref["message"]:
            v.events["reference"] = "rejected"
            return v
        v.events["reference"] = "range-error"
    else:
        v.events["reference"] = "ok"
    truth_range = ref["status"] == "tcerror"
    exact = outcomes.get("exact", {})
    exact = exact.get("outputs") if exact.get("status") == "ok" else None
    for target, out in outcomes.items():
        if target in ("reference", "exact"):
            continue
        status = out["status"]
        v.events[target] = status
        expected = _summary(ref)
        if status in ("crash", "hang", "exception"):
            find(status, target, f"{out.get('type', '')} {out.get('message', '')}",
                 _summary(out) + "\n" + out.get("traceback", ""), expected)
        elif status == "tcerror":
            if out["internal"] or not out["positioned"]:
                find("bad-error", target, out["message"], _summary(out), expected)
            elif out["range"] and not truth_range:
                find("spurious-range-error", target, out["message"], _summary(out), expected)
            elif truth_range and not out["range"]:
                find("wrong-error", target, out["message"], _summary(out), expected)
            elif not truth_range:
                v.events[target] = "declined"
                v.declined[target] = out["message"].splitlines()[0]
        elif target == "cuda":
            spills = sum(r.get("spill_bytes", 0) for r in out["resources"])
            if spills:
                find("spill", target, f"{spills} bytes of spills", _summary(out))
        elif truth_range:
            find("missed-range-error", target, "ran without the interpreter's TcRangeError",
                 _summary(out), expected)
        else:
            diff = difference(ref["outputs"], out["outputs"], program_precision(case.text), exact)
            if diff:
                find("mismatch", target, diff, _summary(out), expected)
            if not out["inputs_intact"]:
                find("input-modified", target, "an input changed", _summary(out), expected)
    return v


@functools.cache
def available_targets() -> tuple[str, ...]:
    """The compiled targets that work here (CUDA: NVRTC, compile-only)."""
    from codegen.targets import TARGETS as REGISTERED

    out = [t for t in ("cpu", "opencl") if t in REGISTERED and REGISTERED[t].available()]
    try:
        from codegen.nvrtc import compile_cuda

        compile_cuda('extern "C" __global__ void k(float* a) { a[0] = 1.0f; }', "k")
        out.append("cuda")
    except Exception as e:  # noqa: BLE001 - NVRTC missing in any way: no CUDA compiles
        _log.info("no NVRTC here (%s): CUDA kernels are not compiled", e)
    return tuple(out)
