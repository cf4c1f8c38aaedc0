"""The command line: ``python -m tc check|explain|export|grad|cache|tune ...``."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tc.arguments import check_ranges
from tc.errors import TcError
from tc.ir.printer import function_str
from tc.lang.frontend import CheckedProgram, check_text
from tc.lang.printer import tree_text
from tc.options import MappingOptions

if TYPE_CHECKING:
    from codegen.compiler import CompiledKernel

#: The front end's stages, before any compiling (``mlir``: the export, tc.mlir).
FRONT_STAGES = ("ast", "ir", "mlir")
#: Stage names kept from before the source stages were named after their targets:
#: ``c`` prints the ``cpu`` target's source.
_ALIASES = {"c": "cpu"}


def explain_stages() -> tuple[str, ...]:
    """The stages ``explain --stage`` prints: the front end's, every stage of the
    compiler's pipeline (:data:`codegen.compiler.PIPELINE`), ``kernel`` (the final
    kernel AST), then each registered target's source, named after the target."""
    from codegen.compiler import PIPELINE
    from codegen.targets import target_names

    return FRONT_STAGES + PIPELINE + ("kernel",) + target_names() + tuple(_ALIASES)


def _source_target(stage: str) -> str | None:
    """The target whose source ``stage`` prints, or None for any other stage."""
    from codegen.targets import target_names

    stage = _ALIASES.get(stage, stage)
    return stage if stage in target_names() else None


