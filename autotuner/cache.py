"""The on-disk compilation cache: tuned mapping options and compiled kernels.

One SQLite file (WAL mode), by default ``tc-cache.sqlite`` in the user cache
directory (``platformdirs.user_cache_dir("tc")``), or in ``$TC_CACHE_DIR``.

**Key** (:class:`CacheKey`, :func:`cache_key`): the canonical text of the entry
point (identifiers renamed, so renaming hits the same entry), the input dtypes,
shapes and strides, the back end and device (GPU name and compute capability and the
CUDA architecture compiled for, or PoCL's device and the CPU model), and the
versions (tc and a fingerprint of its compiler sources, islpy, NVRTC or PoCL, the
artefact format). The entry point's *name* is kept for display but is not part of
the digest: renaming the definition must hit too.

**Value** (:class:`CacheEntry`): per key, up to :data:`KEEP` option sets ranked by
the median of their measured times, each with an optional compiled artefact
(:mod:`codegen.artifact`) from which the kernel runs with no scheduling and no
compiling.

**Safety.** Every operation is one short transaction on a fresh connection (so the
object is safe across threads and forked processes); SQLite's WAL journal makes a
process killed mid-write lose at most its own uncommitted transaction, and
concurrent writers wait for each other (``busy_timeout``). A file that is not
SQLite, a SQLite file of another application (checked with ``PRAGMA
application_id`` and the ``meta`` table), a cache of another schema version, or any
SQLite error gives a :class:`CacheWarning` and the cache behaves as empty: lookups
miss, stores are dropped; nothing raises. Rows are checked on read (their key
fields must match the key asked for, their options must parse), and artefacts are
checksummed and verified against the call before use, so a hit never gives a wrong
kernel.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import pathlib
import re
import sqlite3
import statistics
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tc.errors import TcError, TcOptionsError
from tc.options import MappingOptions

if TYPE_CHECKING:
    from tc.arguments import BoundCall

__all__ = [
    "KEEP",
    "SCHEMA_VERSION",
    "CacheEntry",
    "CacheKey",
    "CacheWarning",
    "CompilationCache",
    "TcCacheError",
    "cache_key",
    "default_cache_path",
]

SCHEMA_VERSION = 1
#: Stored in the SQLite header (``PRAGMA application_id``): "TCC1".
APPLICATION_ID = 0x54434331
APPLICATION = "tc-compilation-cache"
FILENAME = "tc-cache.sqlite"
#: How many option sets are kept per key (the best by median time).
KEEP = 5
#: How long a writer waits for another process's transaction, in seconds.
BUSY_TIMEOUT = 60.0

_KEY_FIELDS = ("canonical", "entry", "signature", "backend", "device", "versions")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    digest TEXT NOT NULL, options TEXT NOT NULL,
    canonical TEXT NOT NULL, entry TEXT NOT NULL, signature TEXT NOT NULL,
    backend TEXT NOT NULL, device TEXT NOT NULL, versions TEXT NOT NULL,
    times TEXT NOT NULL, median REAL NOT NULL, artifact BLOB, updated REAL NOT NULL,
    PRIMARY KEY (digest, options));
CREATE INDEX IF NOT EXISTS entries_rank ON entries (digest, median);
"""


class CacheWarning(UserWarning):
    """The cache file cannot be used (corrupt, foreign, other schema, locked, ...)."""


class TcCacheError(TcError):
    """A cache operation asked for explicitly cannot be done (no such entry, a file
    that is not a tc cache given to import, export or clear, invalid times)."""


def default_cache_path() -> pathlib.Path:
    """``$TC_CACHE_DIR/tc-cache.sqlite`` if set, else the user cache directory's."""
    folder = os.environ.get("TC_CACHE_DIR")
    if not folder:
        import platformdirs

        folder = platformdirs.user_cache_dir("tc")
    return pathlib.Path(folder).expanduser() / FILENAME


# -- keys ---------------------------------------------------------------------------------


def _digest(canonical: str, signature: str, backend: str, device: str, versions: str) -> str:
    text = json.dumps([SCHEMA_VERSION, canonical, signature, backend, device, versions])
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class CacheKey:
    """What a cached kernel depends on; ``digest`` (sha256) is the primary key.

    Every field except ``entry`` (the entry point's name, shown by ``cache list``)
    enters the digest.
    """

    digest: str
    canonical: str  # TcFunction.canonical of the entry point
    entry: str
    signature: str  # dtypes, shapes and strides of the inputs, as text
    backend: str  # a target's name
    device: str
    versions: str

    @classmethod
    def create(cls, canonical: str, entry: str, signature: str, backend: str, device: str,
               versions: str) -> CacheKey:
        """The key of these fields, with its digest computed."""
        return cls(_digest(canonical, signature, backend, device, versions), canonical, entry,
                   signature, backend, device, versions)


