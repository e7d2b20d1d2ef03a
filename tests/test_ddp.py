"""DDP: sharding of the trainer's permutation, and 2-process training (gloo, CPU) giving the same
weights as one process on the same global batches (float64, every method, uneven last batch,
feedback synapses unused at t = 1)."""
from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from saf.train.run.distributed import DistributedError, shard_indices, spawn_local
from saf.train.run.trainer import TrainConfig, Trainer

torch.set_num_threads(1)

# (model, method, T, global batch, training samples): 101 samples with batch 32 leaves a last batch
# of 5, split 3 / 2 across the two ranks (weighted all-reduce).
CONFIGS = [
    ("mlp-digits", "saf-e", 3, 32, 101),
    ("mlp-digits", "ottt-a", 2, 32, 96),
    ("mlp-digits", "saf-f", 3, 32, 64),
    ("mlp-digits", "bptt", 2, 32, 64),
    ("conv-digits-f", "saf-e", 2, 16, 48),
    ("conv-digits-f", "ottt-o", 2, 16, 32),
]


# ---------------------------------------------------------------- sharding
@pytest.mark.parametrize("n,batch,world", [(100, 32, 2), (101, 32, 2), (100, 12, 3), (64, 16, 4), (10, 4, 2)])
def test_shards_partition_each_global_batch_in_order(n, batch, world):
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(n))
    b = batch // world
    shards = [shard_indices(perm, batch, r, world) for r in range(world)]
    chunks = [[s[i:i + b] for i in range(0, len(s), b)] for s in shards]
    assert len({len(c) for c in chunks}) == 1                       # every rank: same number of steps
    rebuilt = []
    for k in range(len(chunks[0])):
        rebuilt.append(torch.cat([chunks[r][k] for r in range(world)]))
        assert all(len(chunks[r][k]) >= 1 for r in range(world))
    expected = [perm[i:i + batch] for i in range(0, n, batch)]
    assert [t.tolist() for t in rebuilt] == [t.tolist() for t in expected]


def test_shard_drops_a_last_batch_smaller_than_the_world_and_warns():
    perm = torch.arange(33)
    with pytest.warns(UserWarning, match="dropped"):
        s0 = shard_indices(perm, 16, 0, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = [shard_indices(perm, 16, r, 4) for r in range(4)]
    assert len(s0) == 8 and sorted(torch.cat(s).tolist()) == list(range(32))


def test_shard_rejects_a_batch_not_divisible_by_the_world():
    with pytest.raises(DistributedError, match="multiple of the number of processes"):
        shard_indices(torch.arange(10), 5, 0, 2)


def test_ddp_outside_torchrun_is_a_clear_error(monkeypatch):
    from saf.train.run.distributed import DDPContext
    for v in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(v, raising=False)
    with pytest.raises(DistributedError, match="torchrun"):
        DDPContext.from_env("cpu")


# ---------------------------------------------------------------- 2 processes == 1 process
def _data(n: int):
    from saf.train.data import load_dataset
    d = load_dataset("digits")
    return SimpleNamespace(name="digits", x_train=d.x_train[:n].double(), y_train=d.y_train[:n],
                           x_test=d.x_test[:40].double(), y_test=d.y_test[:40], num_classes=10,
                           input_shape=d.input_shape, augment=None)


def _train(cfg_tuple, ddp=None, out="unused"):
    model, method, T, batch, n = cfg_tuple
    torch.set_default_dtype(torch.float64)
    try:
        cfg = TrainConfig(model=model, dataset="digits", method=method, T=T, epochs=2, batch_size=batch,
                          lr=0.05, momentum=0.9, seed=3, device="cpu")
        tr = Trainer(cfg, Path(out), _data(n), progress=False, log=lambda *a: None, ddp=ddp)
        for epoch in range(cfg.epochs):
            tr.train_epoch(epoch)
        return {k: v.detach().clone() for k, v in tr.net.state_dict().items()}
    finally:
        torch.set_default_dtype(torch.float32)


def _worker(rank: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    from saf.train.run.distributed import DDPContext
    ctx = DDPContext.from_env("cpu")
    try:
        assert ctx.world == 2 and ctx.backend == "gloo"
        results = [_train(c, ddp=ctx) for c in CONFIGS]
        if rank == 0:
            torch.save(results, os.path.join(out_dir, "ddp.pt"))
    finally:
        ctx.close()


def test_two_processes_match_one_process_on_the_same_global_batch(tmp_path):
    spawn_local(2, _worker, str(tmp_path))
    ddp = torch.load(tmp_path / "ddp.pt")
    for cfg, got in zip(CONFIGS, ddp):
        ref = _train(cfg)
        assert ref.keys() == got.keys()
        moved = max(float((ref[k] - v).abs().max()) for k, v in _train_init(cfg).items())
        assert moved > 1e-3, (cfg, "training did not change the weights")
        for k in ref:
            assert ref[k].dtype == torch.float64
            err = float((ref[k] - got[k]).abs().max())
            assert err < 1e-9, (cfg, k, err)


def _cli_worker(rank: int, out_dir: str, step: str) -> None:
    """One torchrun-like job per step (a process group is initialised once per process)."""
    torch.set_num_threads(1)
    from saf.deploy.main import main
    base = ["train", "--ddp", "--model", "mlp-digits", "--epochs", "1", "--T", "2", "--device", "cpu",
            "--limit-train", "128", "--no-progress", "--out", out_dir]
    if step == "first":
        assert main(base + ["--batch-size", "33"]) == 2      # not a multiple of 2: refused before any setup
        assert main(base + ["--batch-size", "64"]) == 0
    elif step == "force":
        assert main(base + ["--batch-size", "64", "--seed", "4", "--force"]) == 0    # replaced on success
    else:
        assert main(["train", "--ddp", "--out", out_dir, "--resume", "--epochs", "2", "--no-progress"]) == 0


def test_saf_train_ddp_cli_rank_0_writes(tmp_path, capfd):
    import json

    from safetensors import safe_open

    out = tmp_path / "run"
    for step in ("first", "force", "resume"):
        spawn_local(2, _cli_worker, str(out), step)
    assert (out / "model.safetensors").exists() and (out / "metrics.jsonl").exists()
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        cfg = json.loads(f.metadata()["config"])
    assert (cfg["seed"], cfg["batch_size"], cfg["epochs_done"]) == (4, 64, 2)   # --force, then --resume
    assert [p.name for p in tmp_path.iterdir()] == ["run"]                       # nothing left beside it
    text = capfd.readouterr()
    assert "multiple of the number of processes (2)" in text.err
    assert text.out.count("DDP over 2 processes (gloo") == 3 and text.out.count("done: test accuracy") == 3


def _train_init(cfg_tuple):
    """The weights before training (the comparison above must not pass by doing nothing)."""
    model, method, T, batch, n = cfg_tuple
    torch.set_default_dtype(torch.float64)
    try:
        cfg = TrainConfig(model=model, dataset="digits", method=method, T=T, epochs=1, batch_size=batch,
                          seed=3, device="cpu")
        tr = Trainer(cfg, Path("unused"), _data(n), progress=False, log=lambda *a: None)
        return {k: v.detach().clone() for k, v in tr.net.state_dict().items()}
    finally:
        torch.set_default_dtype(torch.float32)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
