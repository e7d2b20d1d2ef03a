"""Built-in IDE feedback networks (IDE paper Sec. 5; decoded in docs/methods.md#ide-paper-networks), as spec data.

Every net has one global threshold V_th = 2 (the authors' code) and a spectrally normalised feedback
edge from the last spiking layer into the first (one-step delay), W = clamp(g, -1, 1) V / sigma(V),
so ||W||_2 <= 1 = V_th / 2. Departures from the paper, stated once here: the feed-forward maps use
this project's scaled weight standardization where the paper has BatchNorm, and there is no dropout.

- ide-digits: docs/methods.md#i4-a-digits-feedback-net, digits 8x8 -> 200 (F200) -> readout.
- ide-conv-digits: the small conv variant, 16C3 (F16C3) -> avgpool 2 -> readout.
- ide-mnist: 64C5s (F64C5), MNIST / N-MNIST's paper net (input 1x28x28).
- ide-fmnist: 400 (F400), the Fashion-MNIST net.
- ide-alexnetf-cifar / ide-cifarnetf-cifar: AlexNet-F and CIFARNet-F, whose feedback is a stride-2
  ConvTranspose (the "u" in F96C3u): trainable here; the IR cannot hold that edge, so export refuses it.
"""
from __future__ import annotations

from saf.train.spec import register_specs

IDE_NEURON = {"theta": 2.0}


def _conv(out, k=3, s=1, p=1):
    return {"type": "conv", "out": out, "kernel": k, "stride": s, "padding": p}


def _sn(src, dst, **kw):
    return dict({"src": src, "dst": dst, "norm": "spectral"}, **kw)


def _cifar_f(widths) -> dict:
    """xC3s-C3-C3s-C3-C3 with a ConvTranspose3 s2 p1 op1 feedback from layer 5 into layer 1."""
    w = widths
    return {"input_shape": [3, 32, 32], "num_classes": 10, "neuron": dict(IDE_NEURON),
            "layers": [_conv(w[0], s=2), _conv(w[1]), _conv(w[2], s=2), _conv(w[3]), _conv(w[4])],
            "feedback": [_sn(4, 0, kernel=3, padding=1, transposed=True, stride=2, output_padding=1)]}


IDE_SPECS = {
    "ide-digits": {"input_shape": [1, 8, 8], "num_classes": 10, "neuron": dict(IDE_NEURON),
                   "layers": [{"type": "flatten"}, {"type": "linear", "out": 200}],
                   "feedback": [_sn(0, 0)]},
    "ide-conv-digits": {"input_shape": [1, 8, 8], "num_classes": 10, "neuron": dict(IDE_NEURON),
                        "layers": [_conv(16), {"type": "avgpool", "kernel": 2}, {"type": "flatten"}],
                        "feedback": [_sn(0, 0, kernel=3, padding=1)]},
    "ide-mnist": {"input_shape": [1, 28, 28], "num_classes": 10, "neuron": dict(IDE_NEURON),
                  "layers": [_conv(64, k=5, s=2, p=2)],
                  "feedback": [_sn(0, 0, kernel=5, padding=2)]},
    "ide-fmnist": {"input_shape": [1, 28, 28], "num_classes": 10, "neuron": dict(IDE_NEURON),
                   "layers": [{"type": "flatten"}, {"type": "linear", "out": 400}],
                   "feedback": [_sn(0, 0)]},
    "ide-alexnetf-cifar": _cifar_f((96, 256, 384, 384, 256)),
    "ide-cifarnetf-cifar": _cifar_f((128, 256, 512, 1024, 512)),
}

register_specs(IDE_SPECS)
