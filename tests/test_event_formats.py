"""DVS Gesture (AEDAT 3.1 + labels CSV + trial lists) and CIFAR10-DVS (AEDAT 2.0 per class folder) read
from files written here in the published layouts: the header and address bits as published (and as
tonic decodes them), labelled intervals as samples, and the frames through every form bit-exactly."""
from __future__ import annotations

import os
import struct

import numpy as np
import pytest

from saf_test_helpers.event_files import write_cifar10dvs_folder, write_dvsgesture_folder
from saf_test_helpers.reference_lif import reference_batch

from saf.deploy.backends.emulator import run_emulator  # noqa: E402
from saf.deploy.lava.backend import run_lava  # noqa: E402
from saf.deploy.lava.stock import run_lava_stock  # noqa: E402
from saf.deploy.backends.onnx_runner import run_onnx  # noqa: E402
from saf.export.ir import Graph, Layer, decay_for  # noqa: E402
from saf.export.onnx_model import build_onnx_model  # noqa: E402
from saf.export.proof.saf_int import run_saf_int  # noqa: E402
from saf.train.data import DatasetError, load_dataset  # noqa: E402
from saf.train.data.events.aedat import read_aedat  # noqa: E402
from saf.train.data.events.nmnist import decode_nmnist  # noqa: E402


def test_aedat2_big_endian_and_aedat3_packets(tmp_path):
    p2 = tmp_path / "a.aedat"
    p2.write_bytes(b"#!AER-DAT2.0\r\n# comment\r\n" + bytes([0, 0, 0x1F, 0x03, 0, 0, 0x01, 0x00]))
    a, t = read_aedat(str(p2), "2")
    assert a.tolist() == [0x1F03] and t.tolist() == [256]
    # x = (a >> 8) & 0x7F = 31, y = (a >> 1) & 0x7F = 1, p = 1 (tonic.io.read_dvs_128)
    from saf.train.data.events.cifar10dvs import decode_address
    assert [int(v[0]) for v in decode_address(a)] == [31, 1, 1]
    p3 = tmp_path / "b.aedat"
    addr = (100 << 17) | (7 << 2) | (1 << 1)
    body = struct.pack("<hhiiiiii", 1, 1, 8, 4, 1, 1, 1, 1) + struct.pack("<II", addr, 5)
    other = struct.pack("<hhiiiiii", 2, 1, 16, 4, 0, 1, 1, 1) + bytes(16)      # a non-polarity packet
    p3.write_bytes(b"#!AER-DAT3.1\r\n#!END-HEADER\r\n" + other + body)
    a, t = read_aedat(str(p3), "3")
    assert a.tolist() == [addr] and t.tolist() == [5 | (1 << 31)]             # tsOverflow << 31
    from saf.train.data.events.dvsgesture import decode_address as ibm
    assert [int(v[0]) for v in ibm(a)] == [100, 7, 1]
    with pytest.raises(DatasetError, match="not an AEDAT 3"):
        read_aedat(str(p2), "3")
    p3.write_bytes(p3.read_bytes()[:-3])
    with pytest.raises(DatasetError, match="truncated AEDAT 3 packet"):
        read_aedat(str(p3), "3")


def test_nmnist_overflow_marker_advances_time():
    raw = bytes([1, 2, 0x80, 0, 10]) + bytes([0, 240, 0, 0, 0]) + bytes([3, 4, 0, 0, 20])
    ev = decode_nmnist(raw)
    assert ev.t.tolist() == [10, 20 + (1 << 13)] and ev.y.tolist() == [2, 4]


def test_dvsgesture_intervals_are_samples(tmp_path):
    root = write_dvsgesture_folder(tmp_path / "g")
    ds = load_dataset("dvsgesture", root, T=3)
    assert ds.x_train.shape == (2, 3, 2, 128, 128) and ds.num_classes == 11
    assert ds.y_train.tolist() == [0, 3] and ds.y_test.tolist() == [1]
    assert [int(ds.x_train[i].sum()) for i in range(2)] == [200, 200]       # no event crosses an interval
    os.remove(os.path.join(root, "trials_to_test.txt"))
    with pytest.raises(DatasetError, match="missing DVS Gesture trial list"):
        load_dataset("dvsgesture", root, T=3)


def test_cifar10dvs_class_folders_and_split(tmp_path):
    root = write_cifar10dvs_folder(tmp_path / "c", per_class=3)
    ds = load_dataset("cifar10dvs", root, T=2)
    assert ds.x_train.shape == (20, 2, 2, 128, 128) and ds.x_test.shape == (10, 2, 2, 128, 128)
    assert ds.y_test.tolist() == list(range(10)) and int(ds.x_test[0].sum()) == 150


def pool_graph(T: int, classes: int) -> Graph:
    """A 2x128x128 input through a stride-8 conv (every backend runs it in seconds)."""
    rng = np.random.default_rng(5)
    c = Layer("conv0", "conv", rng.integers(-40, 41, size=(4, 2, 8, 8)), rng.integers(-3, 4, 4), (2, 128, 128),
              (4, 16, 16), threshold=30, stride=8)
    fc = Layer("fc1", "dense", rng.integers(-40, 41, size=(16, 1024)), rng.integers(-3, 4, 16), (1024,), (16,),
               threshold=60)
    ro = Layer("readout", "readout", rng.integers(-40, 41, size=(classes, 16)), rng.integers(-5, 6, classes),
               (16,), (classes,))
    return Graph(layers=[c, fc, ro], T=T, lam=0.5, decay=decay_for(0.5), input_shape=(2, 128, 128),
                 input_scale=1.0, input_bits=4, input_time_varying=True)


@pytest.mark.parametrize("fmt", ["dvsgesture", "cifar10dvs"])
def test_event_frames_through_every_form(fmt, tmp_path):
    root = (write_dvsgesture_folder(tmp_path / "g") if fmt == "dvsgesture"
            else write_cifar10dvs_folder(tmp_path / "c", per_class=2))
    ds = load_dataset(fmt, root, T=4)
    g = pool_graph(4, ds.num_classes)
    x = g.quantize_input(ds.x_train[:2].numpy())
    np.testing.assert_array_equal(x, ds.x_train[:2].numpy())               # counts are the input, exactly
    r, s, _ = reference_batch(g, x)
    assert all(0.01 < float(a.mean()) < 0.99 for a in s)
    for res in (run_emulator(g, x), run_saf_int(g, x), run_onnx(build_onnx_model(g), g, x), run_lava(g, x),
                run_lava_stock(g, x)):
        np.testing.assert_array_equal(res.readout, r, err_msg=res.backend)
        assert sum(int((a != b).sum()) for a, b in zip(res.spikes, s)) == 0, res.backend
    y = np.ascontiguousarray(x[:, ::-1])
    assert sum(int((a != b).sum()) for a, b in zip(run_emulator(g, y).spikes, s)) > 0
