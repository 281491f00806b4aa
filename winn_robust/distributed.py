"""Process-group plumbing for data-parallel training under torchrun, in one small module.

Without torchrun (no WORLD_SIZE > 1 in the environment) every helper is a no-op on a world of
one, so single-process code runs exactly as before. Under torchrun each rank owns one device
(cuda:LOCAL_RANK, or the CPU), the backend follows the device (NCCL on CUDA, gloo on the CPU), and
collectives run on tensors that live on the training device, as NCCL requires.

Failures: a rank must never leave its peers waiting. Start-up work (settings, data, resume) runs
through `agree`, which gathers every rank's outcome, so all ranks stop together with one message;
later failures end the job through the process-group timeout and torchrun's own teardown (it stops
the other workers once one exits). `report_line` decides which rank prints what."""
from __future__ import annotations

import datetime
import functools
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NoReturn, ParamSpec, TypeVar

import torch
import torch.distributed as dist

from winn_robust.errors import UserError

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_TIMEOUT_MINUTES = 30.0
# how long a rank that stops because of another rank's failure waits before exiting: torchrun
# (checking its workers every 0.1 s) sees the failing rank exit first, names it as the root
# cause, and stops the waiting ranks itself
LINGER_SECONDS = 5.0


@dataclass(frozen=True)
class World:
    """Where this process sits: rank among world_size processes, local_rank on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the only rank that writes files and shows progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def describe(self) -> str:
        return f"rank {self.rank} of {self.world_size}"


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value.strip() else default
    except ValueError:
        raise UserError(f"environment variable {name}={value!r} is not an integer (set by torchrun)") from None


def world() -> World:
    """This process's place, from the live process group when there is one, else from the
    environment torchrun (or srun with the variables set) provides; a world of one otherwise."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0))
    return World(_env_int("RANK", 0), _env_int("WORLD_SIZE", 1), _env_int("LOCAL_RANK", 0))


def backend_for(device: torch.device) -> str:
    """NCCL for CUDA devices (GPU-to-GPU collectives), gloo for the CPU."""
    return "nccl" if device.type == "cuda" else "gloo"


