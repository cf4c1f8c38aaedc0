"""The launch configuration of a GPU kernel compiled for every size.

A kernel compiled for one shape is launched on the grid and block its mapping
tightened to that shape. A kernel that takes its sizes as arguments
(``compile_program(symbolic=True)``) serves every shape, so neither may depend on one:

* its block is baked into the code (shared-memory copies stride by it, barriers and
  thread placement assume it), so the mapping only tightens it to bounds that hold at
  every size (a tile's extent, ``polyhedral.mapping.member_bounds``), and it never
  changes from call to call;
* its grid is not: block-mapped loops wrap around with a stride of the number of
  blocks the kernel reads at run time (``get_num_groups`` / ``gridDim``, see
  ``codegen.kernel.For``), so any grid gives the same results, and the host launches
  only the blocks a call needs. ``Kernel.grid`` is then an upper bound (the options'
  blocks, or the bound of the mapped member), and ``kernel.meta["grid_spans"]`` holds,
  per grid axis, the number of values the mapped loop takes as an expression of the
  size arguments, evaluated per call by :func:`call_grid`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import islpy as isl

from codegen import host
from codegen import kernel as k
from codegen.lower import expr as ast_expr
from polyhedral.mapping import KernelMapping
from tc.errors import TcInternalError
from tc.ir import nodes as ir

__all__ = ["GRID_SPANS", "call_grid", "call_kernel", "grid_spans", "with_grid_spans"]

#: The key of ``Kernel.meta`` holding the per-axis grid expressions.
GRID_SPANS = "grid_spans"


def grid_spans(mapping: KernelMapping, context: isl.Set,
               params: Mapping[str, str]) -> tuple[ir.Expr | None, ...]:
    """Per block-mapped axis of ``mapping`` (x, y, z order), the blocks a call needs as
    an expression of the size arguments (None: unknown, launch the upper bound).
    ``params`` maps isl parameter names to TC size names (as ``codegen.lower.expr``)."""
    build = isl.AstBuild.from_context(context)
    out: list[ir.Expr | None] = []
    for span in mapping.grid_spans:
        if span is None:
            out.append(None)
            continue
        try:
            out.append(ast_expr(build.expr_from_pw_aff(span), params))
        except (isl.Error, TcInternalError):
            # A span isl cannot print costs idle blocks, never a wrong result.
            out.append(None)
    return tuple(out)


def with_grid_spans(kern: k.Kernel, spans: Sequence[ir.Expr | None]) -> k.Kernel:
    """``kern`` launching per call only the blocks ``spans`` (per axis) say it needs."""
    if not any(s is not None for s in spans):
        return kern
    return dataclasses.replace(kern, meta={**kern.meta, GRID_SPANS: tuple(spans)})


def call_grid(kern: k.Kernel, sizes: Mapping[str, int]) -> tuple[int, int, int]:
    """The grid to launch ``kern`` on for a call with ``sizes`` (TC size names): its
    upper bound clipped to the blocks the call needs, at least one per axis."""
    spans = kern.meta.get(GRID_SPANS)
    if not spans:
        return kern.grid
    grid = list(kern.grid)
    for axis, span in enumerate(spans):
        if span is None or axis >= 3:
            continue
        try:
            need = int(host.evaluate(span, sizes))
        except (KeyError, ZeroDivisionError, TypeError):
            continue
        grid[axis] = max(1, min(grid[axis], need))
    return grid[0], grid[1], grid[2]


def call_kernel(kern: k.Kernel, sizes: Mapping[str, int]) -> k.Kernel:
    """``kern`` with the launch configuration of a call with ``sizes`` (itself when
    that is its own)."""
    grid = call_grid(kern, sizes)
    return kern if grid == kern.grid else dataclasses.replace(kern, grid=grid)
