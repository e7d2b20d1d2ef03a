"""Checkpoints (train/checkpoint.py): safetensors weights with spec/config metadata, resume state read
with torch.load(weights_only=True); every unusable file is refused with one line naming it."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import saf.train.checkpoint as ckpt
from saf.train.checkpoint import CHECKPOINT, FORMAT, CheckpointError, load_model, load_resume, read_checkpoint, save_checkpoint, save_resume
from saf.core.files import atomic_write
from saf.train.modules.network import SpikingNet
from saf.train.spec import builtin_spec, with_neuron

torch.set_num_threads(1)

CONFIG = {"model": "conv-digits-f", "method": "saf-e", "T": 4, "surrogate": "sigmoid", "alpha": 4.0}


def one_line(excinfo, *needles):
    msg = str(excinfo.value)
    assert msg and "\n" not in msg, msg
    for n in needles:
        assert str(n) in msg, (n, msg)
    return msg


@pytest.fixture()
def saved(tmp_path):
    spec = with_neuron(builtin_spec("conv-digits-f"), 0.5, 1.0)
    spec["T"] = 4
    torch.manual_seed(0)
    net = SpikingNet(spec)
    path = tmp_path / "run" / CHECKPOINT
    save_checkpoint(path, net, CONFIG)
    return net, path


def rewrite_metadata(src: Path, dst: Path, **changes) -> None:
    with safe_open(str(src), framework="pt") as f:
        meta = dict(f.metadata())
    meta.update(changes)
    save_file(load_file(str(src)), str(dst), metadata=meta)


def load_meta(path):
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata())


def test_roundtrip_same_network(saved, tmp_path):
    net, path = saved
    loaded, spec, config = load_model(path.parent)          # a run directory resolves to its checkpoint
    upgraded = {k: v for k, v in CONFIG.items() if k != "alpha"} | {"surrogate_slope": CONFIG["alpha"]}
    assert spec == net.spec and config == upgraded      # CONFIG has the old key "alpha": read under its new name
    sd, sd2 = net.state_dict(), loaded.state_dict()
    assert sorted(sd) == sorted(sd2)
    for k in sd:
        assert torch.equal(sd[k], sd2[k]), k
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    for form in ("saf", "lif"):
        assert torch.equal(net.infer(x, 4, form)[0], loaded.infer(x, 4, form)[0])
    # no temp file left next to it
    assert sorted(p.name for p in path.parent.iterdir()) == [CHECKPOINT]


def test_readable_with_plain_safetensors(saved):
    net, path = saved
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        keys = sorted(f.keys())
    assert meta["format"] == FORMAT
    assert json.loads(meta["spec"]) == net.spec and json.loads(meta["config"]) == CONFIG
    assert keys == sorted(net.state_dict())


def test_load_model_never_unpickles(saved, monkeypatch):
    net, path = saved

    def refuse(*a, **k):
        raise AssertionError("a checkpoint must not be unpickled")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    loaded, _, _ = load_model(path)
    assert torch.equal(loaded.readout.weight, net.readout.weight)


def test_missing(tmp_path):
    with pytest.raises(CheckpointError) as e:
        load_model(tmp_path / "nope.safetensors")
    one_line(e, "nope.safetensors", "no such checkpoint")
    with pytest.raises(CheckpointError) as e:
        load_model(tmp_path)                                    # a directory without model.safetensors
    one_line(e, CHECKPOINT)


@pytest.mark.parametrize("content", [b"", b"\x00" * 7, os.urandom(4096), b"PK\x03\x04" + os.urandom(600),
                                     b"\x08\x00\x00\x00\x00\x00\x00\x00{\"a\":1}"])
def test_garbage(tmp_path, content):
    p = tmp_path / "garbage.safetensors"
    p.write_bytes(content)
    with pytest.raises(CheckpointError) as e:
        load_model(p)
    one_line(e, str(p), "not a readable safetensors checkpoint")


def test_truncated(saved, tmp_path):
    _, path = saved
    data = path.read_bytes()
    for cut in (4, 9, 100, len(data) // 2, len(data) - 1):
        p = tmp_path / f"trunc{cut}.safetensors"
        p.write_bytes(data[:cut])
        with pytest.raises(CheckpointError) as e:
            load_model(p)
        one_line(e, str(p))


def test_not_a_saf_checkpoint(tmp_path):
    p = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(p), metadata={"format": "pt"})
    with pytest.raises(CheckpointError) as e:
        read_checkpoint(p)
    one_line(e, str(p), "not a saf checkpoint")


def test_metadata_unreadable_or_invalid(saved, tmp_path):
    _, path = saved
    bad_json = tmp_path / "badjson.safetensors"
    rewrite_metadata(path, bad_json, spec="{not json")
    with pytest.raises(CheckpointError) as e:
        load_model(bad_json)
    one_line(e, str(bad_json), "unreadable")
    spec = json.loads(load_meta(path)["spec"])
    spec["layers"][0]["type"] = "lstm"
    bad_spec = tmp_path / "badspec.safetensors"
    rewrite_metadata(path, bad_spec, spec=json.dumps(spec))
    with pytest.raises(CheckpointError) as e:
        load_model(bad_spec)
    one_line(e, str(bad_spec), "invalid model spec", "lstm")


def test_spec_and_weights_disagree(saved, tmp_path):
    _, path = saved
    spec = json.loads(load_meta(path)["spec"])
    # a different width: same tensor names, different shapes
    wider = json.loads(json.dumps(spec))
    wider["layers"][-1]["out"] = 100
    p1 = tmp_path / "wider.safetensors"
    rewrite_metadata(path, p1, spec=json.dumps(wider))
    with pytest.raises(CheckpointError) as e:
        load_model(p1)
    one_line(e, str(p1), "spec and weights disagree", "[100")
    # a layer fewer / feedback dropped: tensors the spec does not know
    nofb = json.loads(json.dumps(spec))
    nofb["feedback"] = []
    p2 = tmp_path / "nofb.safetensors"
    rewrite_metadata(path, p2, spec=json.dumps(nofb))
    with pytest.raises(CheckpointError) as e:
        load_model(p2)
    one_line(e, str(p2), "spec and weights disagree", "fb.0")


def test_non_finite_weights(saved, tmp_path):
    _, path = saved
    tensors = load_file(str(path))
    tensors["readout.weight"][0, 0] = float("nan")
    p = tmp_path / "nan.safetensors"
    save_file(tensors, str(p), metadata=load_meta(path))
    with pytest.raises(CheckpointError) as e:
        load_model(p)
    one_line(e, str(p), "readout.weight", "NaN")


def test_resume_state_weights_only(tmp_path, monkeypatch):
    state = {"model": {"w": torch.arange(3.0)}, "epoch": 2, "torch_rng": torch.get_rng_state(),
             "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "params": [0]}]}}
    p = tmp_path / "resume.pt"
    save_resume(p, state)
    calls = []
    real_load = torch.load

    def spy(*a, **k):
        calls.append(k.get("weights_only"))
        return real_load(*a, **k)

    monkeypatch.setattr(torch, "load", spy)
    back = load_resume(p)
    assert calls == [True]
    assert back["epoch"] == 2 and torch.equal(back["model"]["w"], torch.arange(3.0))


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_resume_refuses_pickled_code(tmp_path):
    marker = tmp_path / "pwned"
    p = tmp_path / "resume.pt"
    torch.save({"epoch": 1, "x": _Payload(str(marker))}, p)
    with pytest.raises(CheckpointError) as e:
        load_resume(p)
    one_line(e, str(p), "cannot resume")
    assert not marker.exists()
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(300))
    with pytest.raises(CheckpointError) as e:
        load_resume(garbage)
    one_line(e, str(garbage))


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "d" / "file.bin"

    def half_then_fail(tmp):
        Path(tmp).write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, half_then_fail)
    assert list((tmp_path / "d").iterdir()) == []
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        atomic_write(target, half_then_fail)
    assert target.read_bytes() == b"old" and [p.name for p in (tmp_path / "d").iterdir()] == ["file.bin"]
    atomic_write(target, lambda tmp: Path(tmp).write_bytes(b"new"))
    assert target.read_bytes() == b"new"


def test_save_is_atomic(saved, monkeypatch):
    """A failure while writing keeps the previous checkpoint intact."""
    net, path = saved
    before = path.read_bytes()

    def boom(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise OSError("no space left")

    monkeypatch.setattr(ckpt, "save_file", boom)
    with torch.no_grad():
        net.readout.weight.add_(1.0)
    with pytest.raises(OSError):
        save_checkpoint(path, net, CONFIG)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [CHECKPOINT]


def test_an_old_config_key_loads_under_its_new_name(tmp_path):
    """Checkpoints before the rename store the surrogate's slope as "alpha": they still load, with it;
    a config with both keys keeps the new one; the trainer's config (TrainConfig) has only the new name."""
    from dataclasses import fields

    from saf.train.checkpoint import upgraded_config
    from saf.train.run.trainer import TrainConfig

    spec = with_neuron(builtin_spec("mlp-digits"), 0.5, 1.0)
    net = SpikingNet(spec)
    old = tmp_path / "old" / CHECKPOINT
    save_checkpoint(old, net, {"model": "mlp-digits", "surrogate": "rect", "alpha": 0.5})
    loaded, _, config = load_model(old)
    assert loaded.surrogate_slope == 0.5 and config["surrogate_slope"] == 0.5 and "alpha" not in config
    assert json.loads(load_meta(old)["config"])["alpha"] == 0.5           # the file itself is left as it was
    assert upgraded_config({"alpha": 1.0, "surrogate_slope": 2.0}) == {"surrogate_slope": 2.0}
    names = {f.name for f in fields(TrainConfig)}
    assert "surrogate_slope" in names and "alpha" not in names


