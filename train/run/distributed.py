"""Data-parallel training (DDP) for `saf train --ddp`, launched by torchrun (one process per GPU,
or CPU processes with gloo):

    torchrun --standalone --nproc_per_node=4 -m saf.deploy.main train --ddp --model vgg11-cifar ...

Every rank builds the same network (same seed; DDP also broadcasts rank 0's weights), draws the
same epoch permutation, and takes its share of every global minibatch (`shard`). The per-rank
gradients are combined by DDP's all-reduce, weighted by each rank's share of the global batch, so
one update equals the single-process update on the same global batch - every backward of every
method (SAF-E's and OTTT_O's T updates per minibatch, OTTT_A's accumulation, SAF-F's and BPTT's
one backward). Rank 0 writes the outputs; the training loss/accuracy it logs are over its own
shard (test accuracy is on the whole test set). With data augmentation each rank draws its own
crops/flips, so such runs match one process statistically rather than bit for bit.

The Trainer calls `train_batch(ddp.wrap(net), ...)`: `DDPNet` keeps the SpikingNet step API
(init_saf / saf_step / init_lif / lif_step / ...) and runs each step through
torch.nn.parallel.DistributedDataParallel, so gradients are bucketed and reduced during backward.
"""
from __future__ import annotations

import datetime
import os
import socket
import warnings
from typing import Callable, Optional

import torch
import torch.distributed as dist
import torch.nn as nn

from saf.core.errors import SafError


class DistributedError(SafError, RuntimeError):
    """DDP cannot be set up (not under torchrun, bad batch size for the world size, ...); one line."""


ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def shard_indices(perm: torch.Tensor, global_batch: int, rank: int, world: int) -> torch.Tensor:
    """Rank `rank`'s share of each global minibatch of `perm`, concatenated in order.

    Global batch k is perm[k*B:(k+1)*B]; rank r takes its r-th contiguous slice of b = B // world.
    A shorter last batch (m < B samples) is split as evenly as possible (sizes differ by at most
    one, never above b), so iterating the result in chunks of b gives every rank the same number of
    batches, in step. If m < world some rank would get nothing: that last batch is dropped on all
    ranks (with a warning)."""
    if world < 1 or not 0 <= rank < world:
        raise DistributedError(f"rank {rank} outside world of size {world}")
    if global_batch < world or global_batch % world:
        raise DistributedError(f"--batch-size {global_batch} must be a multiple of the number of "
                               f"processes ({world}): each rank takes batch-size / {world} samples")
    b = global_batch // world
    n = len(perm)
    parts = []
    full = n // global_batch
    for k in range(full):
        s = k * global_batch + rank * b
        parts.append(perm[s:s + b])
    m = n - full * global_batch
    if m:
        if m < world:
            warnings.warn(f"DDP: the last {m} training sample(s) of the epoch are dropped "
                          f"(fewer than the {world} processes)", stacklevel=2)
        else:
            q, r = divmod(m, world)
            start = full * global_batch + rank * q + min(rank, r)
            parts.append(perm[start:start + q + (1 if rank < r else 0)])
    if not parts:
        return perm[:0]
    return torch.cat(parts)


class _WeightState:
    """Comm-hook state: this rank's share n_local / n_global of the current global batch."""

    def __init__(self, group=None, weight: float = 1.0):
        self.group = group
        self.weight = weight


def _weighted_allreduce(state: _WeightState, bucket):
    """sum over ranks of (n_r / N) * grad_r: grad_r is the mean over rank r's n_r samples, so the
    result is the mean over all N samples (what one process computes on the whole batch)."""
    buf = bucket.buffer()
    if state.weight != 1.0:
        buf.mul_(state.weight)
    fut = dist.all_reduce(buf, group=state.group, async_op=True).get_future()
    return fut.then(lambda f: f.value()[0])


