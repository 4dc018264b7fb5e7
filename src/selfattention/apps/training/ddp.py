"""Several processes training one model: ``torch.distributed`` + ``DistributedDataParallel``.

``torchrun --nproc-per-node N ...`` starts N copies of a program with ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in their environment.
:func:`process_group` turns those into an initialised process group (gloo on CPU; NCCL with
device ``cuda:LOCAL_RANK`` when CUDA is there), and :func:`current` gives the object
:func:`~selfattention.apps.training.fit` trains through:

* :class:`Local` (no process group, or a group of one): everything is the identity and a
  single-process run does exactly what it did before;
* :class:`Distributed`: the model wrapped in DDP (gradients averaged over the ranks after each
  backward), each rank's share of every epoch's batches, sums over the ranks, rank 0's decisions
  broadcast to all, a barrier after rank 0 writes a file.

Failures: a collective that cannot complete -- a peer died (its socket closed) or stayed silent
past the process-group ``timeout`` -- raises :class:`DistributedError` naming this rank and the
cause, so that no rank hangs longer than ``timeout`` seconds.
"""

from __future__ import annotations

import contextlib
import datetime
import inspect
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "DEFAULT_TIMEOUT",
    "Distributed",
    "DistributedError",
    "Local",
    "current",
    "is_main_process",
    "launched",
    "process_group",
    "rank",
    "shard",
    "world_size",
]

T = TypeVar("T")

# Seconds a rank waits in a collective before it gives up: the bound on any hang. Rank 0 writing
# a checkpoint while the others wait at a barrier must fit in it (MiniLM's ~0.3 GB: a few s).
DEFAULT_TIMEOUT = 300.0

# Words in the RuntimeErrors of gloo and NCCL when a peer is gone or silent.
_COMM_WORDS = ("gloo", "nccl", "connection closed", "connection reset", "timed out",
               "timeout", "pair closure", "broken pipe", "peer")  # fmt: skip


# The timeout :func:`process_group` set (None: a group someone else initialised).
_timeout: list[float | None] = [None]


class DistributedError(RuntimeError):
    """A collective across the training processes failed: another rank raised or died, or
    stayed silent past the process-group timeout."""


