"""The linear glue in front of a synapse (avg pooling, global average pooling, flatten), as the spec's
`pre` ops list it; the float network, the grid forward and export's fold all apply it through here."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def apply_glue(x: torch.Tensor, pre: list) -> torch.Tensor:
    for op in pre:
        if op[0] == "avgpool":
            x = F.avg_pool2d(x, op[1])
        elif op[0] == "gap":
            x = x.mean(dim=(2, 3))
        elif op[0] == "flatten":
            x = x.flatten(1)
    return x
