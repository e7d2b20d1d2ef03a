"""saf-toolchain: train spiking networks with Spike Accumulation Forwarding (saf.train), export them to
Loihi (Lava) and ONNX (saf.export, saf.hw_targets) and verify the deployed network (saf.deploy).

Installed as this one namespace: the repository's folders core/, train/, export/, hw_targets/ and deploy/
are the subpackages saf.core (the rules every package uses), saf.train, saf.export, saf.hw_targets and
saf.deploy."""

__version__ = "0.1.0"