def launched() -> bool:
    """True when started by ``torchrun`` (or by hand with its variables) with more than one
    process: ``WORLD_SIZE`` > 1 and ``RANK`` set."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ
    except ValueError:
        raise ValueError(
            f"WORLD_SIZE must be an integer, got {os.environ['WORLD_SIZE']!r}"
        ) from None


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if _active() else 0


def world_size() -> int:
    """How many processes train together (1 without a process group)."""
    return dist.get_world_size() if _active() else 1


def is_main_process() -> bool:
    """True on rank 0 (and in a single-process run): the process that logs and writes files."""
    return rank() == 0


@contextlib.contextmanager
def process_group(timeout: float = DEFAULT_TIMEOUT) -> Iterator[torch.device | None]:
    """Initialise the process group ``torchrun`` describes in the environment, for the block.

    Yields the device this rank trains on (``cuda:LOCAL_RANK`` with NCCL when CUDA is
    available, else the CPU with gloo), or None when the program was not launched for several
    processes (then nothing is initialised). ``timeout`` (seconds) bounds every collective. On
    a clean exit the group is destroyed after a last barrier; after an error it is left to the
    process's exit (a barrier then would wait for ranks that are gone).
    """
    if not (isinstance(timeout, int | float) and not isinstance(timeout, bool) and timeout > 0):
        raise ValueError(f"process_group: timeout must be a number of seconds > 0, got {timeout!r}")
    if not launched() or not dist.is_available() or dist.is_initialized():
        yield None if not dist.is_initialized() else _device()
        return
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device, backend = torch.device("cuda", local), "nccl"
        torch.cuda.set_device(device)
    else:
        device, backend = torch.device("cpu"), "gloo"
    try:
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout))
    except (RuntimeError, ValueError) as e:
        addr = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
        raise DistributedError(
            f"rank {os.environ.get('RANK')}: could not join the process group at {addr} "
            f"({_first_line(e)})"
        ) from e
    _timeout[0] = float(timeout)
    try:
        yield device
    finally:
        _timeout[0] = None
    with contextlib.suppress(RuntimeError):
        dist.barrier()  # nobody leaves while another rank still needs it
    dist.destroy_process_group()


def _device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__


def is_comm_error(e: BaseException) -> bool:
    """Whether ``e`` (from a collective or a DDP backward) says a peer is gone or silent."""
    if isinstance(e, DistributedError):
        return False  # already explained
    dist_error = getattr(dist, "DistError", None)
    if dist_error is not None and isinstance(e, dist_error):
        return True
    text = str(e).lower()
    return isinstance(e, RuntimeError) and any(w in text for w in _COMM_WORDS)


def shard(items: Sequence[T], r: int, n: int, *, pad: bool) -> list[T]:
    """Rank ``r``'s share of ``items`` out of ``n``: items ``r, r + n, r + 2n, ...``.

    With ``pad`` every rank gets ``ceil(len / n)`` items, the short ones wrapping around to the
    start (as ``torch.utils.data.DistributedSampler`` does), so that all ranks take the same
    number of optimizer steps; without it the shares are disjoint and may differ by one.
    Only the chosen items are read from ``items`` (a lazy sequence stays lazy).
    """
    length = len(items)
    count = math.ceil(length / n) if pad else len(range(r, length, n))
    if length == 0:
        return []
    return [items[(r + k * n) % length] for k in range(count)]


class Local:
    """One process: what :func:`fit` needs from the processes it runs in, as identities."""

    rank, size, main = 0, 1, True
    device: torch.device | None = None

    @property
    def batch_device(self) -> torch.device | None:
        """Where batches must go before the model sees them (None: leave them where they are)."""
        return self.device if self.device is not None and self.device.type != "cpu" else None

    def wrap(self, model: nn.Module) -> nn.Module:
        return model

    def share(self, batches: Iterable[T], *, pad: bool) -> Iterable[T]:
        return batches

    def steps(self, count: int) -> int:
        return count

    def sum(self, values: Sequence[float]) -> list[float]:
        return [float(v) for v in values]

    def decide(self, value: T) -> T:
        return value

    def everywhere(self, fn: Callable[[], T], what: str) -> T:
        return fn()

    def barrier(self) -> None:
        pass

    def broadcast_state(self, model: nn.Module) -> None:
        pass

    def explain(self, e: BaseException, what: str) -> BaseException:
        return e


class Distributed(Local):
    """Several processes in the default process group (at least two)."""

    def __init__(self) -> None:
        self.rank, self.size = dist.get_rank(), dist.get_world_size()
        self.main = self.rank == 0
        self.device = _device()
        self.timeout = _timeout[0]

    def wrap(self, model: nn.Module) -> nn.Module:
        """``model`` in DDP: rank 0's weights broadcast to all, gradients averaged after each
        backward. Buffers are not re-broadcast before each forward (no model here keeps running
        statistics); parameters every forward leaves unused (a pooler) are tolerated."""
        ids = [self.device.index] if self.device.type == "cuda" else None
        # Newer torch renamed broadcast_buffers (and warns about the old name).
        params = inspect.signature(nn.parallel.DistributedDataParallel).parameters
        quiet = "forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers"
        # static_graph: the same parameters take part in every step, so DDP learns once which
        # ones a forward leaves unused instead of searching the graph at every step.
        wrapped = self._guard(
            lambda: nn.parallel.DistributedDataParallel(
                model, device_ids=ids, static_graph=True, **{quiet: False}
            ),
            "setting up DistributedDataParallel",
        )
        self.own_dropout_stream()
        return wrapped

    def own_dropout_stream(self) -> None:
        """Give this rank its own torch random stream from here on.

        Every rank seeded torch alike (so that they built the same model); after that torch's
        generator only draws dropout masks (batch order comes from Python's ``random``, kept
        alike on every rank), and ranks holding different examples should not share masks, as
        the examples of one big batch do not. Deterministic: one draw, the same on every rank,
        plus the rank."""
        base = int(torch.randint(0, 2**62, (1,)).item())
        torch.manual_seed(base + self.rank)
        if self.device.type == "cuda":
            torch.cuda.manual_seed(base + self.rank)

    def share(self, batches: Iterable[T], *, pad: bool) -> list[T]:
        items = batches if hasattr(batches, "__getitem__") else list(batches)
        return shard(items, self.rank, self.size, pad=pad)  # type: ignore[arg-type]

    def steps(self, count: int) -> int:
        return math.ceil(count / self.size)

    def sum(self, values: Sequence[float]) -> list[float]:
        """Each value summed over the ranks (float64, so that counts stay exact)."""
        t = torch.tensor([float(v) for v in values], dtype=torch.float64)
        t = t.to(self.device) if self.device.type == "cuda" else t
        self._guard(lambda: dist.all_reduce(t), "summing metrics over the ranks")
        return [float(v) for v in t.cpu()]

    def decide(self, value: T) -> T:
        """Rank 0's ``value`` (any picklable object), on every rank."""
        if isinstance(value, bool):  # asked at every step: one small broadcast, no pickling
            t = torch.tensor([int(value)], dtype=torch.int32)
            t = t.to(self.device) if self.device.type == "cuda" else t
            self._guard(lambda: dist.broadcast(t, src=0), "sharing rank 0's decision")
            return bool(t.item())  # type: ignore[return-value]
        box = [value]
        self._guard(lambda: dist.broadcast_object_list(box, src=0), "sharing rank 0's decision")
        return box[0]

    def everywhere(self, fn: Callable[[], T], what: str) -> T:
        """Run ``fn`` on every rank; if it raised on any, raise on all (this rank's own error,
        or a :class:`DistributedError` naming the rank that failed), so that no rank goes on
        to wait for one that stopped."""
        result: Any = None
        failure: BaseException | None = None
        try:
            result = fn()
        except Exception as e:
            failure = e
        gathered: list[Any] = [None] * self.size
        mine = None if failure is None else _first_line(failure)
        self._guard(lambda: dist.all_gather_object(gathered, mine), what)
        if failure is not None:
            raise failure
        for r, msg in enumerate(gathered):
            if msg is not None:
                raise DistributedError(f"rank {r} of {self.size} failed {what}: {msg}")
        return result

    def barrier(self) -> None:
        self._guard(dist.barrier, "waiting at a barrier for the other ranks")

    def broadcast_state(self, model: nn.Module) -> None:
        """Rank 0's parameters and buffers copied into every rank's ``model``."""

        def send() -> None:
            for t in model.state_dict().values():
                dist.broadcast(t, src=0)

        with torch.no_grad():
            self._guard(send, "sharing the best weights")

    def explain(self, e: BaseException, what: str) -> BaseException:
        """``e`` as a :class:`DistributedError` if it says a peer is gone or silent."""
        if not is_comm_error(e):
            return e
        wait = "the process-group timeout" if self.timeout is None else f"{self.timeout:g} s"
        return DistributedError(
            f"rank {self.rank} of {self.size}: {what} failed: another training process stopped "
            f"or did not answer within {wait} (see its error); "
            f"{_first_line(e)}"
        )

    def _guard(self, fn: Callable[[], T], what: str) -> T:
        try:
            return fn()
        except RuntimeError as e:
            raise self.explain(e, what) from e


def current() -> Local:
    """The processes this one trains with: :class:`Distributed` when a process group of two or
    more is initialised, else :class:`Local`."""
    return Distributed() if _active() else Local()
