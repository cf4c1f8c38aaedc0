"""Compiled programs as bytes: the artefact that the compilation cache stores.

An artefact holds a :class:`~codegen.compiler.CompiledProgram` (the IR function, the
kernel ASTs with their CUDA and OpenCL text, the host program, the bounds checks, the
options) and, per kernel, the back end's compiled binary: the OpenCL program binary
of PoCL, or the CUDA PTX/cubin with its ptxas report (:func:`codegen.nvrtc.dump_compiled`).
Loading one gives back everything :class:`codegen.executor.Executor` needs, so a
cached kernel runs with no scheduling and no compiling. The isl objects of the
program (``mapped``, a segment's ``mapped``) are dropped: they only serve tools.

Format::

    MAGIC (8 bytes) | format version (uint16, little endian) | sha256 of the payload
    (32 bytes) | payload

The payload is a pickle. Trust model: an artefact lives in the user's own cache file
(:mod:`autotuner.cache`), written by tc itself; it is not a format for exchanging
kernels with strangers. What guards it:

* the magic rejects foreign bytes, the version rejects artefacts of another format
  version, and the checksum rejects corrupted (truncated, bit-flipped) ones, all
  before anything is unpickled;
* the unpickler resolves only classes of tc's IR, kernel AST, host program, compiled
  program and options (plus ``range``), never a function, so even a crafted payload
  with a valid checksum cannot name ``os.system`` or any other callable;
* the loaded program is checked against the call before use (same IR function, same
  input dtypes, shapes and strides: :func:`verify_program`), and a failure of any of
  these is a :class:`ArtifactError`, after which callers compile normally.

Still, only import cache files (``python -m tc cache import``) from people you trust.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import pickle
import struct
from collections.abc import Sequence

from codegen.compiler import CompiledProgram
from tc.errors import TcBackendError
from tc.ir import nodes as ir
from tc.ir.index_width import call_index_bits

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "ArtifactError",
    "ArtifactMismatch",
    "dump_program",
    "load_program",
    "program_signature",
    "strip_program",
    "verify_program",
]

MAGIC = b"TCARTF\x00\x01"
#: Bumped whenever the pickled classes change shape (fields added, renamed, removed).
FORMAT_VERSION = 2
_HEADER = struct.Struct("<H32s")

# Modules whose classes an artefact may contain; anything else is refused on load.
_ALLOWED_MODULES = frozenset({
    "codegen.compiler", "codegen.host", "codegen.kernel", "tc.ir.nodes", "tc.ir.span",
    "tc.ir.sym", "tc.ir.types", "tc.options",
})
_ALLOWED_BUILTINS = frozenset({"range", "frozenset", "set", "slice", "complex"})


class ArtifactError(TcBackendError):
    """A stored artefact is corrupt, foreign, of another format version, or does not
    match the call it was loaded for; compile the kernel instead."""


class ArtifactMismatch(ArtifactError):
    """A sound artefact compiled for another definition (one with other identifiers,
    say): its kernels are not reused, though its options may be."""


def strip_program(program: CompiledProgram) -> CompiledProgram:
    """``program`` without its isl objects (which cannot be pickled)."""
    segments = tuple(dataclasses.replace(s, mapped=None) for s in program.segments)
    return dataclasses.replace(program, mapped=None, segments=segments)


def dump_program(program: CompiledProgram, binaries: Sequence[bytes | None]) -> bytes:
    """``program`` and its kernels' compiled ``binaries`` (one per kernel, None when
    there is none) as a versioned, checksummed artefact for :func:`load_program`."""
    binaries = [None if b is None else bytes(b) for b in binaries]
    if len(binaries) != len(program.kernels):
        raise ArtifactError(f"{len(binaries)} binaries for {len(program.kernels)} kernels")
    payload = pickle.dumps({"program": strip_program(program), "binaries": binaries},
                           protocol=pickle.HIGHEST_PROTOCOL)
    return MAGIC + _HEADER.pack(FORMAT_VERSION, hashlib.sha256(payload).digest()) + payload


class _Unpickler(pickle.Unpickler):
    """Resolves only the classes listed in ``_ALLOWED_MODULES`` (see the docstring)."""

    def find_class(self, module: str, name: str) -> type:
        if module == "builtins" and name in _ALLOWED_BUILTINS:
            return super().find_class(module, name)
        if module in _ALLOWED_MODULES:
            obj = super().find_class(module, name)
            if isinstance(obj, type) and obj.__module__ == module:
                return obj
        raise pickle.UnpicklingError(f"artefacts may not contain {module}.{name}")


def load_program(blob: bytes) -> tuple[CompiledProgram, list[bytes | None]]:
    """The program and per-kernel binaries of an artefact from :func:`dump_program`.

    Raises :class:`ArtifactError` for bytes that are not an artefact, one of another
    format version, a corrupted one, or one naming classes outside tc's compiler.
    """
    blob = bytes(blob)
    start = len(MAGIC) + _HEADER.size
    if len(blob) < start or not blob.startswith(MAGIC):
        raise ArtifactError("not a tc compiled-kernel artefact (bad magic)")
    version, digest = _HEADER.unpack_from(blob, len(MAGIC))
    if version != FORMAT_VERSION:
        raise ArtifactError(f"artefact format version {version}, this tc reads version "
                            f"{FORMAT_VERSION}")
    payload = blob[start:]
    if hashlib.sha256(payload).digest() != digest:
        raise ArtifactError("corrupt artefact (checksum mismatch)")
    try:
        data = _Unpickler(io.BytesIO(payload)).load()
    except Exception as e:  # any unpickling failure means a bad artefact, nothing else
        raise ArtifactError(f"unreadable artefact: {e}") from e
    program = data.get("program") if isinstance(data, dict) else None
    binaries = data.get("binaries") if isinstance(data, dict) else None
    if not isinstance(program, CompiledProgram) or not isinstance(binaries, list):
        raise ArtifactError("unreadable artefact: no compiled program in it")
    if len(binaries) != len(program.kernels) or not all(
            b is None or isinstance(b, bytes) for b in binaries):
        raise ArtifactError("unreadable artefact: its binaries do not match its kernels")
    return program, binaries


def program_signature(program: CompiledProgram) -> tuple:
    """The input dtypes, shapes and strides ``program`` was compiled for, as
    ``((ScalarType, shape, strides), ...)``."""
    out = []
    for buf in program.buffers[: len(program.fn.inputs)]:
        shape = tuple(int(e.value) for e in buf.shape)
        strides = tuple(int(e.value) for e in buf.strides)
        out.append((buf.dtype, shape, strides))
    return tuple(out)


def verify_program(program: CompiledProgram, signature: tuple,
                   fn: ir.Function | None = None) -> None:
    """Check that ``program`` computes ``fn`` (when given) for the inputs of
    ``signature`` (a ``BoundCall.signature()``); :class:`ArtifactError` if not."""
    from codegen.executor import signature_class
    from tc.arguments import SCALAR_TYPES
    from tc.ir.split_sums import sum_splits

    if fn is not None and program.fn != fn:
        raise ArtifactMismatch(f"the stored program computes another definition than "
                            f"{fn.name!r}")
    # Its index arithmetic must be wide enough for these inputs (tc.ir.index_width).
    try:
        sizes = {s.name: int(signature[i][1][s.dim]) for s in program.fn.sizes
                 for i, t in enumerate(program.fn.inputs) if t.name == s.tensor}
        bits = call_index_bits(program.fn, sizes, tuple(signature))
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise ArtifactError(f"cannot compare the stored program's index width: {e}") from e
    if bits > program.index_bits:
        raise ArtifactError(f"the stored program has {program.index_bits}-bit index "
                            f"arithmetic; these inputs need {bits} bits")
    if program.symbolic:  # it serves every call of its class (codegen.compiler)
        try:
            wanted_class = tuple((SCALAR_TYPES[dtype], rank, units) for dtype, rank, units
                                 in signature_class(tuple(signature))[:-1])
        except (KeyError, TypeError, ValueError) as e:
            raise ArtifactError(f"cannot compare the stored program's signature: {e}") from e
        stored_class = tuple(
            (buf.dtype, len(buf.shape),
             tuple(isinstance(st, ir.IntImm) and st.value == 1 for st in buf.strides))
            for buf in program.buffers[: len(program.fn.inputs)])
        if stored_class != wanted_class:
            raise ArtifactError(f"the stored program was compiled for inputs of class "
                                f"{stored_class}, the call's is {wanted_class}")
        # ... whose sizes split the same long sums (tc.ir.split_sums).
        sizes = {s.name: int(signature[i][1][s.dim]) for s in program.fn.sizes
                 for i, t in enumerate(program.fn.inputs) if t.name == s.tensor}
        try:
            splits = sum_splits(program.fn, sizes)
        except (KeyError, TypeError, ValueError) as e:
            raise ArtifactError(f"cannot compare the stored program's sums: {e}") from e
        if tuple(splits) != tuple(program.splits):
            raise ArtifactError("the stored program splits other sums than these sizes need")
        return
    try:
        wanted = tuple((SCALAR_TYPES[dtype], tuple(shape), tuple(strides))
                       for dtype, shape, strides in signature[:-1])
        stored = program_signature(program)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ArtifactError(f"cannot compare the stored program's signature: {e}") from e
    if stored != wanted:
        raise ArtifactError(f"the stored program was compiled for inputs {stored}, the call "
                            f"has {wanted}")
    sizes = {n: int(v) for n, v in program.sizes.items()}
    for decl, (_, shape, _) in zip(program.fn.inputs, wanted, strict=True):
        for sym, extent in zip(decl.shape, shape, strict=True):
            if not sym.is_const and sizes.get(next(iter(sym.symbols()))) != extent:
                raise ArtifactError("the stored program's sizes do not match its inputs")
