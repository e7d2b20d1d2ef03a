"""MNIST as users have it: the four IDX files under every name the loader accepts (dash or dot before
"idx", plain or gzipped, in DATA_ROOT or torchvision's MNIST/raw/), written here byte by byte in the
published format (big-endian magic 0x00000803 / 0x00000801 and dimensions), never the real data set;
the built-in 28x28 models; a conv-mnist training smoke run on such files."""
from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from saf.train.data.idx import idx_bytes
from saf_test_helpers.cli import user_error

from saf.deploy.main import main
from saf.train.data import DatasetError, load_dataset
from saf.train.data.idx import SPLIT_FILES, name_variants
from saf.train.spec import builtin_spec, plan

torch.set_num_threads(1)
STEMS = [n for pair in SPLIT_FILES.values() for n in pair]


def arrays(n_train=24, n_test=12, rows=28, cols=28, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    return {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, rows, cols)).astype(np.uint8),
            "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
            "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, rows, cols)).astype(np.uint8),
            "t10k-labels-idx1-ubyte": rng.permutation(np.arange(n_test) % 10).astype(np.uint8)}


def write_idx(root: Path, arrs: dict, variant: int) -> None:
    """Each file under name_variants(stem)[variant]: 0 dash, 1 dash.gz, 2 dot, 3 dot.gz."""
    root.mkdir(parents=True, exist_ok=True)
    for stem, a in arrs.items():
        payload = idx_bytes(a, 0x00000803 if "images" in stem else 0x00000801)
        name = name_variants(stem)[variant]
        (root / name).write_bytes(gzip.compress(payload) if name.endswith(".gz") else payload)


def test_writer_is_the_published_format():
    a = arrays(n_train=3, rows=28, cols=28)["train-images-idx3-ubyte"]
    b = idx_bytes(a, 0x00000803)
    assert b[:16] == bytes([0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 28, 0, 0, 0, 28])     # magic, N, rows, cols
    assert b[16:] == a.tobytes() and len(b) == 16 + 3 * 28 * 28
    lab = idx_bytes(np.array([7, 2], np.uint8), 0x00000801)
    assert lab == bytes([0, 0, 8, 1, 0, 0, 0, 2, 7, 2])


def test_name_variants():
    assert name_variants("train-images-idx3-ubyte") == (
        "train-images-idx3-ubyte", "train-images-idx3-ubyte.gz", "train-images.idx3-ubyte", "train-images.idx3-ubyte.gz")
    assert name_variants("t10k-labels-idx1-ubyte")[2] == "t10k-labels.idx1-ubyte"


@pytest.mark.parametrize("variant", [0, 1, 2, 3])
@pytest.mark.parametrize("torchvision", [False, True])
def test_every_name_variant_loads(tmp_path, variant, torchvision):
    arrs = arrays()
    write_idx(tmp_path / "MNIST" / "raw" if torchvision else tmp_path, arrs, variant)
    d = load_dataset("mnist", root=str(tmp_path))
    assert d.input_shape == (1, 28, 28) and d.input_scale == 255.0
    assert torch.equal((d.x_train * 255.0).round().to(torch.uint8)[:, 0],
                       torch.from_numpy(arrs["train-images-idx3-ubyte"]))
    assert torch.equal((d.x_test * 255.0).round().to(torch.uint8)[:, 0],
                       torch.from_numpy(arrs["t10k-images-idx3-ubyte"]))
    assert d.y_train.tolist() == arrs["train-labels-idx1-ubyte"].tolist()
    assert d.y_test.tolist() == arrs["t10k-labels-idx1-ubyte"].tolist()


def test_dotted_names_of_fashion_mnist(tmp_path):
    write_idx(tmp_path / "FashionMNIST" / "raw", arrays(rows=5, cols=6), 2)
    assert load_dataset("fashion-mnist", root=str(tmp_path)).input_shape == (1, 5, 6)


