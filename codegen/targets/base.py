"""What a target is: the one interface the executor, the cache, the tuner and the CLI ask.

A target turns kernel ASTs into something that runs: it names its device type (the
torch device its tensors live on), says whether it is available here, gives its
launch and resource limits (which bound the tuner's option space, so the tuner never
draws a point the target cannot run), picks the mapping strategy of the polyhedral
level (GPU blocks and threads, or CPU parallel and vector loops), prints a kernel
with its own printer class, builds the printed kernels, dumps and loads the built
artefact for the compilation cache, launches one kernel, and writes the device and
version text of the cache key. Nothing outside ``codegen/targets/`` compares target
names: it asks the object.

Adding a target means one module with a subclass of :class:`Target` (and of
:class:`~codegen.printer.CFamilyPrinter`) and one line in ``codegen/targets/__init__``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from codegen import kernel as k
from codegen.launch import KernelArg, LaunchLimits
from codegen.printer import CFamilyPrinter

#: The mapping strategies of ``polyhedral/``: GPU blocks and threads, or CPU loops.
STRATEGIES = ("gpu", "cpu")


@dataclass(frozen=True)
class KernelInfo:
    """What ``executor.kernels`` shows of one kernel."""

    name: str
    source: str
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    ptx: str | None = None
    resources: dict = field(default_factory=dict)


class Target(ABC):
    """A compilation target (see the module docstring). Instances are stateless apart
    from explicit caches; the registry holds one of each."""

    #: The registry name (``backend=`` of the API).
    name: ClassVar[str]
    #: The torch device type of the tensors its kernels read and write.
    device_type: ClassVar[str]
    #: The mapping strategy of the polyhedral level (one of :data:`STRATEGIES`).
    strategy: ClassVar[str]
    #: The printer of its source text.
    printer: ClassVar[type[CFamilyPrinter]]
    #: Whether threads of a block synchronise (barriers, shared memory).
    has_barriers: ClassVar[bool] = True
    #: Whether its kernels take sizes and strides as arguments when the options leave
    #: sizes symbolic, so that one build serves every shape (compile_program).
    symbolic_sizes: ClassVar[bool] = False

    # -- what the target is ------------------------------------------------------------------
    @abstractmethod
    def available(self) -> bool:
        """Whether kernels can run here (never raises)."""

    def unavailable_reason(self) -> str:
        """Why :meth:`available` is false: what to install or where to run."""
        return f"the {self.name} target is not available here"

    @abstractmethod
    def limits(self) -> LaunchLimits:
        """Threads per block and grid extents the target accepts."""

    def shared_memory_bytes(self) -> int:
        """Shared (local) memory per block; 0 when the target has none."""
        return 0

    # -- printing and building -------------------------------------------------------------
    def source(self, kernel: k.Kernel) -> str:
        """The kernel as this target's source text."""
        return self.printer(kernel).kernel()

    @abstractmethod
    def build(self, kernels: Sequence[k.Kernel], binaries: Sequence[bytes | None] | None,
              arch: str | None) -> list[Any]:
        """One launchable handle per kernel, compiled from source, or loaded from
        ``binaries`` (see :meth:`binaries`) where one is given. Raises
        ``TcBackendError`` when the build fails or a binary is rejected."""

    @abstractmethod
    def binaries(self, handles: Sequence[Any]) -> list[bytes | None]:
        """What :meth:`build` reloads each kernel from, for the compilation cache."""

    def info(self, kernel: k.Kernel, handle: Any) -> KernelInfo:
        """What the executor shows of a built kernel."""
        return KernelInfo(kernel.name, self.source(kernel), kernel.grid, kernel.block)

    @abstractmethod
    def launch(self, handle: Any, kernel: k.Kernel, tensors: Sequence[Any], n_inputs: int,
               sizes: Sequence[int]) -> None:
        """Run one built kernel and wait for it (CUDA: enqueue on torch's current
        stream). ``tensors`` are its global buffers in argument order (the first
        ``n_inputs`` only read), ``sizes`` its size arguments (of the kernel's
        ``index_type``); every tensor is on a device :meth:`check_device` accepted."""

    @staticmethod
    def packed(tensors: Sequence[Any], n_inputs: int, sizes: Sequence[int],
               kernel: k.Kernel | None = None) -> list[KernelArg]:
        """The arguments as :class:`~codegen.launch.KernelArg` values (for launchers
        that take them); the sizes in ``kernel``'s index type (int32 without one)."""
        from tc.ir.types import ScalarType

        index = kernel.index_type if kernel is not None else ScalarType.INT32
        return ([KernelArg.buffer(t, written=i >= n_inputs) for i, t in enumerate(tensors)]
                + [KernelArg.scalar(v, index) for v in sizes])

    # -- devices and the cache ---------------------------------------------------------------
    def check_device(self, device: Any) -> None:
        """``TcBackendError`` unless tensors on torch ``device`` can be passed."""
        from tc.errors import TcBackendError

        if device.type != self.device_type:
            raise TcBackendError(f"backend {self.name!r} runs on {self.device_type.upper()} "
                                 f"tensors, got tensors on {device}")

    @abstractmethod
    def device_text(self, arch: str | None = None, device_index: int | None = None) -> str:
        """The device part of a cache key (what the compiled code is specific to)."""

    @abstractmethod
    def versions_text(self) -> str:
        """The target's tool versions, for the cache key (tc's own are added by it)."""

    def __repr__(self) -> str:
        return f"<target {self.name}>"