def signature_text(call: BoundCall) -> str:
    """The dtypes, shapes and strides of a call's inputs, e.g. ``float32[3,5]/[5,1]``."""

    def one(t) -> str:
        dtype = str(t.dtype).removeprefix("torch.")
        return (f"{dtype}[{','.join(map(str, t.shape))}]/"
                f"[{','.join(map(str, t.stride()))}]")

    return "; ".join(one(t) for t in call.inputs)


_ONE_INPUT = re.compile(r"(\w+)\[([\d,]*)\]/\[([\d,]*)\]")


def _shapes(signature: str) -> list[tuple[str, tuple[int, ...], tuple[int, ...]]] | None:
    """Per input of a :func:`signature_text`: dtype, shape and strides (None if the
    text is not one)."""
    out = []
    for part in signature.split("; ") if signature else []:
        m = _ONE_INPUT.fullmatch(part)
        if m is None:
            return None
        dtype, shape, strides = m.groups()
        out.append((dtype, tuple(int(v) for v in shape.split(",") if v),
                    tuple(int(v) for v in strides.split(",") if v)))
    return out


def device_text(backend: str, arch: str | None = None, device_index: int | None = None) -> str:
    """The device part of a key, from the target (PoCL's device and the CPU model, the
    CPU model, or the GPU's name and compute capability with the code's architecture)."""
    from codegen.targets import get_target

    return get_target(backend).device_text(arch, device_index)


def _source_fingerprint() -> str:
    """A digest of the sources that shape a kernel (front end, IR, polyhedral,
    codegen): a kernel compiled by another revision of the compiler must miss, even
    under the same package version."""
    import codegen
    import polyhedral
    import tc

    h = hashlib.sha256()
    roots = [pathlib.Path(codegen.__file__).parent, pathlib.Path(polyhedral.__file__).parent,
             pathlib.Path(tc.__file__).parent / "ir", pathlib.Path(tc.__file__).parent / "lang"]
    files = [p for r in roots for p in r.rglob("*") if p.suffix in (".py", ".lark")]
    files += [pathlib.Path(tc.__file__).parent / n for n in ("options.py", "arguments.py")]
    for p in sorted(files):
        with contextlib.suppress(OSError):
            h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:12]


_VERSIONS: dict[str, str] = {}  # per back end, computed once per process


def versions_text(backend: str) -> str:
    """The versions part of a key: tc (and its compiler sources), islpy, the artefact
    format, and the target's tools (NVRTC; pyopencl and PoCL; the C compiler and its
    flags)."""
    if backend not in _VERSIONS:
        import islpy

        import tc
        from codegen.artifact import FORMAT_VERSION
        from codegen.targets import get_target

        parts = [f"tc {tc.__version__}+{_source_fingerprint()}", f"islpy {islpy.__version__}",
                 f"artefact {FORMAT_VERSION}", get_target(backend).versions_text()]
        _VERSIONS[backend] = "; ".join(parts)
    return _VERSIONS[backend]


def cache_key(fn_canonical: str, entry: str, call: BoundCall, backend: str,
              arch: str | None = None) -> CacheKey:
    """The key of entry point ``entry`` (canonical text ``fn_canonical``) for the inputs
    of ``call`` on target ``backend`` (``arch``: the CUDA architecture)."""
    from codegen.targets import target_names

    if backend not in target_names():
        raise TcCacheError(f"the cache holds compiled kernels of the targets "
                           f"{', '.join(target_names())}, not {backend!r}")
    index = call.device.index if call.device.type == "cuda" else None
    return CacheKey.create(fn_canonical, entry, signature_text(call), backend,
                           device_text(backend, arch, index), versions_text(backend))


# -- entries ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CacheEntry:
    """One option set of a key: its measured times (seconds) and compiled artefact."""

    options: MappingOptions
    times: tuple[float, ...]
    artifact: bytes | None = None

    @property
    def median(self) -> float:
        """The median of the measured times (the rank of the entry); infinite for an
        untimed entry (a kernel stored as compiled, never tuned)."""
        return statistics.median(self.times) if self.times else math.inf

    @property
    def timed(self) -> bool:
        return bool(self.times)


