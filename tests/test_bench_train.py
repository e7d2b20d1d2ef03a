"""`saf bench train`: result layout, exact memory facts (saved bytes flat in T for SAF/OTTT, linear
for BPTT, SAF's state a third of OTTT's), the CLI's bad-input errors. No timing assertions."""
from __future__ import annotations

import json

import pytest
import torch

from saf.deploy.main import main
from saf.train.bench.cost import (PAPER, BenchError, bench_train, compute_checks, format_bench_train, parse_methods,
                         parse_Ts)
from saf.train.methods.registry import METHODS

torch.set_num_threads(1)

ROW_KEYS = {"method", "T", "time_s", "times_s", "cpu_time_s", "memory_bytes", "memory_source", "saved_bytes",
            "state_bytes", "activation_bytes", "static_bytes", "rss_peak_bytes", "flops"}


@pytest.fixture(scope="module")
def tiny():
    return bench_train("conv-digits", 4, (1, 2, 4), METHODS, "cpu", steps=1, warmup=0, compile="off")


def _row(r, m, T):
    (row,) = [q for q in r["results"] if q["method"] == m and q["T"] == T]
    return row


def test_result_layout(tiny):
    r = tiny
    assert r["kind"] == "saf-bench-train"
    assert r["config"]["model"] == "conv-digits" and r["config"]["batch"] == 4 and r["config"]["Ts"] == [1, 2, 4]
    assert r["env"]["device"] == "cpu" and r["env"]["parameters"] > 0
    assert len(r["results"]) == len(METHODS) * 3
    for row in r["results"]:
        assert ROW_KEYS <= row.keys(), ROW_KEYS - row.keys()
        assert row["time_s"] > 0 and len(row["times_s"]) == 1
        assert row["activation_bytes"] == row["saved_bytes"] + row["state_bytes"]
        assert row["memory_bytes"] is None or row["memory_bytes"] >= row["static_bytes"] > 0
    assert set(r["ratios"]) == {"1", "2", "4"}
    for pair in ("saf-e/ottt-o", "saf-f/ottt-a", "saf-e/bptt", "saf-f/bptt", "ottt-o/bptt", "ottt-a/bptt"):
        assert {"time", "cpu_time", "memory", "activation", "saved"} <= r["ratios"]["4"][pair].keys()
    assert r["paper"] == PAPER and PAPER["ratios"]["saf-e/ottt-o"] == {"time": 0.70, "memory": 0.69}
    assert r["compile"] == {"tried": False, "mode": "off"}
    json.dumps(r)                                                  # JSON-able as written by --out


def test_saved_bytes_flat_for_saf_and_ottt_linear_for_bptt(tiny):
    for m in ("saf-e", "saf-f", "ottt-o", "ottt-a"):
        assert len({_row(tiny, m, T)["saved_bytes"] for T in (1, 2, 4)}) == 1, m
    b = [_row(tiny, "bptt", T)["saved_bytes"] for T in (1, 2, 4)]
    assert b[2] - b[1] == 2 * (b[1] - b[0]) > 0                        # the same graph added per step
    assert _row(tiny, "bptt", 1)["saved_bytes"] == _row(tiny, "saf-e", 1)["saved_bytes"]
    ch = tiny["checks"]
    assert ch["saf-e saved bytes flat in T"] and ch["bptt saved bytes linear in T"]


def test_saf_carries_one_state_per_neuron_ottt_three(tiny):
    saf, ottt = _row(tiny, "saf-e", 4)["state_bytes"], _row(tiny, "ottt-o", 4)["state_bytes"]
    assert ottt == 3 * saf > 0                                     # a  vs  u, s, a_hat
    assert _row(tiny, "saf-e", 4)["activation_bytes"] < _row(tiny, "ottt-o", 4)["activation_bytes"]
    # SAF-E computes W once per layer and step, OTTT twice (value on spikes, gradient on traces)
    assert _row(tiny, "saf-e", 4)["flops"] < _row(tiny, "ottt-o", 4)["flops"]
    assert _row(tiny, "saf-f", 4)["flops"] < _row(tiny, "ottt-a", 4)["flops"]


