"""Dataset loaders: bundled sets, real-format IDX and CIFAR-10 files written here, safety, augmentation."""
from __future__ import annotations

import gzip
import io
import os
import pickle
import struct

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from saf.train.data import DATASETS, Dataset, DatasetError, batches, load_dataset
from saf.train.data.augment import random_crop_flip

torch.set_num_threads(1)


def one_line_error(excinfo, *needles):
    msg = str(excinfo.value)
    assert "\n" not in msg, msg
    for needle in needles:
        assert str(needle) in msg, (needle, msg)
    return msg


# ---------------------------------------------------------------- bundled datasets

def test_digits_split_values_and_stratification():
    d = load_dataset("digits")
    assert isinstance(d, Dataset) and d.name == "digits" and d.num_classes == 10
    assert d.x_train.shape == (1437, 1, 8, 8) and d.x_test.shape == (360, 1, 8, 8)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert d.input_shape == (1, 8, 8) and d.input_scale == 16.0 and d.augment is None
    for x in (d.x_train, d.x_test):
        k = x * 16.0
        assert torch.equal(k, torch.round(k)) and k.min() >= 0 and k.max() <= 16
    # The two splits partition the bundled data exactly (same pixel rows, as a multiset).
    raw = load_digits().data.astype(np.int64)
    ours = (torch.cat([d.x_train, d.x_test]).reshape(-1, 64) * 16).round().long().numpy()
    assert sorted(map(tuple, ours)) == sorted(map(tuple, raw))
    # Stratified: each class's test share matches its overall share to within one sample.
    labels = torch.cat([d.y_train, d.y_test])
    total, test = torch.bincount(labels, minlength=10), torch.bincount(d.y_test, minlength=10)
    assert torch.all((test.double() - total.double() * 360 / 1797).abs() <= 1.0)
    # The split is fixed: it does not follow the training seed.
    other = load_dataset("digits", seed=123)
    assert torch.equal(other.x_test, d.x_test) and torch.equal(other.y_train, d.y_train)


def test_iris_standardized_on_train_split():
    d = load_dataset("iris", seed=7)
    assert d.x_train.shape == (120, 4) and d.x_test.shape == (30, 4)
    assert d.input_shape == (4,) and d.input_scale is None and d.num_classes == 3
    assert torch.bincount(d.y_test, minlength=3).tolist() == [10, 10, 10]
    assert torch.allclose(d.x_train.double().mean(0), torch.zeros(4, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(d.x_train.double().std(0, unbiased=False), torch.ones(4, dtype=torch.float64),
                          atol=1e-5)
    assert not torch.allclose(d.x_test.mean(0), torch.zeros(4), atol=1e-3)


def test_unknown_name_and_missing_root():
    with pytest.raises(DatasetError) as e:
        load_dataset("imagenet")
    one_line_error(e, "imagenet", *DATASETS)
    for name in ("mnist", "fashion-mnist", "cifar10"):
        with pytest.raises(DatasetError) as e:
            load_dataset(name)
        one_line_error(e, "--data-root", name)
    with pytest.raises(DatasetError) as e:
        load_dataset("digits", shape=(1, 2, 2))
    one_line_error(e, "digits", "shape")


# ---------------------------------------------------------------- IDX (MNIST, Fashion-MNIST)

IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


from saf.train.data.idx import idx_bytes  # noqa: E402


def write_file(path, payload: bytes, gz: bool):
    if gz:
        path = str(path) + ".gz"
        payload = gzip.compress(payload)
    with open(path, "wb") as f:
        f.write(payload)
    return str(path)


def write_mnist(root, gz=False, n_train=300, n_test=40, rows=5, cols=6, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": (np.arange(n_train * rows * cols) % 256).astype(np.uint8)
        .reshape(n_train, rows, cols)[rng.permutation(n_train)],
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, rows, cols)).astype(np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test).astype(np.uint8),
    }
    paths = {}
    for name, arr in arrays.items():
        magic = 0x00000803 if "images" in name else 0x00000801
        paths[name] = write_file(os.path.join(root, name), idx_bytes(arr, magic), gz)
    return arrays, paths


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_idx_roundtrip(tmp_path, gz, name):
    arrays, _ = write_mnist(tmp_path, gz=gz)
    d = load_dataset(name, root=str(tmp_path))
    assert d.name == name and d.num_classes == 10 and d.input_scale == 255.0
    assert d.input_shape == (1, 5, 6) and d.x_train.shape == (300, 1, 5, 6)
    # x * input_scale recovers every stored byte exactly (all 256 values occur in train).
    assert torch.equal((d.x_train * 255.0)[:, 0], torch.from_numpy(arrays["train-images-idx3-ubyte"])
                       .float())
    assert torch.equal((d.x_test * 255.0)[:, 0], torch.from_numpy(arrays["t10k-images-idx3-ubyte"])
                       .float())
    assert d.y_train.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert d.y_test.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()