def test_methods_register_their_specs_networks_and_formats(tmp_path):
    """checkpoint.py and spec.py import no method: IDE's built-in specs, DSR's network and FP's checkpoint
    format are registered when saf.train is imported, so a process importing only those modules has them,
    and load_model still refuses an FP checkpoint with the same line."""
    import numpy as np
    from saf.train.methods.fp.checkpoint import save_fp_checkpoint
    from saf.train.methods.fp.net import FPNet, FPParams, LatencyCode

    rng = np.random.default_rng(0)
    net = FPNet(FPParams(0.999, 1.0, 1.0, 2.0, 6.0), [rng.normal(1.5, 0.8, (5, 3)), rng.normal(2, 0.1, (3, 5))],
                LatencyCode((0.0, -1.0), (1.0, 2.0), 0.15, 2.0, (0.9,)))
    p = tmp_path / "fp.safetensors"
    save_fp_checkpoint(p, net, {"dataset": "yinyang", "model": "fp-yinyang", "seed": 3})
    code = ("from saf.train.checkpoint import CheckpointError, load_model\n"
            "from saf.train.networks import network_builder\n"
            "from saf.train.spec import builtin_spec\n"
            "assert builtin_spec('ide-digits')['name'] == 'ide-digits'\n"
            "assert network_builder({'dsr': {}}) is not None and network_builder({}) is None\n"
            f"try:\n    load_model({str(p)!r})\nexcept CheckpointError as e:\n    print(e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == (f"{p}: an FP checkpoint (--method fp) holds a continuous-time network: load it "
                                f"with saf.train.methods.fp.checkpoint.load_fp_checkpoint")