def test_report_text_names_pairs_and_paper(tiny):
    text = format_bench_train(tiny)
    for needle in ("saf-e/ottt-o", "saf-f/ottt-a", "bptt", "checks:", "conv-digits"):
        assert needle in text


def test_plot(tiny, tmp_path):
    from saf.train.bench.report import plot_bench_train
    out = plot_bench_train(tiny, tmp_path / "fig.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_checks_logic_on_made_up_rows():
    def row(m, T, t, mem, saved):
        return {"method": m, "T": T, "time_s": t, "memory_bytes": mem, "saved_bytes": saved,
                "activation_bytes": saved, "state_bytes": 0}
    rows = []
    for T in (2, 4, 6):
        rows += [row("saf-e", T, 0.7 * T, 90, 10), row("ottt-o", T, T, 100, 10),
                 row("saf-f", T, 0.3 * T, 90, 10), row("ottt-a", T, T, 100, 10),
                 row("bptt", T, T, 50 + 10 * T, 10 * T)]
    ch = compute_checks(rows)
    assert ch["saf-e faster than ottt-o at T=6"] and ch["saf-e lighter than ottt-o at T=6"]
    assert ch["saf-f faster than ottt-a at T=6"] and ch["bptt saved bytes linear in T"]
    assert ch["bptt memory grows with T"] and ch["saf-e saved bytes flat in T"]
    rows[0]["saved_bytes"] = 20
    assert not compute_checks(rows)["saf-e saved bytes flat in T"]


@pytest.mark.parametrize("text,expected", [("2,4,6", (2, 4, 6)), ("6, 2,2", (2, 6)), ([4, 1], (1, 4))])
def test_parse_Ts(text, expected):
    assert parse_Ts(text) == expected


@pytest.mark.parametrize("text,needle", [("", "comma-separated"), ("2,a", "'a' is not an integer"),
                                         ("0", "1..1024"), ("-3", "1..1024")])
def test_parse_Ts_rejects(text, needle):
    with pytest.raises(BenchError, match=needle):
        parse_Ts(text)


def test_parse_methods():
    assert parse_methods("SAF-E, bptt,saf-e") == ("saf-e", "bptt")
    with pytest.raises(BenchError, match="unknown method 'otto'"):
        parse_methods("saf-e,otto")


def test_bench_train_rejects_bad_arguments():
    with pytest.raises(BenchError, match="unknown model"):
        bench_train("no-such-model", 2, (1,), ("saf-e",), "cpu", 1, 0)
    with pytest.raises(BenchError, match="--batch"):
        bench_train("mlp-digits", 0, (1,), ("saf-e",), "cpu", 1, 0)
    with pytest.raises(BenchError, match="--device"):
        bench_train("mlp-digits", 2, (1,), ("saf-e",), "tpu", 1, 0)


@pytest.mark.parametrize("argv,needle", [
    (["--T", "2,x"], "--T: 'x' is not an integer"),
    (["--T", "0"], "--T: time steps must be in 1..1024"),
    (["--methods", "saf-e,nope"], "unknown method 'nope'"),
    (["--model", "nope"], "unknown model 'nope'"),
    (["--device", "tpu"], "--device tpu"),
    (["--batch", "0"], "--batch must be >= 1"),
    (["--out", "/no/such/dir/b.json"], "does not exist"),
])
def test_cli_bad_input_is_one_line_exit_2(argv, needle, capsys):
    rc = main(["bench", "train", "--model", "mlp-digits", "--compile", "off"] + argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and err.startswith("saf bench: error:") and needle in err, err


def test_cli_device_cuda_without_cuda(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)     # as on a CPU-only machine
    assert main(["bench", "train", "--device", "cuda", "--compile", "off"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_cli_small_run_writes_json_and_plot(tmp_path, capsys):
    out, png = tmp_path / "b.json", tmp_path / "b.png"
    rc = main(["bench", "train", "--model", "mlp-digits", "--batch", "2", "--T", "1,2", "--methods", "saf-e,ottt-o",
               "--steps", "1", "--warmup", "0", "--compile", "off", "--quiet", "--out", str(out), "--plot", str(png)])
    text = capsys.readouterr().out
    assert rc == 0 and "saf-e/ottt-o" in text and "paper" in text
    r = json.loads(out.read_text())
    assert {q["method"] for q in r["results"]} == {"saf-e", "ottt-o"} and png.stat().st_size > 0


def test_bench_infer_calls_the_lead_module_lazily(monkeypatch, capsys):
    import saf.deploy.bench.infer as bi
    seen = {}

    def fake(bundle, **kw):
        seen.update(kw, bundle=bundle)
        return {"ok": True}
    monkeypatch.setattr(bi, "bench_infer", fake)
    monkeypatch.setattr(bi, "format_bench_infer", lambda r: "FORMATTED")
    backends = ",".join(getattr(bi, "DEFAULT_BACKENDS", ("emulator",))[:1])
    assert main(["bench", "infer", "some/bundle", "--data", "digits", "--limit", "7", "--backends", backends]) == 0
    assert "FORMATTED" in capsys.readouterr().out
    assert seen["bundle"] == "some/bundle" and seen["limit"] == 7 and seen["data"] == "digits"
    assert seen["backends"] == (backends,)
    assert main(["bench", "infer", "b", "--backends", "warp-drive"]) == 2
    assert "--backends: unknown warp-drive" in capsys.readouterr().err


# ---------------------------------------------------------------- the speed-ups change no bit
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("surrogate,alpha", [("sigmoid", 4.0), ("rect", 1.0)])
@pytest.mark.parametrize("first", [True, False])
def test_fused_saf_step_is_bit_identical_to_the_formula(dtype, surrogate, alpha, first):
    from saf.train.functional.neuron import saf_step, saf_step_fused
    from saf.train.functional.surrogate import spike
    g = torch.Generator().manual_seed(5)
    lam, theta = 0.5, 1.0
    a_prev = None if first else torch.randint(0, 4, (3, 5, 6, 6), generator=g).to(dtype) * 0.75
    U = (torch.randn(3, 5, 6, 6, generator=g) * 2).to(dtype)
    if a_prev is not None:                                         # exact ties: U == theta * (lam * a + 1)
        U[0] = theta * (lam * a_prev[0] + 1.0)
    else:
        U[0] = theta
    outs = []
    for fused in (False, True):
        u = U.clone().requires_grad_(True)
        a = (saf_step_fused(u, a_prev, lam, theta, surrogate, alpha) if fused
             else saf_step(u, a_prev, lam, theta, lambda v: spike(v, surrogate, alpha)))
        w = torch.randn(a.shape, generator=torch.Generator().manual_seed(6)).to(dtype)
        (grad,) = torch.autograd.grad((a * w).sum(), u)
        outs.append((a.detach(), grad))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])


def test_saf_f_with_cached_weights_equals_recomputing_them():
    from saf.train.modules.network import SpikingNet
    from saf.train.spec import builtin_spec, with_neuron
    torch.manual_seed(0)
    net = SpikingNet(with_neuron(builtin_spec("conv-digits-f")))
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        s1, s2 = net.init_saf(), net.init_saf()
        ws = net.effective_weights()
        for _ in range(4):
            o1, s1 = net.saf_step(x, s1, readout="acc")
            o2, _ = net.saf_step(x, s2, readout="acc", weights=ws)
            none, s2 = net.saf_step(x, s2, readout="none", weights=ws)
            assert none is None and torch.equal(o1, o2)
            assert all(torch.equal(p, q) for p, q in zip(s1.a, s2.a))
