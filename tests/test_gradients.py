"""Theorem 1 (SAF paper Sec. 4.2, App. A.3; feedback Sec. 4.3): SAF-E's per-step weight gradients
equal OTTT_O's. SAF-E runs the accumulation form (saf_step); OTTT_O runs the LIF form with the
presynaptic-trace substitution (lif_step mode="trace"): two different forward code paths whose
gradients must agree. SAF-F and OTTT_A only point the same way (positive inner product); BPTT
differs (sanity check that the comparison can fail).

Random float64 networks with scaled weight standardization, every parameter (weights, sWS gains,
biases, feedback weights, readout) compared."""
from __future__ import annotations

import copy

import pytest
import torch

from saf_test_helpers.grad_nets import assert_forms_agree, flat, make, per_step_grads

torch.set_num_threads(1)

CASES = [("mlp", 0.5, "sigmoid"), ("mlp", 1.0, "sigmoid"), ("mlp", 0.25, "rect"),
         ("mlp-fb", 0.5, "sigmoid"), ("mlp-fb", 0.9, "sigmoid"),
         ("conv", 0.5, "sigmoid"), ("conv-fb", 0.5, "sigmoid"), ("conv-fb", 1.0, "rect")]


@pytest.mark.parametrize("name,lam,surrogate", CASES)
def test_theorem1_saf_e_equals_ottt_o_per_step(name, lam, surrogate):
    T = 6
    net, x, y = make(name, lam, surrogate)
    assert_forms_agree(net, x, T)
    before = copy.deepcopy(net.state_dict())
    ge, re = per_step_grads(net, x, y, T, "saf-e")
    go, ro = per_step_grads(net, x, y, T, "ottt-o")
    for k, v in net.state_dict().items():            # step_optimizer=False really left weights alone
        assert torch.equal(v, before[k])
    assert sorted(ge) == sorted(go) == list(range(1, T + 1))
    max_diff, max_mag = 0.0, 0.0
    for t in range(1, T + 1):
        for k in ge[t]:
            d = float((ge[t][k] - go[t][k]).abs().max())
            max_diff = max(max_diff, d)
            max_mag = max(max_mag, float(go[t][k].abs().max()))
            assert d < 1e-10, f"{name}: parameter {k} at t={t}: |SAF-E - OTTT_O| = {d:.3e}"
    # Every parameter receives a non-zero gradient at some step (the comparison is not vacuous).
    for k in ge[1]:
        assert any(float(go[t][k].abs().max()) > 1e-6 for t in ge), k
    assert torch.allclose(re["logits"], ro["logits"], rtol=0, atol=1e-12)
    assert abs(re["loss"] - ro["loss"]) < 1e-12
    print(f"\n[theorem 1] {name} lam={lam} {surrogate}: max |grad SAF-E - grad OTTT_O| = {max_diff:.2e} "
          f"(largest gradient entry {max_mag:.2e})")


@pytest.mark.parametrize("name", ["mlp", "mlp-fb", "conv", "conv-fb"])
def test_saf_f_and_ottt_a_point_the_same_way_and_bptt_differs(name):
    T = 6
    net, x, y = make(name, 0.5, seed=3)
    assert_forms_agree(net, x, T)
    gf, rf = per_step_grads(net, x, y, T, "saf-f")
    ga, ra = per_step_grads(net, x, y, T, "ottt-a")
    gb, rb = per_step_grads(net, x, y, T, "bptt")
    go, _ = per_step_grads(net, x, y, T, "ottt-o")
    assert list(gf) == [T] and list(gb) == [T] and list(ga) == list(range(1, T + 1))
    f, a, b = flat(gf[T]), flat(ga[T]), flat(gb[T])
    # OTTT_A accumulates: its total equals the sum of OTTT_O's per-step gradients.
    o_sum = sum(flat(go[t]) for t in go)
    assert float((a - o_sum).abs().max()) < 1e-12
    cos = float(f @ a / (f.norm() * a.norm()))
    assert cos > 0, f"SAF-F vs OTTT_A cosine {cos}"
    per_param = {k: float((gf[T][k].reshape(-1) @ ga[T][k].reshape(-1))
                          / (gf[T][k].norm() * ga[T][k].norm() + 1e-300)) for k in gf[T]}
    # BPTT has the same forward and loss as OTTT_A but a different gradient (temporal dependencies).
    assert torch.allclose(rb["logits"], ra["logits"], rtol=0, atol=1e-12)
    assert abs(rb["loss"] - ra["loss"]) < 1e-12
    rel = float((b - a).norm() / a.norm())
    assert rel > 1e-2, f"BPTT gradient indistinguishable from OTTT_A (rel diff {rel})"
    cos_b = float(b @ a / (b.norm() * a.norm()))
    print(f"\n[SAF-F vs OTTT_A] {name}: cosine = {cos:.4f} (per parameter min {min(per_param.values()):.4f}); "
          f"BPTT vs OTTT_A: relative diff {rel:.3f}, cosine {cos_b:.4f}")


def test_saf_e_is_not_shifted_by_a_step():
    """Sanity check that Theorem 1's comparison is sharp: SAF-E at step t does not match OTTT_O at
    step t-1, and a SAF-E run with a different leak does not match either."""
    T = 4
    net, x, y = make("mlp-fb", 0.5)
    ge, _ = per_step_grads(net, x, y, T, "saf-e")
    go, _ = per_step_grads(net, x, y, T, "ottt-o")
    assert float((flat(ge[3]) - flat(go[2])).abs().max()) > 1e-4
    other = copy.deepcopy(net)
    other.lam = 0.25
    g2, _ = per_step_grads(other, x, y, T, "saf-e")
    assert float((flat(g2[T]) - flat(go[T])).abs().max()) > 1e-4