def test_idx_torchvision_layout(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    arrays, _ = write_mnist(raw, gz=True, n_train=20, n_test=10, rows=28, cols=28)
    d = load_dataset("fashion-mnist", root=str(tmp_path))
    assert d.x_test.shape == (10, 1, 28, 28)
    assert d.y_test.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()


def _corrupt(kind, paths, arrays):
    """Damage one file in a written MNIST tree; return the path the message must name."""
    img, lbl = paths["train-images-idx3-ubyte"], paths["train-labels-idx1-ubyte"]
    if kind == "bad_magic":
        write_file(img, idx_bytes(arrays["train-images-idx3-ubyte"], 0x00000801), False)
        return img
    if kind == "truncated":
        data = idx_bytes(arrays["train-images-idx3-ubyte"], 0x00000803)
        write_file(img, data[:-1], False)
        return img
    if kind == "truncated_header":
        write_file(lbl, struct.pack(">I", 0x00000801) + b"\x00\x00", False)
        return lbl
    if kind == "trailing":
        write_file(lbl, idx_bytes(arrays["train-labels-idx1-ubyte"], 0x00000801) + b"\x00", False)
        return lbl
    if kind == "count_mismatch":
        write_file(lbl, idx_bytes(arrays["train-labels-idx1-ubyte"][:-3], 0x00000801), False)
        return lbl
    if kind == "label_range":
        bad = arrays["train-labels-idx1-ubyte"].copy()
        bad[17] = 10
        write_file(lbl, idx_bytes(bad, 0x00000801), False)
        return lbl
    if kind == "bad_gzip":
        with open(img, "wb") as f:
            f.write(gzip.compress(idx_bytes(arrays["train-images-idx3-ubyte"], 0x00000803))[:-6])
        return img
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["bad_magic", "truncated", "truncated_header", "trailing",
                                  "count_mismatch", "label_range", "bad_gzip"])
def test_idx_errors_name_the_file(tmp_path, kind):
    arrays, paths = write_mnist(tmp_path, n_train=30, n_test=10)
    path = _corrupt(kind, paths, arrays)
    with pytest.raises(DatasetError) as e:
        load_dataset("mnist", root=str(tmp_path))
    msg = one_line_error(e, path)
    expected = {"bad_magic": "magic", "truncated": "truncated", "truncated_header": "header",
                "trailing": "unexpected bytes", "count_mismatch": "27 labels",
                "label_range": "label 10 at index 17", "bad_gzip": "gzip"}[kind]
    assert expected in msg


def test_idx_missing_file_and_root(tmp_path):
    _, paths = write_mnist(tmp_path, n_train=10, n_test=10)
    os.remove(paths["t10k-labels-idx1-ubyte"])
    with pytest.raises(DatasetError) as e:
        load_dataset("mnist", root=str(tmp_path))
    one_line_error(e, os.path.join(str(tmp_path), "t10k-labels-idx1-ubyte"),
                   os.path.join(str(tmp_path), "t10k-labels-idx1-ubyte.gz"))
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError) as e:
        load_dataset("mnist", root=str(missing))
    one_line_error(e, str(missing), "does not exist")


# ---------------------------------------------------------------- CIFAR-10

class Py2Pickler(pickle._Pickler):
    """Writes strings the way Python 2's cPickle wrote `str` (BINSTRING), as in the real batches."""

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_py2_str(self, obj):
        raw = obj.encode("ascii") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str
    dispatch[str] = _save_py2_str