class _Dispatch(nn.Module):
    """DDP wraps a module's forward; the SpikingNet's steps are methods, so forward dispatches."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, method: str, *args, **kwargs):
        return getattr(self.net, method)(*args, **kwargs)


class DDPNet:
    """The SpikingNet step API with every step run through DistributedDataParallel."""

    def __init__(self, net: nn.Module, ctx: "DDPContext"):
        from torch.nn.parallel import DistributedDataParallel as DDP
        self.net = net
        self.ctx = ctx
        cuda = ctx.device.startswith("cuda")
        # feedback synapses get no gradient at t = 1 (no a[t-1] yet): let DDP skip them then;
        # parameters unused on every rank keep grad None, as in one process.
        unused = bool(getattr(net, "fb_edges", None))
        self.module = DDP(_Dispatch(net), device_ids=[ctx.local_device_index] if cuda else None,
                          find_unused_parameters=unused)
        self.state = _WeightState(ctx.group, 1.0 / ctx.world)
        self.module.register_comm_hook(self.state, _weighted_allreduce)

    def __getattr__(self, name):                      # lam, theta, spec, init_*, effective_weights, ...
        return getattr(self.net, name)

    def _begin(self, x: torch.Tensor, st) -> None:
        """At a minibatch's first step: learn this rank's share of the global batch (one tiny
        all-reduce; every rank starts its minibatch at the same point)."""
        if getattr(st, "t", 1) != 0:
            return
        n = int(x.shape[0])
        if self.ctx.world == 1:
            self.state.weight = 1.0
            return
        t = torch.tensor([n], dtype=torch.float64, device=self.ctx.device)
        dist.all_reduce(t, group=self.ctx.group)
        self.state.weight = n / float(t.item())

    def saf_step(self, x, st, *args, **kwargs):
        self._begin(x, st)
        return self.module("saf_step", x, st, *args, **kwargs)

    def lif_step(self, x, st, *args, **kwargs):
        self._begin(x, st)
        return self.module("lif_step", x, st, *args, **kwargs)

    def parameters(self, *a, **k):
        return self.net.parameters(*a, **k)

    def release(self) -> None:
        """Drop the DistributedDataParallel wrapper (its reducer and comm hook); the plain network
        stays usable. Called by DDPContext.close before the process group goes away."""
        self.__dict__.pop("module", None)

    def train(self, mode: bool = True):
        self.net.train(mode)
        return self

    def eval(self):
        return self.train(False)


class DDPContext:
    """One process of a torchrun job: rank, world size, device, process group (the Trainer's ddp=).

    device "auto": cuda:LOCAL_RANK with NCCL when CUDA is available, else CPU with gloo."""

    def __init__(self, rank: int, world: int, local_rank: int, device: str = "auto",
                 backend: Optional[str] = None, init: bool = True, timeout_s: float = 1800.0):
        self.rank, self.world, self.local_rank = int(rank), int(world), int(local_rank)
        dev = (device or "auto").lower()
        if dev == "auto":
            dev = "cuda" if torch.cuda.is_available() else "cpu"
        if dev.startswith("cuda"):
            if not torch.cuda.is_available():
                raise DistributedError(f"--device {device}: CUDA is not available on this machine")
            n = torch.cuda.device_count()
            idx = int(dev.split(":", 1)[1]) if ":" in dev else self.local_rank
            if idx >= n:
                raise DistributedError(f"LOCAL_RANK {self.local_rank} has no GPU (this node has {n}); "
                                       f"use --nproc_per_node={n} or fewer")
            torch.cuda.set_device(idx)
            self.device = f"cuda:{idx}"
            self.local_device_index = idx
            backend = backend or "nccl"
        elif dev == "cpu":
            self.device = "cpu"
            self.local_device_index = None
            backend = backend or "gloo"
        else:
            raise DistributedError(f"--device {device}: expected auto, cpu or cuda[:N]")
        self.backend = backend
        self.group = None
        self._owns_group = False
        self._wrapped: list = []                    # weak references to this context's DDPNets
        if init and not dist.is_initialized():
            kw = {}
            if backend == "nccl" and self.device.startswith("cuda"):
                kw["device_id"] = torch.device(self.device)
            try:
                dist.init_process_group(backend, rank=self.rank, world_size=self.world,
                                        timeout=datetime.timedelta(seconds=timeout_s), **kw)
            except TypeError:                          # older torch: no device_id
                dist.init_process_group(backend, rank=self.rank, world_size=self.world,
                                        timeout=datetime.timedelta(seconds=timeout_s))
            self._owns_group = True

    @classmethod
    def from_env(cls, device: str = "auto", backend: Optional[str] = None) -> "DDPContext":
        """From torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT)."""
        missing = [v for v in ("RANK", "WORLD_SIZE") if v not in os.environ]
        if missing:
            raise DistributedError("--ddp needs torchrun's environment (RANK, WORLD_SIZE, ...): run "
                                   "`torchrun --nproc_per_node=N -m saf.deploy.main train --ddp ...`")
        try:
            rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
            local = int(os.environ.get("LOCAL_RANK", rank))
        except ValueError:
            raise DistributedError("RANK / WORLD_SIZE / LOCAL_RANK must be integers") from None
        return cls(rank, world, local, device=device, backend=backend)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, net: nn.Module) -> DDPNet:
        import weakref
        w = DDPNet(net, self)
        self._wrapped.append(weakref.ref(w))
        return w

    def shard(self, perm: torch.Tensor, global_batch: int) -> torch.Tensor:
        """This rank's share of the epoch permutation. The permutation is rank 0's (broadcast): the
        ranks' generators can drift apart (augmentation draws on an uneven last batch), and the
        shards must partition one and the same permutation."""
        if self.world > 1 and dist.is_initialized():
            t = perm.to(self.device)
            dist.broadcast(t, src=0, group=self.group)
            perm = t.cpu()
        return shard_indices(perm, global_batch, self.rank, self.world)

    def barrier(self) -> None:
        if dist.is_initialized():
            if self.device.startswith("cuda"):
                dist.barrier(device_ids=[self.local_device_index])
            else:
                dist.barrier()

    def broadcast_object(self, obj=None, src: int = 0):
        box = [obj]
        dist.broadcast_object_list(box, src=src)
        return box[0]

    def run_on_main(self, fn: Callable[[], None], errors: tuple = (Exception,)) -> None:
        """Run fn on rank 0 only; if it raises one of `errors`, every rank raises it (no rank is
        left waiting in a collective)."""
        msg = None
        if self.is_main:
            try:
                fn()
            except errors as e:  # noqa: BLE001
                msg = (type(e), str(e))
        msg = self.broadcast_object(msg)
        if msg is not None:
            etype, text = msg
            try:
                raise etype(text)
            except TypeError:
                raise DistributedError(text) from None

    def close(self) -> None:
        """Tear down in an order gloo survives: every rank reaches the barrier (no collective still
        in flight anywhere), the DDP reducers (which hold this module's Python comm hook and its
        futures) are released while the interpreter is fully alive, then the group is destroyed.
        Leaving a reducer to interpreter shutdown aborted a gloo worker now and then ("terminate
        called without an active exception", SIGABRT after all work was done)."""
        import gc
        if self._owns_group and dist.is_initialized():
            self.barrier()
            for ref in self._wrapped:
                w = ref()
                if w is not None:
                    w.release()
            self._wrapped.clear()
            gc.collect()
            dist.destroy_process_group()
            self._owns_group = False


# ------------------------------------------------------------------ local launcher (tests, laptops)
def _spawn_entry(rank: int, nprocs: int, port: int, fn, args) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(nprocs), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(nprocs))
    fn(rank, *args)


def spawn_local(nprocs: int, fn: Callable, *args, join: bool = True):
    """Run fn(rank, *args) in `nprocs` fresh processes on this machine with torchrun's environment
    set (127.0.0.1 and a free port), as torch.multiprocessing.spawn does; fn must be importable
    (module level). Raises if any process fails."""
    import torch.multiprocessing as mp
    port = free_port()
    return mp.spawn(_spawn_entry, args=(nprocs, port, fn, args), nprocs=nprocs, join=join)