def _read(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    with open(path, encoding="utf-8") as f:
        return f.read()


def parse_sizes(text: str | None) -> dict[str, int]:
    """``"M=64,N=32"`` -> ``{"M": 64, "N": 32}``; raises TcError on malformed text."""
    sizes: dict[str, int] = {}
    if not text:
        return sizes
    for item in text.split(","):
        name, sep, value = item.partition("=")
        name = name.strip()
        try:
            number = int(value)
        except ValueError:
            number = -1
        if not sep or not name.isidentifier() or number < 0:
            raise TcError(f"--sizes: expected NAME=INTEGER items separated by commas, got "
                          f"{item!r}")
        sizes[name] = number
    return sizes


def _entry(checked: CheckedProgram, entry: str | None) -> str:
    names = list(checked.functions)
    if entry is None:
        if len(names) == 1:
            return names[0]
        raise TcError(f"the text has several definitions ({', '.join(names)}): pick one "
                      "with --entry")
    if entry not in checked.functions:
        raise TcError(f"no definition named {entry!r}; the text defines "
                      f"{', '.join(names) or 'nothing'}")
    return entry


def cmd_check(args: argparse.Namespace) -> int:
    status = 0
    for path in args.files:
        try:
            checked = check_text(_read(path))
        except OSError as e:
            print(f"{path}: cannot read: {e.strerror}", file=sys.stderr)
            status = 1
            continue
        except TcError as e:
            print(f"{path}:{e.line or 0}:{e.column or 0}: {e}", file=sys.stderr)
            status = 1
            continue
        for w in checked.warnings:
            # Under --strict a warning is an error, and says so.
            text = str(w).replace("warning: ", "error: ", 1) if args.strict else str(w)
            print(f"{path}:{w.line or 0}:{w.column or 0}: {text}", file=sys.stderr)
        if checked.warnings and args.strict:
            status = 1
            continue
        note = f", {len(checked.warnings)} warning(s)" if checked.warnings else ""
        print(f"{path}: ok ({', '.join(checked.functions)}{note})")
    return status


def _definition(args: argparse.Namespace):
    """The checked file, the entry point's name and function, and ``--sizes`` (each a
    size of that entry point)."""
    checked = check_text(_read(args.file))
    entry = _entry(checked, args.entry)
    fn = checked.functions[entry]
    sizes = parse_sizes(args.sizes)
    unknown = set(sizes) - set(fn.size_names)
    if unknown:
        raise TcError(f"--sizes: {', '.join(sorted(unknown))} "
                      f"{'is not a size' if len(unknown) == 1 else 'are not sizes'} of "
                      f"{entry} (its sizes: {', '.join(fn.size_names) or 'none'})")
    return checked, entry, fn, sizes


def cmd_explain(args: argparse.Namespace) -> int:
    checked, entry, fn, sizes = _definition(args)
    if args.stage == "ast":
        print(tree_text(checked.definition(entry)))
    elif args.stage == "ir":
        print(function_str(fn, sizes))
    elif args.stage == "mlir":
        print(_export(fn, sizes, "--stage mlir"), end="")
    else:
        print(_compiled_stage(fn, sizes, args))
    return 0


def _export(fn, sizes: dict[str, int], what: str, dynamic: bool = False) -> str:
    """The MLIR export of ``fn`` for concrete ``sizes`` (every size given)."""
    from tc.mlir.export import export_function

    missing = [n for n in fn.size_names if n not in sizes]
    if missing:
        raise TcError(f"{what} needs every size (the export checks its reads at them): "
                      f"give them with --sizes (missing: {', '.join(missing)})")
    check_ranges(fn, sizes)
    return export_function(fn, sizes, dynamic)


def cmd_export(args: argparse.Namespace) -> int:
    """Write a definition as MLIR (linalg on tensors): tc.to_mlir on the command line."""
    _, _, fn, sizes = _definition(args)
    text = _export(fn, sizes, "export", args.dynamic)
    if args.output in (None, "-"):
        print(text, end="")
    else:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    return 0


def cmd_grad(args: argparse.Namespace) -> int:
    """Print the derived backward of a definition (TC text, checked by the front end)."""
    from tc.grad import derive

    checked = check_text(_read(args.file))
    entry = _entry(checked, args.entry)
    fn = checked.functions[entry]
    wrt = None
    if args.wrt:
        names = [t.name for t in fn.inputs]
        wanted = [w.strip() for w in args.wrt.split(",")]
        unknown = [w for w in wanted if w not in names]
        if unknown:
            raise TcError(f"--wrt: {', '.join(unknown)} not among the inputs of {entry} "
                          f"({', '.join(names)})")
        wrt = tuple(names.index(w) for w in wanted)
    backward = derive(fn, wrt=wrt)
    check_text(backward.text)  # the derived text is compiled like any other: check it here
    print(backward.text, end="")
    return 0


def _options(text: str | None) -> MappingOptions:
    if text is None:
        return MappingOptions("naive")
    if text.strip().startswith("{"):
        return MappingOptions.deserialize(text)
    if os.path.exists(text):
        with open(text, encoding="utf-8") as f:
            return MappingOptions.deserialize(f.read())
    return MappingOptions(text)


def _compiled_stage(fn, sizes: dict[str, int], args: argparse.Namespace) -> str:
    from codegen.compiler import PIPELINE, compile_program, contiguous_strides
    from codegen.executor import uses_symbolic_sizes
    from codegen.printer import print_kernel
    from codegen.targets import get_target

    missing = [n for n in fn.size_names if n not in sizes]
    if missing:
        raise TcError(f"--stage {args.stage} compiles for concrete sizes: give every size "
                      f"with --sizes (missing: {', '.join(missing)})")
    check_ranges(fn, sizes)
    strides = [contiguous_strides([s.evaluate(sizes) for s in t.shape]) for t in fn.inputs]
    source = _source_target(args.stage)
    target = get_target(source or args.target)
    options = _options(args.options)
    # The program a call runs: size-generic when the target compiles these options for
    # every size (the sizes then only guide speed choices).
    program = compile_program(fn, options, sizes, strides, target.strategy,
                              uses_symbolic_sizes(target, options),
                              trace=args.stage in PIPELINE)
    if args.stage in ("scop", "dependences", "schedule"):
        return program.stages[args.stage]
    if args.stage == "map":
        return f"# mapped for the {target.name} target:\n{program.stages['map']}"
    out = [f"# host program\n{program.stages['host']}"]
    if args.stage in PIPELINE:  # a kernel stage: the kernel ASTs after it
        return "\n\n".join([*out, program.stages[args.stage]])
    for ck in program.kernels:
        head = f"# kernel {ck.name}: grid {ck.grid}, block {ck.block}"
        if args.stage == "kernel":
            out.append(f"{head}\n{print_kernel(ck.kernel, 'kernel')}")
        elif source != "cuda":
            out.append(f"{head}\n{ck.source(target.name)}")
        else:
            from codegen.nvrtc import compile_cuda

            cc = compile_cuda(ck.cuda_source, ck.name, args.arch)
            out.append(f"{head}\n{_cuda_usage(ck, cc.arch, cc.resources)}\n{ck.cuda_source}")
    return "\n\n".join(out)


def _cuda_usage(ck: CompiledKernel, arch: str, res: dict[str, int]) -> str:
    """The launch configuration and the ptxas resources of one kernel, as comments."""
    blocks, threads = math.prod(ck.grid), math.prod(ck.block)
    # Shared memory is declared statically in the kernel; the executor launches every
    # kernel without dynamic shared memory.
    launch = (f"# launch: {blocks} blocks x {threads} threads per block = "
              f"{blocks * threads} threads; shared memory per block: "
              f"{res.get('shared_bytes', 0)} bytes static, 0 bytes dynamic")
    usage = (f"# {arch}: {res.get('registers', 0)} registers, "
             f"{res.get('spill_bytes', 0)} spill bytes ({res.get('spill_stores', 0)} stores, "
             f"{res.get('spill_loads', 0)} loads), {res.get('shared_bytes', 0)} shared bytes, "
             f"{res.get('local_bytes', 0)} local bytes")
    return f"{launch}\n{usage}"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tc", description="Tensor Comprehensions in "
                                "Python: check TC text and print each compilation stage.")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check", help="check TC files and print diagnostics (exit 1 on error, "
                       "or on a warning with --strict)")
    c.add_argument("files", nargs="+", metavar="FILE", help="TC text files ('-' for stdin)")
    c.add_argument("--strict", action="store_true",
                   help="treat warnings (tc.TcWarning) as errors: exit 1 if there are any")
    c.set_defaults(func=cmd_check)
    e = sub.add_parser("explain", help="print one compilation stage of a definition")
    e.add_argument("file", metavar="FILE")
    e.add_argument("--entry", help="the definition (needed when the file has several)")
    e.add_argument("--sizes", help="concrete sizes, e.g. M=64,N=32")
    e.add_argument("--stage", choices=explain_stages(), default="ir",
                   help="the stage to print: the front end's, the compiler's pipeline, the "
                        "final kernel AST, or a target's source")
    e.add_argument("--options", help="mapping options: a preset name (naive, mlp, ...), "
                   "serialized options (JSON text) or a file holding them; default naive")
    e.add_argument("--arch", help="CUDA architecture for --stage cuda (default sm_80)")
    e.add_argument("--target", default="cuda",
                   help="the target whose mapping the compiled stages show (cuda, opencl: "
                        "GPU blocks and threads; cpu: parallel and vector loops); a target's "
                        "source stage implies it")
    e.set_defaults(func=cmd_explain)
    x = sub.add_parser("export", help="write a definition as MLIR (func, linalg.generic on "
                       "tensors, arith, math), as tc.to_mlir")
    x.add_argument("file", metavar="FILE")
    x.add_argument("--entry", help="the definition (needed when the file has several)")
    x.add_argument("--sizes", help="every size, e.g. M=64,N=32 (the shapes of the export)")
    x.add_argument("--dynamic", action="store_true",
                   help="dynamic (?) dimensions for the size symbols: one function for "
                        "every size (--sizes are still checked)")
    x.add_argument("-o", "--output", metavar="OUT", help="the output file (default stdout)")
    x.set_defaults(func=cmd_export)
    g = sub.add_parser("grad", help="print the automatically derived backward definition")
    g.add_argument("file", metavar="FILE")
    g.add_argument("--entry", help="the definition (needed when the file has several)")
    g.add_argument("--wrt", help="only these inputs' gradients, e.g. W,bias (default: all)")
    g.set_defaults(func=cmd_grad)
    from tc.cli_cache import add_parser as add_cache_parser
    from tc.cli_tune import add_parser as add_tune_parser

    add_cache_parser(sub)
    add_tune_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m tc`` and of the ``tc`` script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except TcError as e:
        print(str(e), file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0
    except OSError as e:
        print(f"cannot read {e.filename}: {e.strerror}", file=sys.stderr)
        return 1