def cifar_pickle(data, labels, style="py2"):
    d = {b"batch_label": b"training batch", b"labels": labels, b"data": data,
         b"filenames": [b"img_%d.png" % i for i in range(len(labels))]}
    if style == "py3":
        return pickle.dumps(d, protocol=2)
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(d)
    return buf.getvalue()


def write_cifar(folder, n=6, style="py2", seed=0):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (n, 3072)).astype(np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, n)]
        with open(os.path.join(folder, name), "wb") as f:
            f.write(cifar_pickle(data, labels, style))
        out[name] = (data, labels)
    return out


def expected_cifar(data):
    mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
    std = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)
    return (torch.from_numpy(data.reshape(-1, 3, 32, 32)).float() / 255 - mean) / std


@pytest.mark.parametrize("style,nested", [("py2", True), ("py3", False)])
def test_cifar_loads_real_format(tmp_path, style, nested):
    folder = tmp_path / "cifar-10-batches-py" if nested else tmp_path
    written = write_cifar(str(folder), style=style)
    d = load_dataset("cifar10", root=str(tmp_path))
    assert d.x_train.shape == (30, 3, 32, 32) and d.x_test.shape == (6, 3, 32, 32)
    assert d.input_shape == (3, 32, 32) and d.input_scale is None and d.augment is not None
    train = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)])
    assert torch.allclose(d.x_train, expected_cifar(train), atol=1e-5)
    # Channel-major layout: the first 1024 bytes of a row are the red plane, row by row.
    assert d.x_test[2, 0, 1, 3] == pytest.approx(
        (written["test_batch"][0][2, 32 + 3] / 255 - 0.4914) / 0.2470, abs=1e-5)
    assert d.y_test.tolist() == written["test_batch"][1]
    assert d.y_train.tolist() == sum((written[f"data_batch_{i}"][1] for i in range(1, 6)), [])


class _RunsCommand:
    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return self.func, (self.arg,)


@pytest.mark.parametrize("payload", ["system", "eval", "nested"])
def test_cifar_refuses_malicious_pickle(tmp_path, payload):
    write_cifar(str(tmp_path))
    marker = tmp_path / "pwned"
    if payload == "system":
        evil = _RunsCommand(os.system, f"touch {marker}")
    elif payload == "eval":
        evil = _RunsCommand(eval, f"open({str(marker)!r}, 'w').close()")
    else:  # hidden inside an otherwise valid batch
        evil = {b"data": np.zeros((6, 3072), np.uint8), b"labels": [0] * 6,
                b"filenames": [_RunsCommand(os.system, f"touch {marker}")]}
    path = tmp_path / "data_batch_3"
    path.write_bytes(pickle.dumps(evil, protocol=2))
    with pytest.raises(DatasetError) as e:
        load_dataset("cifar10", root=str(tmp_path))
    one_line_error(e, str(path), "refused")
    assert "system" in str(e.value) or "eval" in str(e.value)
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["missing", "shape", "labels", "not_dict", "garbage"])
def test_cifar_errors(tmp_path, kind):
    write_cifar(str(tmp_path))
    path = tmp_path / "data_batch_2"
    if kind == "missing":
        os.remove(path)
        os.remove(tmp_path / "test_batch")
        with pytest.raises(DatasetError) as e:
            load_dataset("cifar10", root=str(tmp_path))
        one_line_error(e, str(tmp_path), "data_batch_2", "test_batch")
        return
    if kind == "shape":
        blob = cifar_pickle(np.zeros((6, 3000), np.uint8), [0] * 6)
    elif kind == "labels":
        blob = cifar_pickle(np.zeros((6, 3072), np.uint8), [0] * 5)
    elif kind == "not_dict":
        blob = pickle.dumps([1, 2, 3], protocol=2)
    else:
        blob = b"this is not a pickle at all"
    path.write_bytes(blob)
    with pytest.raises(DatasetError) as e:
        load_dataset("cifar10", root=str(tmp_path))
    one_line_error(e, str(path))


# ---------------------------------------------------------------- augmentation

def _find_transform(src, out, pad):
    """All (dy, dx, flipped) whose crop of the zero-padded src equals out."""
    padded = torch.nn.functional.pad(src, (pad,) * 4)
    h, w = src.shape[-2:]
    found = []
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            crop = padded[:, dy:dy + h, dx:dx + w]
            for flipped in (False, True):
                if torch.equal(crop.flip(-1) if flipped else crop, out):
                    found.append((dy, dx, flipped))
    return found


