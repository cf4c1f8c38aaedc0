"""The width of index arithmetic: 32 bits unless a call's sizes need 64.

Kernels compute element offsets, loop variables, sizes and strides in
``INDEX_TYPE`` (int32): 32-bit arithmetic is what GPUs and the C compiler's
vectoriser run fastest. A tensor of 2**31 elements or more (or spanning that many
through its strides), a size symbol of that value, or a loop bound that far would
overflow it, so such a call gets 64-bit index arithmetic, decided per compiled program
from the sizes as Triton and Inductor do: small tensors keep their 32-bit kernels.

The limits keep a margin below 2**31 and 2**63: a loop steps past its bound by one
step (a tile, or the grid of a GPU loop distributed over blocks) before it exits,
and that step must not overflow either.

Beyond 64 bits (an output of more than 2**63 elements, a size near 2**63 from an
expanded view) nothing can index the tensor: :func:`size_index_bits` raises a
:class:`~tc.errors.TcArgumentError` naming the tensor and the dimension.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from tc.errors import TcArgumentError
from tc.ir import nodes as ir

#: Index values below this fit 32-bit arithmetic with room for a loop's last step.
LIMIT_32 = 2**31 - 2**24
#: ... and below this, 64-bit arithmetic.
LIMIT_64 = 2**63 - 2**32

__all__ = ["LIMIT_32", "LIMIT_64", "call_index_bits", "element_span", "index_bits",
           "size_index_bits"]


def element_span(shape: Sequence[int], strides: Sequence[int]) -> int:
    """How many elements a view spans from its first one: ``1 + sum((n - 1) * |st|)``
    (0 for an empty view)."""
    if any(n == 0 for n in shape):
        return 0
    return 1 + sum((n - 1) * abs(st) for n, st in zip(shape, strides, strict=True))


def _numel(shape: Iterable[int]) -> int:
    total = 1
    for n in shape:
        total *= max(n, 0)
    return total


def _too_large(fn: ir.Function, what: str, value: int) -> TcArgumentError:
    return TcArgumentError(f"{fn.name}: {what} is {value}, more than 64-bit index arithmetic "
                           f"addresses (< {LIMIT_64})")


def _size_bits(fn: ir.Function, sizes: Mapping[str, int]) -> int:
    """See :func:`size_index_bits` (uncached)."""
    wide = False
    for s in fn.sizes:
        v = sizes.get(s.name)
        if v is None:
            continue
        if abs(v) >= LIMIT_64:
            raise _too_large(fn, f"size '{s.name}' (dimension {s.dim} of '{s.tensor}')", v)
        wide |= abs(v) >= LIMIT_32
    # Inputs: only their element counts here (torch bounds their spans by their
    # storage); outputs and temporaries are allocated dense, so their counts are
    # their spans and must be addressable.
    for t in fn.tensors:
        total = 1
        for d, extent in enumerate(t.shape):
            total *= max(extent.evaluate(sizes), 0)
            if total >= LIMIT_64 and t.role != "input":
                raise _too_large(fn, f"the element count of '{t.name}' up to dimension {d}",
                                 total)
        wide |= total >= LIMIT_32
    for st in fn.stages:
        for d in st.domain:
            for bound in (d.lo.evaluate(sizes), d.hi.evaluate(sizes)):
                if abs(bound) >= LIMIT_64:
                    raise _too_large(fn, f"a bound of index '{d.name}' of the statement "
                                     f"writing '{st.tensor}'", bound)
                wide |= abs(bound) >= LIMIT_32
    return 64 if wide else 32


def size_index_bits(fn: ir.Function, sizes: Mapping[str, int]) -> int:
    """32 or 64: the index width that ``fn``'s sizes, element counts and loop bounds
    need at ``sizes``. Raises ``TcArgumentError`` (naming the tensor and dimension)
    when even 64 bits do not suffice. Kept on ``fn`` per sizes (every call asks)."""
    key = tuple(sizes.items())
    cache = fn.__dict__.get("_index_bits")
    if cache is None:
        cache = {}
        object.__setattr__(fn, "_index_bits", cache)
    bits = cache.get(key)
    if bits is None:
        bits = _size_bits(fn, sizes)
        if len(cache) < 4096:
            cache[key] = bits
    return bits


def index_bits(fn: ir.Function, sizes: Mapping[str, int],
               input_strides: Sequence[Sequence[int]]) -> int:
    """32 or 64: the index width of a program computing ``fn`` for inputs of these
    sizes and strides (the inputs' element spans count too: a transposed or sliced
    view may span far more elements than it holds)."""
    bits = size_index_bits(fn, sizes)
    if bits == 64:
        return 64
    for t, strides in zip(fn.inputs, input_strides, strict=True):
        shape = [s.evaluate(sizes) for s in t.shape]
        if element_span(shape, strides) >= LIMIT_32:
            return 64
    return 32


def call_index_bits(fn: ir.Function, sizes: Mapping[str, int], signature: tuple) -> int:
    """:func:`index_bits` of a call, from its signature (``BoundCall.signature()``:
    per input its dtype, shape and strides, then the device; they determine the
    sizes). Kept on ``fn`` per signature: a symbolic CPU kernel's every call asks
    (``codegen.executor.memo_key``), and one lookup costs less than the sums."""
    cache = fn.__dict__.get("_call_index_bits")
    if cache is None:
        cache = {}
        object.__setattr__(fn, "_call_index_bits", cache)
    bits = cache.get(signature)
    if bits is None:
        bits = size_index_bits(fn, sizes)
        if bits == 32 and any(element_span(shape, strides) >= LIMIT_32
                              for _, shape, strides in signature[:-1]):
            bits = 64
        if len(cache) < 4096:
            cache[signature] = bits
    return bits