#: The rank stored for an untimed entry: after every measured one.
UNTIMED = 1e300


def _check_times(times: Sequence[float]) -> tuple[float, ...]:
    """Measured times as floats; () is an untimed entry (a kernel stored as compiled)."""
    try:
        out: tuple[float, ...] | None = tuple(float(t) for t in times)
    except (TypeError, ValueError):
        out = None
    if out is None or not all(math.isfinite(t) and t >= 0 for t in out):
        raise TcCacheError(f"measured times must be a sequence of finite seconds >= 0 (empty "
                           f"for an untimed entry), got {times!r}")
    return out


# -- the cache ----------------------------------------------------------------------------


class CompilationCache:
    """The SQLite compilation cache at ``filename`` (None: :func:`default_cache_path`).

    Opening never raises: an unusable file gives a :class:`CacheWarning` and an empty
    cache that stores nothing (see the module docstring).
    """

    def __init__(self, filename: str | os.PathLike | None = None) -> None:
        self.path = pathlib.Path(filename if filename is not None else default_cache_path())
        self.problem: str | None = None  # why the file is unusable, or None
        self._ours = False  # a tc cache, maybe of another schema (clear() may reset it)
        self._open()

    def __repr__(self) -> str:
        state = f"unusable: {self.problem}" if self.problem else "ok"
        return f"<CompilationCache {str(self.path)!r} ({state})>"

    @property
    def usable(self) -> bool:
        """Whether the file is a readable tc cache of this schema."""
        return self.problem is None

    # -- connections and validation

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
            yield conn
        finally:
            conn.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A connection inside one immediate (write-locked) transaction."""
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")  # durable across process kills
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                with contextlib.suppress(sqlite3.Error):  # keep the original error
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _fail(self, problem: str) -> None:
        self.problem = problem
        warnings.warn(f"tc compilation cache {str(self.path)!r} ignored: {problem}",
                      CacheWarning, stacklevel=4)

    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.is_dir():
                return self._fail("it is a directory")
            # SQLite itself recognises a file that is not a database ("file is not a
            # database"); reading the header here would race with a concurrent creator.
            with self._connect() as conn:
                conn.execute("BEGIN")  # one snapshot, whatever a concurrent creator does
                app = conn.execute("PRAGMA application_id").fetchone()[0]
                tables = {r[0] for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'")}
                meta = dict(conn.execute("SELECT name, value FROM meta").fetchall()
                            if "meta" in tables else [])
                conn.execute("COMMIT")
            if app == 0 and not tables:
                with self._write() as conn:  # idempotent: racing creators agree
                    _create_schema(conn)
                return None
            if app != APPLICATION_ID or meta.get("application") != APPLICATION:
                return self._fail("a SQLite file of another application")
            self._ours = True
            if meta.get("schema_version") != str(SCHEMA_VERSION):
                return self._fail(f"schema version {meta.get('schema_version')}, this tc uses "
                                  f"{SCHEMA_VERSION} (run `python -m tc cache clear`)")
        except sqlite3.DatabaseError as e:
            return self._fail(f"SQLite error: {e}")
        except OSError as e:
            return self._fail(f"cannot create or read it: {e}")
        return None

    def _guard(self, what: str, default, body):
        """``body()``, or ``default`` with a warning when the file cannot be used."""
        if self.problem is not None:
            return default
        try:
            return body()
        except sqlite3.DatabaseError as e:
            warnings.warn(f"tc compilation cache {str(self.path)!r}: {what} failed ({e}); "
                          "continuing without it", CacheWarning, stacklevel=3)
            return default

    # -- reading

    def _entries(self, key: CacheKey, limit: int = -1) -> list[CacheEntry]:
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT options, times, artifact, " + ", ".join(_KEY_FIELDS[:1] +
                                                                _KEY_FIELDS[2:]) +
                " FROM entries WHERE digest = ? ORDER BY median, updated LIMIT ?",
                (key.digest, limit)).fetchall()
        want = (key.canonical, key.signature, key.backend, key.device, key.versions)
        out = []
        for options, times, artifact, *fields in rows:
            if tuple(fields) != want:  # a digest collision, or a forged row
                warnings.warn("tc compilation cache: a row does not match its key; ignored",
                              CacheWarning, stacklevel=4)
                continue
            entry = _decode(options, times, artifact)
            if entry is not None:
                out.append(entry)
        return out

    def lookup(self, key: CacheKey) -> list[CacheEntry]:
        """The entries of ``key``, best (lowest median time) first; [] on a miss."""
        return self._guard("lookup", [], lambda: self._entries(key))

    def best(self, key: CacheKey) -> CacheEntry | None:
        """The best entry of ``key``, or None on a miss."""
        entries = self.lookup(key)
        return entries[0] if entries else None

    def related(self, key: CacheKey) -> list[tuple[CacheKey, list[CacheEntry]]]:
        """The keys of the same definition, target, device and versions as ``key`` with
        inputs of the same dtypes and ranks but other sizes or strides, nearest sizes
        first, each with its entries (best first). What a call of a size never tuned
        reuses: the options tuned at another size, and a size-generic kernel's artefact
        (checked against the call's class before it runs: codegen.artifact)."""

        def body():
            with self._connect() as conn:
                rows = conn.execute(
                    "SELECT DISTINCT digest, " + ", ".join(_KEY_FIELDS) + " FROM entries "
                    "WHERE canonical = ? AND backend = ? AND device = ? AND versions = ? "
                    "AND digest != ?", (key.canonical, key.backend, key.device, key.versions,
                                        key.digest)).fetchall()
            want = _shapes(key.signature)
            near = []
            for row in rows:
                other = CacheKey(*row)
                shapes = _shapes(other.signature)
                if want is None or shapes is None or [(d, len(s)) for d, s, _ in shapes] != [
                        (d, len(s)) for d, s, _ in want]:
                    continue
                distance = sum(abs(math.log(max(a, 1)) - math.log(max(b, 1)))
                               for (_, sa, _), (_, sb, _) in zip(shapes, want, strict=True)
                               for a, b in zip(sa, sb, strict=True))
                near.append((distance, other.signature, other))
            near.sort(key=lambda t: t[:2])
            return [(k, self._entries(k)) for _, _, k in near]

        return self._guard("lookup", [], body)

    def summary(self) -> list[tuple[CacheKey, float, int]]:
        """Every key with its best median time and its number of option sets."""

        def body():
            with self._connect() as conn:
                rows = conn.execute(
                    "SELECT digest, " + ", ".join(_KEY_FIELDS) + ", MIN(median), COUNT(*) "
                    "FROM entries GROUP BY digest ORDER BY entry, signature, digest").fetchall()
            return [(CacheKey(*r[:7]), r[7], r[8]) for r in rows]

        return self._guard("listing", [], body)

    def keys(self) -> list[CacheKey]:
        """Every key in the cache."""
        return [k for k, _, _ in self.summary()]

    def show(self, digest_prefix: str) -> tuple[CacheKey, list[CacheEntry]]:
        """The key whose digest starts with ``digest_prefix`` and its entries;
        :class:`TcCacheError` when no key or several keys match."""
        prefix = digest_prefix.strip().lower()
        found = [k for k in self.keys() if k.digest.startswith(prefix)] if prefix else []
        if not found:
            raise TcCacheError(f"no cache entry with a key starting with {digest_prefix!r} "
                               f"in {str(self.path)!r} (see `python -m tc cache list`)")
        if len(found) > 1:
            raise TcCacheError(f"{len(found)} keys start with {digest_prefix!r}: give more "
                               "digits")
        return found[0], self.lookup(found[0])

    # -- writing

    def store(self, key: CacheKey, options: MappingOptions, times: Sequence[float],
              artifact: bytes | None = None) -> None:
        """Record ``options`` for ``key`` with their measured ``times`` (seconds; empty for
        a kernel stored as compiled, which ranks after every timed entry) and the
        compiled ``artifact`` (kept from an earlier store when None). Storing untimed
        options that the key holds with measured times keeps those times (and replaces
        the artefact when one is given). Only the :data:`KEEP` best option sets of a
        key are kept."""
        if not isinstance(options, MappingOptions):
            raise TcOptionsError("store() needs tc.MappingOptions")
        row = _row(key, options.serialize(), _check_times(times), artifact)

        def body():
            with self._write() as conn:
                _upsert(conn, [row])

        self._guard("store", None, body)

    def clear(self) -> None:
        """Remove every entry. A tc cache of another schema version is reset; a file
        that is not a tc cache is left alone (:class:`TcCacheError`)."""
        if self.problem is not None and not self._ours:
            raise TcCacheError(f"{str(self.path)!r} is not a tc cache ({self.problem}); "
                               "delete it yourself if it is yours")
        try:
            with self._write() as conn:
                if self.problem is not None:  # another schema: start again
                    conn.execute("DROP TABLE IF EXISTS entries")
                    conn.execute("DROP TABLE IF EXISTS meta")
                    _create_schema(conn)
                else:
                    conn.execute("DELETE FROM entries")
        except sqlite3.DatabaseError as e:
            raise TcCacheError(f"cannot clear {str(self.path)!r}: {e}") from e
        self.problem = None

    # -- export and import

    def _rows(self) -> list[tuple]:
        with self._connect() as conn:
            return conn.execute("SELECT digest, options, " + ", ".join(_KEY_FIELDS) +
                                ", times, median, artifact, updated FROM entries").fetchall()

    def _merge(self, rows: list[tuple]) -> int:
        """Upsert rows of another cache that are sound; returns how many."""
        good = []
        for r in rows:
            digest, options, canonical, _, signature, backend, device, versions = r[:8]
            if digest != _digest(canonical, signature, backend, device, versions):
                continue
            if _decode(options, r[8], r[10]) is not None:
                good.append(r)
        with self._write() as conn:
            _upsert(conn, good)
        return len(good)

    def export(self, path: str | os.PathLike) -> int:
        """Copy every entry into the cache file ``path`` (created, or merged into);
        returns the number of entries written."""
        if self.problem is not None:
            raise TcCacheError(f"cannot export {str(self.path)!r}: {self.problem}")
        other = CompilationCache(path)
        if other.problem is not None:
            raise TcCacheError(f"cannot export into {str(path)!r}: {other.problem}")
        try:
            return other._merge(self._rows())
        except sqlite3.DatabaseError as e:
            raise TcCacheError(f"export to {str(path)!r} failed: {e}") from e

    def import_(self, path: str | os.PathLike) -> int:
        """Copy every entry of the cache file ``path`` into this one (its entries win on
        equal options); returns the number of entries imported."""
        other = CompilationCache(path)
        if other.problem is not None:
            raise TcCacheError(f"cannot import {str(path)!r}: {other.problem}")
        if self.problem is not None:
            raise TcCacheError(f"cannot import into {str(self.path)!r}: {self.problem}")
        try:
            return self._merge(other._rows())
        except sqlite3.DatabaseError as e:
            raise TcCacheError(f"import of {str(path)!r} failed: {e}") from e


def _create_schema(conn: sqlite3.Connection) -> None:
    for stmt in filter(str.strip, _SCHEMA.split(";")):
        conn.execute(stmt)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('application', ?), ('schema_version', ?)",
                 (APPLICATION, str(SCHEMA_VERSION)))


