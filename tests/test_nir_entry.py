"""One NIR entry point (issue 30 item 4): export/nir.import_nir reads a file's graph metadata `saf` once and picks
what the file is (an FP run saf wrote, a DSR run saf wrote, any other network), refusing the flags that kind does
not take in one line; both directions share export/nir/conventions.py (the metadata words, the defaults)."""
from __future__ import annotations

import json

import nir
import pytest

import saf.export.nir.meta as meta_mod
from saf_test_helpers.nir_mutants import fp_graph, hand_built
from saf.export.nir import NirError, import_nir
from saf.export.nir.conventions import COMPARE_OF_FLAG, DEFAULTS, DSR_KEY, FLAG_OF_COMPARE, SAF_META, Options
from saf.export.nir.entry import DSR, FP, PLAIN
from saf.core.neuron_modes import COMPARES


@pytest.fixture
def meta_reads(monkeypatch):
    """How often the graph metadata `saf` is parsed (meta.saf_meta, the one reader) during one import."""
    calls = []
    real = meta_mod.saf_meta

    def counted(ch):
        calls.append(ch.path)
        return real(ch)

    monkeypatch.setattr(meta_mod, "saf_meta", counted)
    return calls


def _write(tmp_path, name, graph):
    path = tmp_path / f"{name}.nir"
    nir.write(str(path), graph)
    return path


def _with_dsr_meta(graph):
    meta = json.loads(graph.metadata[SAF_META])
    meta[DSR_KEY] = {"alpha": 0.5, "readout": "linear", "vth_min": 0.01}
    return nir.NIRGraph(nodes=graph.nodes, edges=graph.edges, metadata={SAF_META: json.dumps(meta)})


def test_import_nir_picks_the_kind_reading_the_metadata_once(tmp_path, meta_reads):
    hand = hand_built()
    plain = import_nir(_write(tmp_path, "plain", hand["conv-lif-sumpool"]), Options())
    assert plain.kind == PLAIN and plain.imported.options.T == DEFAULTS.T and len(meta_reads) == 1
    own = import_nir(_write(tmp_path, "own", hand["cuba-scale-meta"]), Options())
    assert own.kind == PLAIN and own.imported.options.T == 4 and own.imported.options.reset == "subtract"
    assert len(meta_reads) == 2
    fp = import_nir(_write(tmp_path, "fp", fp_graph()), Options(current_order="snntorch"))
    assert fp.kind == FP and fp.imported is None and fp.fp[0].sizes == [5, 8, 3] and len(meta_reads) == 3
    dsr = _write(tmp_path, "dsr", _with_dsr_meta(hand["cuba-scale-meta"]))
    with pytest.raises(NirError, match="^--input-shape: a DSR file saf wrote carries its input shape and readout$"):
        import_nir(dsr, Options(), input_shape=(1, 4, 4))       # the DSR branch was taken: its own refusal
    with pytest.raises(NirError, match="needs a one-step delay"):
        import_nir(dsr, Options(current_order="nir"))           # refused inside the build: still one read each
    assert len(meta_reads) == 5 and DSR == "dsr"


@pytest.mark.parametrize("given,shape,readout,flag", [
    (Options(T=5), None, None, "--T"), (Options(dt=1e-3), None, None, "--dt"),
    (Options(compare="ge"), None, None, "--compare"), (Options(), (5,), None, "--input-shape"),
])
def test_fp_file_refuses_its_own_flags(tmp_path, given, shape, readout, flag):
    path = _write(tmp_path, "fp", fp_graph())
    with pytest.raises(NirError) as e:
        import_nir(path, given, shape, readout)
    msg = str(e.value)
    assert msg.startswith(f"{flag}: {path} is an FP network saf wrote") and "\n" not in msg
    assert msg.endswith("give none of --dt, --T, --reset, --compare, --encoder, --dataset, --input-shape")
    with pytest.raises(NirError, match="^--readout: an FP file saf wrote carries its first-spike readout$"):
        import_nir(path, Options(), None, "count")


def test_compare_words_are_one_table_both_ways():
    assert set(COMPARE_OF_FLAG.values()) == set(COMPARES)
    assert all(COMPARE_OF_FLAG[FLAG_OF_COMPARE[m]] == m for m in COMPARES)
    assert FLAG_OF_COMPARE[COMPARE_OF_FLAG[DEFAULTS.compare]] == DEFAULTS.compare