def ddp_device_ids(device: torch.device) -> list[int] | None:
    """DistributedDataParallel's device_ids: the rank's one GPU, or None for CPU modules."""
    return [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None


def init_from_env(device: torch.device, timeout_minutes: float = DEFAULT_TIMEOUT_MINUTES) -> World:
    """Join the process group torchrun describes (env:// rendezvous: MASTER_ADDR, MASTER_PORT,
    RANK, WORLD_SIZE) with the backend the device needs. A no-op for a world of one. The timeout
    bounds how long a rank waits for its peers at any collective, so a lost peer ends the job."""
    here = world()
    if not here.distributed or dist.is_initialized():
        return here
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL and all_gather_object use the current device
    backend = backend_for(device)
    try:
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=timeout_minutes))
    except (RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{here.describe()} could not join the {backend} process group: {first}") from None
    return world()


def shutdown() -> None:
    """Leave the process group after a run that finished on every rank."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks, in place; returns the tensor (unchanged in a world of one)."""
    if _active():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Mean over ranks, in place (a float tensor); returns it."""
    if _active():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor /= dist.get_world_size()
    return tensor


def all_gather_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """Every rank's tensor concatenated along dim 0 in rank order. Ranks may hold different
    lengths along dim 0 (the trailing shape must agree): lengths are exchanged first and the
    pieces padded to the longest, since all_gather needs equal shapes."""
    if not _active():
        return tensor
    size = torch.tensor([tensor.shape[0]], dtype=torch.long, device=tensor.device)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, size)
    lengths = [int(s.item()) for s in sizes]
    longest = max(lengths)
    padded = tensor.new_zeros((longest, *tensor.shape[1:]))
    padded[:tensor.shape[0]] = tensor
    pieces = [torch.empty_like(padded) for _ in lengths]
    dist.all_gather(pieces, padded.contiguous())
    return torch.cat([piece[:n] for piece, n in zip(pieces, lengths)])


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's small picklable object, in rank order ([obj] in a world of one)."""
    if not _active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def average_gradients(parameters: Iterable[torch.Tensor]) -> None:
    """Replace every gradient by its mean over ranks, in one all-reduce of one flat buffer: what
    DistributedDataParallel does to its module's gradients, for code that calls a network several
    times per backward (a gradient penalty, a frozen critic under a generator) where DDP's
    one-forward-one-backward contract does not hold. Parameters without a gradient (None on every
    rank alike: the same code runs everywhere) are skipped. A no-op in a world of one."""
    if not _active():
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = all_reduce_mean(torch.cat([g.reshape(-1) for g in grads]))
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def max_over_ranks(value: int, device: torch.device) -> int:
    """The largest of every rank's `value` (the value itself in a world of one): e.g. the stop
    signal any rank received, so every rank stops at the same boundary and names that signal."""
    if not _active():
        return int(value)
    tensor = torch.tensor(int(value), dtype=torch.long, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())


def barrier() -> None:
    if _active():
        dist.barrier()


def shard(n: int, here: World | None = None) -> tuple[int, int]:
    """This rank's contiguous share [lo, hi) of n items: sizes differ by at most one, in rank order."""
    here = here or world()
    return here.rank * n // here.world_size, (here.rank + 1) * n // here.world_size


def main_only(fn: Callable[P, R]) -> Callable[P, R | None]:
    """Run `fn` on rank 0 only (files, progress, printed results); other ranks get None. The
    one guard every write goes through, so a second rank never races rank 0 for a file."""

    @functools.wraps(fn)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> R | None:
        return fn(*args, **kwargs) if world().is_main else None

    return guarded


def check_batch_split(batch_size: int, world_size: int | None = None) -> int:
    """The per-rank batch: the global batch (what the user asked, the paper's 100) split evenly."""
    world_size = world().world_size if world_size is None else world_size
    if batch_size % world_size:
        below, above = batch_size - batch_size % world_size, batch_size + world_size - batch_size % world_size
        options = f"{below} or {above}" if below > 0 else str(above)
        raise AgreedError(f"`batch_size` {batch_size} is the global batch, split evenly across {world_size} ranks; "
                          f"choose a multiple of {world_size} (e.g. {options})", mentions=("batch_size",))
    return batch_size // world_size


# ----------------------------------------------------------------------------- failures
class AgreedError(UserError):
    """A user error every rank raises alike (from the same settings, or after a collective told
    every rank about it): rank 0 alone reports it."""

    agreed = True


class PeerFailed(UserError):
    """This rank was fine, but another failed and has reported why: stop quietly (exit 2)."""

    quiet = True


class ReportedError(UserError):
    """The failure `agree` chose this rank to report (the lowest rank that hit it); `field` is
    the setting a SettingError named, so the CLI can still name its flag."""

    def __init__(self, message: str, field: str | None = None, mentions: tuple[str, ...] = (),
                 method_setting: bool = False) -> None:
        super().__init__(message, mentions)
        self.field = field
        self.method_setting = method_setting


def _describe_ranks(ranks: list[int], size: int) -> str:
    if len(ranks) == 1:
        return f"rank {ranks[0]} of {size}"
    return f"ranks {', '.join(map(str, ranks))} of {size}"


def agree(step: Callable[[], R]) -> R:
    """Run `step` on every rank, then agree on the outcome with one all_gather: if any rank
    failed, every rank stops (UserError, exit status 2) instead of the healthy ones waiting
    forever at the next collective. Each distinct message is reported once, by the lowest rank
    that hit it, naming the ranks when not all of them failed alike."""
    here = world()
    if not _active():
        return step()
    message: str | None = None
    field: str | None = None  # a SettingError's setting: the CLI names it by its flag
    mentions: tuple[str, ...] = ()
    method_setting = False
    unexpected: Exception | None = None
    result: R | None = None
    try:
        result = step()
    except UserError as exc:
        message, field, mentions = str(exc), getattr(exc, "field", None), exc.mentions
        method_setting = bool(getattr(exc, "method_setting", False))
    except Exception as exc:  # a bug on one rank must not leave the others waiting either
        message, unexpected = f"{type(exc).__name__}: {first_line(exc)}", exc
    messages = all_gather_object(message)
    if all(m is None for m in messages):
        return result  # type: ignore[return-value]
    if message is None:
        raise PeerFailed("another rank failed")
    if unexpected is not None:
        raise unexpected
    failed_alike = [r for r, m in enumerate(messages) if m == message]
    if failed_alike[0] != here.rank:
        raise PeerFailed(message)
    if len(failed_alike) == here.world_size:
        raise ReportedError(message, field, mentions, method_setting)
    raise ReportedError(f"{_describe_ranks(failed_alike, here.world_size)}: {message}", field, mentions, method_setting)


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The message's first line, without a leading "[source.cc:123] " location, cut to `limit`."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    line = text.splitlines()[0]
    if line.startswith("[") and "] " in line:
        line = line.split("] ", 1)[1]
    return line if len(line) <= limit else line[:limit - 3] + "..."


def report_line(exc: BaseException) -> str | None:
    """What this rank prints for an error that ends the run (None: nothing, a peer reports it).

    One process: the message. Under torchrun: errors every rank raised alike once, from rank 0;
    a user error on one rank with its rank; any other exception as one line with its rank (its
    traceback goes to torchrun's error file, `record_traceback`)."""
    here = world()
    if not here.distributed or isinstance(exc, ReportedError):
        return str(exc)
    if getattr(exc, "quiet", False):
        return None
    if getattr(exc, "agreed", False):
        return str(exc) if here.is_main else None
    if isinstance(exc, UserError):
        return f"{here.describe()}: {exc}"
    if lost_peer(exc):
        return (f"{here.describe()} stopped: a collective failed, most likely because another rank failed first "
                f"(see its message): {first_line(exc, 120)}")
    return f"{here.describe()} failed: {type(exc).__name__}: {first_line(exc)}"


def lost_peer(exc: BaseException) -> bool:
    """A collective that failed because a peer went away (gloo: connection closed; NCCL: timeout)."""
    text = str(exc)
    return isinstance(exc, dist.DistError) or any(s in text for s in ("closed by peer", "Connection reset", "Timed out"))


def exit_after_failure(code: int, exc: BaseException) -> NoReturn:
    """End a rank of a failed data-parallel run. A rank that only stops because another failed
    lingers a moment first, so torchrun sees the failing rank exit first and reports it as the root
    cause. os._exit skips interpreter teardown: destroying a process group whose peers are gone can
    abort the process (std::terminate), which would replace exit status 2 with SIGABRT."""
    if getattr(exc, "quiet", False) or lost_peer(exc):
        time.sleep(LINGER_SECONDS)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def record_traceback(exc: BaseException) -> None:
    """Under torchrun, write the current exception's traceback to the worker's error file, so
    torchrun's failure summary names it as the root cause. Call inside the `except` block."""
    if not os.environ.get("TORCHELASTIC_ERROR_FILE"):
        return
    try:
        from torch.distributed.elastic.multiprocessing.errors import ErrorHandler

        ErrorHandler().record_exception(exc)
    except Exception as err:  # the summary is a convenience; never hide the real error
        print(f"winn-robust: note: could not record the traceback for torchrun ({err})", file=sys.stderr)