def test_missing_file_names_every_name_looked_for(tmp_path):
    write_idx(tmp_path, arrays(), 2)
    os.remove(tmp_path / "t10k-labels.idx1-ubyte")
    (tmp_path / "MNIST" / "raw").mkdir(parents=True)
    with pytest.raises(DatasetError) as e:
        load_dataset("mnist", root=str(tmp_path))
    msg = str(e.value)
    assert "\n" not in msg and "test file missing" in msg
    for d in (tmp_path, tmp_path / "MNIST" / "raw"):
        for name in name_variants("t10k-labels-idx1-ubyte"):
            assert str(d / name) in msg, (name, msg)


@pytest.mark.parametrize("name", ["conv-mnist", "conv-mnist-wide", "mlp-mnist"])
def test_builtin_mnist_models(name):
    p = plan(builtin_spec(name))
    assert (p.layers[0].raw_in_shape or p.layers[0].in_shape) == (1, 28, 28) and p.layers[-1].out_shape == (10,)
    if name == "conv-mnist":       # stride 2 twice: 28 -> 14 -> 7 (docs/mnist.md: the CPU budget)
        assert [l.out_shape for l in p.layers[:2]] == [(16, 14, 14), (32, 7, 7)]
    if name == "conv-mnist-wide":  # the same shape, twice the channels (the 99.3 % recipe)
        assert [l.out_shape for l in p.layers[:2]] == [(32, 14, 14), (64, 7, 7)]


def test_conv_mnist_trains_and_evaluates_on_idx_files(tmp_path, capsys):
    root = tmp_path / "data"
    write_idx(root, arrays(n_train=40, n_test=10), 3)           # the dotted, gzipped names
    out = tmp_path / "run"
    argv = ["train", "--model", "conv-mnist", "--dataset", "mnist", "--data-root", str(root), "--T", "2",
            "--epochs", "2", "--batch-size", "16", "--device", "cpu", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    ms = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in ms] == [1, 2] and all(0.0 <= m["val_acc"] <= 1.0 for m in ms)
    capsys.readouterr()
    assert main(["eval", str(out), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["n"] == 10 and r["T"] == 2 and r["dataset"] == "mnist"
    shutil.rmtree(root / "MNIST", ignore_errors=True)
    os.remove(root / "train-images.idx3-ubyte.gz")
    user_error(capsys, ["eval", str(out), "--data-root", str(root)], "train-images-idx3-ubyte",
               "train-images.idx3-ubyte.gz")


def test_mnist_trains_on_shifted_digits_unless_no_augment(tmp_path):
    """MNIST carries random shifts of up to SHIFT_PADDING pixels (no flips): each shifted image is the
    original moved inside a zero border, the same generator state gives the same batch, and
    `--no-augment` (TrainConfig.augment False) removes it."""
    from saf.deploy.cli.train import data_for
    from saf.train.data.idx import SHIFT_PADDING
    from saf.train.run.trainer import TrainConfig

    root = tmp_path / "data"
    write_idx(root, arrays(n_train=40, n_test=10), 0)
    ds = load_dataset("mnist", str(root))
    x = ds.x_train[:16]
    out = ds.augment(x, torch.Generator().manual_seed(3))
    assert torch.equal(out, ds.augment(x, torch.Generator().manual_seed(3)))
    p = SHIFT_PADDING
    pad = torch.nn.functional.pad(x, (p, p, p, p))
    moved = 0
    for i in range(len(x)):                 # each output is one window of the zero-padded original
        hits = [(dy, dx) for dy in range(2 * p + 1) for dx in range(2 * p + 1)
                if torch.equal(out[i, 0], pad[i, 0, dy:dy + 28, dx:dx + 28])]
        assert hits, f"sample {i} is not a shifted copy"
        moved += (p, p) not in hits
    assert moved >= 8                        # shifts happen (25 offsets, 1 of them is the identity)
    cfg = TrainConfig(dataset="mnist", data_root=str(root), augment=False)
    assert data_for(cfg, load_dataset).augment is None
    assert data_for(TrainConfig(dataset="mnist", data_root=str(root)), load_dataset).augment is not None