def test_augment_deterministic_and_really_crops_and_flips():
    x = torch.rand((48, 3, 10, 12), generator=torch.Generator().manual_seed(1)) + 0.5
    a = random_crop_flip(x, torch.Generator().manual_seed(5), padding=4)
    b = random_crop_flip(x, torch.Generator().manual_seed(5), padding=4)
    c = random_crop_flip(x, torch.Generator().manual_seed(6), padding=4)
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    seen = set()
    for i in range(x.shape[0]):
        found = _find_transform(x[i], a[i], 4)
        assert len(found) == 1, (i, found)  # positive pixels: every crop/flip is distinguishable
        seen.add(found[0])
    assert len({s[2] for s in seen}) == 2          # both flipped and unflipped samples
    assert len({s[:2] for s in seen}) > 10         # many different crop offsets
    assert any(s[:2] != (4, 4) for s in seen)      # some samples really moved (zeros entered)
    assert (a == 0).any() and not (x == 0).any()


def test_cifar_dataset_augment_applies_to_batches(tmp_path):
    write_cifar(str(tmp_path), n=8)
    d = load_dataset("cifar10", root=str(tmp_path))
    batch = d.x_train[:16]
    out1 = d.augment(batch, torch.Generator().manual_seed(0))
    out2 = d.augment(batch, torch.Generator().manual_seed(0))
    assert out1.shape == batch.shape and torch.equal(out1, out2) and not torch.equal(out1, batch)
    assert all(_find_transform(batch[i], out1[i], 4) for i in range(16))


# ---------------------------------------------------------------- synthetic and batching

def test_synthetic_deterministic_and_learnable():
    a = load_dataset("synthetic", seed=3, shape=(2, 6, 6), classes=4, n_train=200, n_test=80)
    b = load_dataset("synthetic", seed=3, shape=(2, 6, 6), classes=4, n_train=200, n_test=80)
    c = load_dataset("synthetic", seed=4, shape=(2, 6, 6), classes=4, n_train=200, n_test=80)
    assert a.x_train.shape == (200, 2, 6, 6) and a.x_test.shape == (80, 2, 6, 6)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train, c.x_train)
    assert a.num_classes == 4 and torch.bincount(a.y_train).tolist() == [50] * 4
    k = a.x_train * a.input_scale
    assert torch.equal(k, torch.round(k)) and k.min() >= 0 and k.max() <= 255
    # Nearest class mean from the training split classifies the test split well above chance.
    means = torch.stack([a.x_train[a.y_train == i].flatten(1).mean(0) for i in range(4)])
    pred = torch.cdist(a.x_test.flatten(1), means).argmin(1)
    assert (pred == a.y_test).float().mean() > 0.9
    tab = load_dataset("synthetic", shape=(7,))
    assert tab.x_train.shape == (512, 7) and tab.x_test.shape == (128, 7) and tab.input_shape == (7,)
    with pytest.raises(DatasetError) as e:
        load_dataset("synthetic", shape=(3, 4))
    one_line_error(e, "synthetic", "shape")
    with pytest.raises(DatasetError) as e:
        load_dataset("synthetic", colour=True)
    one_line_error(e, "synthetic", "colour")


def test_batches_cover_everything_once():
    x, y = torch.arange(23).float().view(23, 1), torch.arange(23)
    plain = list(batches(x, y, 5, shuffle=False))
    assert [len(b[1]) for b in plain] == [5, 5, 5, 5, 3]
    assert torch.equal(torch.cat([b[1] for b in plain]), y)
    s1 = list(batches(x, y, 5, shuffle=True, generator=torch.Generator().manual_seed(2)))
    s2 = list(batches(x, y, 5, shuffle=True, generator=torch.Generator().manual_seed(2)))
    order = torch.cat([b[1] for b in s1])
    assert sorted(order.tolist()) == list(range(23)) and not torch.equal(order, y)
    assert torch.equal(order, torch.cat([b[1] for b in s2]))
    assert all(torch.equal(bx[:, 0].long(), by) for bx, by in s1)
    assert [len(b[1]) for b in batches(x, y, 5, True, torch.Generator(), drop_last=True)] == [5] * 4
