"""The system C compiler as a library builder: C source in, a loaded shared library out.

``$CC`` (else ``cc``, ``gcc``, ``clang``, the first found) compiles with
``-O3 -march=native -fopenmp``. Never ``-ffast-math``: NaN and infinity behaviour must
match the interpreter, and vectorised reductions get their freedom to reassociate
from ``#pragma omp simd reduction``, not from the flags. No ``-fwrapv`` either,
though the IR wraps signed overflow: the C printer wraps value arithmetic itself, and
``-fwrapv`` would stop the compiler from seeing that consecutive subscripts are
consecutive (it vectorises loads as gathers).

Traps:

* A compiler without OpenMP (no ``libgomp``/``libomp``): probed once with a tiny
  program; kernels are then built serially (the pragmas are ignored) and a warning is
  logged once.
* ``-march=native`` makes the library specific to this CPU: the compiler's identity
  and version, the flags and the CPU model go into the cache key
  (:func:`identity`), so a cached library never runs on another kind of machine.
* ``dlopen`` returns the already-loaded library for a path it has seen: every load
  gets a fresh file name. The file is removed once loaded (the mapping stays).
* ctypes releases the GIL during a foreign call, so a kernel never blocks other
  Python threads.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import itertools
import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

from codegen import stats
from codegen.launch import number_lines
from tc.errors import TcBackendError

__all__ = ["Library", "compiler", "identity", "build_library", "load_library"]

log = logging.getLogger(__name__)

BASE_FLAGS = ("-O3", "-march=native", "-mprefer-vector-width=512", "-std=gnu11", "-fPIC",
              "-shared", "-fno-math-errno",
              "-Wno-unknown-pragmas")
LIBRARY_CACHE_SIZE = 256
_counter = itertools.count()


@dataclass(frozen=True)
class Compiler:
    """A C compiler found on this machine."""

    path: str
    version: str  # the first line of ``--version``
    openmp: bool

    @property
    def flags(self) -> tuple[str, ...]:
        return BASE_FLAGS + (("-fopenmp",) if self.openmp else ())


@functools.lru_cache(maxsize=1)
def compiler() -> Compiler | None:
    """The C compiler of this machine (``$CC``, cc, gcc or clang), or None."""
    names = [os.environ["CC"]] if os.environ.get("CC") else ["cc", "gcc", "clang"]
    for name in names:
        path = shutil.which(name)
        if path is None:
            continue
        try:
            out = subprocess.run([path, "--version"], capture_output=True, text=True,
                                 timeout=60, check=True).stdout
        except (OSError, subprocess.SubprocessError) as e:
            log.debug("C compiler %s unusable: %s", path, e)
            continue
        version = out.splitlines()[0].strip() if out else name
        openmp = _probe_openmp(path)
        if not openmp:
            log.warning("%s cannot build OpenMP code (no libgomp?): CPU kernels run on one "
                        "thread", path)
        return Compiler(path, version, openmp)
    return None


def _probe_openmp(path: str) -> bool:
    src = "#include <omp.h>\nint tc_probe(void) { return omp_get_max_threads(); }\n"
    with tempfile.TemporaryDirectory(prefix="tc-cc-") as d:
        c, so = os.path.join(d, "p.c"), os.path.join(d, "p.so")
        with open(c, "w") as f:
            f.write(src)
        try:
            r = subprocess.run([path, *BASE_FLAGS, "-fopenmp", "-o", so, c], capture_output=True,
                               timeout=120)
        except (OSError, subprocess.SubprocessError):
            return False
        if r.returncode != 0:
            return False
        try:
            ctypes.CDLL(so)
        except OSError:
            return False
    return True


def require() -> Compiler:
    """The compiler, or ``TcBackendError`` saying what to install."""
    cc = compiler()
    if cc is None:
        raise TcBackendError("the cpu target needs a C compiler and none was found ($CC, cc, "
                             "gcc, clang); install one (e.g. `apt-get install gcc`), or use "
                             "backend='opencl'")
    return cc


def identity() -> str:
    """The compiler, its version and flags, and the vector math library's functions,
    for the cache key."""
    cc = require()
    return (f"{cc.version}; flags {' '.join(cc.flags)}; libmvec "
            f"{hashlib.sha256(' '.join(vector_math()).encode()).hexdigest()[:12]}")


#: One-argument math functions that glibc's libmvec may have in SIMD variants.
MVEC_CANDIDATES = ("exp", "log", "sin", "cos", "tan", "exp2", "exp10", "expm1", "log2",
                    "log10", "log1p", "sinh", "cosh", "tanh", "asin", "acos", "atan",
                    "asinh", "acosh", "atanh", "erf", "erfc", "cbrt")
# The x86-64 vector ABI's variants: SSE, AVX, AVX2, AVX-512, with their lane counts.
_MVEC_ISAS = {"float": (("b", 4), ("c", 8), ("d", 8), ("e", 16)),
              "double": (("b", 2), ("c", 4), ("d", 4), ("e", 8))}


@functools.lru_cache(maxsize=1)
def vector_math() -> tuple[str, ...]:
    """The C math functions (``expf``, ``exp``, ...) that libmvec provides in every
    SIMD variant of the x86-64 vector ABI, so that ``#pragma omp simd`` loops can call
    them in lanes (``declare simd``); empty elsewhere. libmvec's results are within 4
    ulp of the scalar functions' and handle NaN and infinities as they do."""
    import ctypes.util
    import platform

    if platform.machine() not in ("x86_64", "AMD64"):
        return ()
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("mvec") or "libmvec.so.1")
    except OSError:
        return ()
    out = []
    for name in MVEC_CANDIDATES:
        for ctype, suffix in (("float", "f"), ("double", "")):
            fn = name + suffix
            if all(hasattr(lib, f"_ZGV{isa}N{n}v_{fn}") for isa, n in _MVEC_ISAS[ctype]):
                out.append(fn)
    return tuple(out)