def _decode(options: str, times: str, artifact: bytes | None) -> CacheEntry | None:
    """A row's entry, or None (with a warning) when the row is unreadable."""
    try:
        opts = MappingOptions.deserialize(options)
        ts = _check_times(json.loads(times))
    except (TcError, ValueError, TypeError) as e:
        warnings.warn(f"tc compilation cache: unreadable entry ignored ({e})", CacheWarning,
                      stacklevel=4)
        return None
    return CacheEntry(opts, ts, None if artifact is None else bytes(artifact))


def _row(key: CacheKey, options: str, times: tuple[float, ...], artifact: bytes | None
         ) -> tuple:
    return (key.digest, options, key.canonical, key.entry, key.signature, key.backend,
            key.device, key.versions, json.dumps(times),
            statistics.median(times) if times else UNTIMED,
            None if artifact is None else sqlite3.Binary(artifact), time.time())


def _upsert(conn: sqlite3.Connection, rows: list[tuple]) -> None:
    """Insert or update rows (in ``_row``'s order), then keep the KEEP best per key."""
    conn.executemany(
        "INSERT INTO entries (digest, options, " + ", ".join(_KEY_FIELDS) + ", times, median, "
        "artifact, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (digest, options) DO UPDATE SET entry = excluded.entry, "
        # An untimed row (a kernel stored as compiled) keeps the measured times of the
        # same options: a script compiling tuned options must not erase their tuning.
        "times = CASE WHEN excluded.times = '[]' THEN entries.times ELSE excluded.times END, "
        "median = CASE WHEN excluded.times = '[]' THEN entries.median "
        "ELSE excluded.median END, "
        "artifact = COALESCE(excluded.artifact, entries.artifact), updated = excluded.updated",
        rows)
    for digest in {r[0] for r in rows}:
        conn.execute("DELETE FROM entries WHERE digest = ?1 AND options NOT IN (SELECT options "
                     "FROM entries WHERE digest = ?1 ORDER BY median, updated LIMIT ?2)",
                     (digest, KEEP))