@dataclass(frozen=True, eq=False)
class Library:
    """A built shared library: its bytes (the cache's artefact) and the loaded handle."""

    binary: bytes
    handle: ctypes.CDLL
    digest: str


def build_library(source: str) -> Library:
    """Compile ``source`` into a loaded library, once per source text in a process.

    Raises ``TcBackendError`` with the compiler's messages and the numbered source."""
    return _cached_build(source)


@functools.lru_cache(maxsize=LIBRARY_CACHE_SIZE)
def _cached_build(source: str) -> Library:
    cc = require()
    stats.count("cc_compile")
    with tempfile.TemporaryDirectory(prefix="tc-cc-") as d:
        c, so = os.path.join(d, "k.c"), os.path.join(d, "k.so")
        with open(c, "w") as f:
            f.write(source)
        try:
            r = subprocess.run([cc.path, *cc.flags, "-o", so, c, "-lm"], capture_output=True,
                               text=True, timeout=600)
        except (OSError, subprocess.SubprocessError) as e:
            raise TcBackendError(f"the C compiler {cc.path} could not run: {e}") from e
        if r.returncode != 0:
            raise TcBackendError(f"C compilation failed ({cc.path} {' '.join(cc.flags)}):\n"
                                 f"{r.stderr.strip()}\n--- source ---\n{number_lines(source)}")
        with open(so, "rb") as f:
            binary = f.read()
    if r.stderr.strip():  # warnings of a build that worked: for logging, not the terminal
        log.debug("C compiler messages:\n%s", r.stderr.strip())
    log.debug("compiled a C library of %d bytes from %d chars", len(binary), len(source))
    return load_library(binary, count=False)


def load_library(binary: bytes, *, count: bool = True) -> Library:
    """A library from :class:`Library` bytes, without compiling; ``TcBackendError``
    when the system loader rejects them."""
    if count:
        stats.count("cc_load_binary")
    digest = hashlib.sha256(binary).hexdigest()
    fd, path = tempfile.mkstemp(prefix=f"tc-{digest[:12]}-{next(_counter)}-", suffix=".so")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(binary)
        try:
            handle = ctypes.CDLL(path)
        except OSError as e:
            raise TcBackendError(f"the stored CPU library cannot be loaded: {e}") from e
    finally:
        os.unlink(path)
    return Library(bytes(binary), handle, digest)
