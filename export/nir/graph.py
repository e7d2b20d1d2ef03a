"""Read a NIR file and order its graph into a chain: Input -> ... -> Output, with recurrent edges.

Refused in one line naming the file and the node or edge: an unreadable or truncated HDF5 file, a
graph NIR's own type inference rejects (it names the edge), a node type outside SUPPORTED, a
parameter that is not a finite real number in float32's range, a branch, and a cycle that does not
enter a neuron through one synapse (a cycle through a non-neuron has no step of delay to give it a
meaning in discrete time).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from saf.export.nir.errors import NirError

NEURONS = ("IF", "LIF", "CubaLIF")
READOUTS = ("I", "LI", "CubaLI")
SYNAPSES = ("Affine", "Linear", "Conv2d")
GLUE = ("AvgPool2d", "SumPool2d", "Flatten", "Scale")
SUPPORTED = ("Input", "Output") + SYNAPSES + GLUE + NEURONS + READOUTS
MAX_FILE = 1 << 31                  # 2 GiB: a NIR file beyond that is not a network this toolchain maps


@dataclass
class Chain:
    """The graph as saf reads it: `nodes` from Input to Output in order (name, node), and `recurrent`
    synapses (name, node, from neuron, into neuron) whose output arrives one step later."""
    path: str
    nodes: list
    recurrent: list = field(default_factory=list)
    metadata: dict = field(default_factory=dict)


def kind(node) -> str:
    return type(node).__name__


def read_graph(path) -> "object":
    """nir.read of `path` with NIR's own type check; NirError (one line naming the file) otherwise."""
    import nir

    p = Path(path)
    if not p.is_file():
        raise NirError(f"{p}: no such NIR file")
    size = p.stat().st_size
    if size > MAX_FILE:
        raise NirError(f"{p}: {size:,} bytes; saf imports NIR files up to {MAX_FILE:,} bytes")
    try:
        import h5py
        if not h5py.is_hdf5(str(p)):
            raise NirError(f"{p}: not an HDF5 file (truncated or another format); NIR files are HDF5")
        graph = nir.read(str(p), type_check=True)
    except NirError:
        raise
    except Exception as e:  # noqa: BLE001 - h5py and nir raise many types for damaged or ill-typed files
        msg = " ".join(str(e).split()) or type(e).__name__
        raise NirError(f"{p}: not a usable NIR graph ({type(e).__name__}: {msg})") from None
    if kind(graph) != "NIRGraph":
        raise NirError(f"{p}: holds a single {kind(graph)} node, not a NIRGraph")
    return graph


def _flatten(graph, prefix: str = "") -> tuple:
    """(nodes, edges) with nested NIRGraph nodes inlined (their Input/Output bypassed)."""
    nodes, edges = {}, []
    subs = {}
    for name, n in graph.nodes.items():
        full = prefix + name
        if kind(n) == "NIRGraph":
            sn, se = _flatten(n, full + ".")
            ins = [k for k, v in sn.items() if kind(v) == "Input"]
            outs = [k for k, v in sn.items() if kind(v) == "Output"]
            if len(ins) != 1 or len(outs) != 1:
                raise NirError(f"subgraph '{full}': needs exactly one Input and one Output node")
            subs[full] = (ins[0], outs[0])
            nodes.update({k: v for k, v in sn.items() if k not in (ins[0], outs[0])})
            edges += [(a, b) for a, b in se if a not in (ins[0], outs[0]) and b not in (ins[0], outs[0])]
            first = [b for a, b in se if a == ins[0]]
            last = [a for a, b in se if b == outs[0]]
            subs[full] = (first, last)
        else:
            nodes[full] = n
    out = []
    for a, b in graph.edges:
        a, b = prefix + a, prefix + b
        srcs = subs[a][1] if a in subs else [a]
        dsts = subs[b][0] if b in subs else [b]
        out += [(s, d) for s in srcs for d in dsts]
    return nodes, edges + out


F32_MAX = float(np.finfo(np.float32).max)       # a parameter beyond it has no float32 weight or state


def _values(path, name: str, node) -> None:
    """Every parameter of `node` (and an Input's shape) real numbers, finite and within float32's range: a
    string, complex or object value, NaN or inf (but tau = r = inf: neurons.py) is refused naming the attribute."""
    items = [(a, v) for a, v in vars(node).items() if a not in ("metadata", "input_type", "output_type")]
    if kind(node) == "Input":
        items.append(("shape", node.input_type.get("input")))
    for attr, v in items:
        if v is None:
            continue
        a = np.asarray(v)
        if a.dtype.kind not in "iuf":
            raise NirError(f"{path}: node '{name}' ({kind(node)}): {attr} holds {a.dtype} values, not real numbers")
        if not a.size:
            raise NirError(f"{path}: node '{name}' ({kind(node)}): {attr} is empty")
        if not np.isfinite(a).all():
            if kind(node) in ("LIF", "CubaLIF", "LI", "CubaLI") and attr in ("tau", "tau_mem", "tau_syn", "r") \
                    and not np.isnan(a).any() and (a > 0).all():
                continue                  # tau = r = inf: snnTorch's beta = 1 (neurons.py decides)
            raise NirError(f"{path}: node '{name}' ({kind(node)}): {attr} holds NaN or inf")
        if np.abs(a).max() > F32_MAX:
            raise NirError(f"{path}: node '{name}' ({kind(node)}): {attr} holds {np.abs(a).max():g}, beyond "
                           f"float32's range (saf's weights and states are float32)")


def chain(path, graph) -> Chain:
    """Order `graph` (read_graph) into a Chain, refusing what saf cannot map (module docstring)."""
    nodes, edges = _flatten(graph)
    for name, n in nodes.items():
        if kind(n) not in SUPPORTED:
            raise NirError(f"{path}: node '{name}' has type {kind(n)}, which saf does not import "
                           f"(supported: {', '.join(SUPPORTED)})")
        _values(path, name, n)
    for a, b in edges:
        for end in (a, b):
            if end not in nodes:
                raise NirError(f"{path}: edge ('{a}', '{b}') names node '{end}', which the graph does not have")
    ins = [k for k, v in nodes.items() if kind(v) == "Input"]
    outs = [k for k, v in nodes.items() if kind(v) == "Output"]
    if len(ins) != 1 or len(outs) != 1:
        raise NirError(f"{path}: needs exactly one Input and one Output node, has {len(ins)} and {len(outs)}")
    succ = {k: [] for k in nodes}
    for a, b in edges:
        succ[a].append(b)
    back = _back_edges(ins[0], succ)
    recurrent = []
    for a, b in back:
        if kind(nodes[b]) not in NEURONS:
            raise NirError(f"{path}: edge ('{a}', '{b}') closes a cycle into '{b}' ({kind(nodes[b])}); a cycle "
                           f"must enter a neuron (IF, LIF, CubaLIF) through one synapse")
        preds = [x for x, y in edges if y == a]
        if kind(nodes[a]) not in SYNAPSES or len(preds) != 1 or kind(nodes[preds[0]]) not in NEURONS \
                or len(succ[a]) != 1:
            raise NirError(f"{path}: edge ('{a}', '{b}') closes a cycle through '{a}' ({kind(nodes[a])}); a "
                           f"recurrent connection must be one synapse from a neuron into a neuron")
        recurrent.append((a, nodes[a], preds[0], b))
    rec = {r[0] for r in recurrent}
    order, cur, seen = [], ins[0], set()
    while True:
        order.append((cur, nodes[cur]))
        seen.add(cur)
        nxt = [b for b in succ[cur] if b not in rec and (cur, b) not in back]
        if cur == outs[0]:
            break
        if len(nxt) != 1:
            what = "has no outgoing edge" if not nxt else f"branches to {', '.join(repr(x) for x in nxt)}"
            raise NirError(f"{path}: node '{cur}' ({kind(nodes[cur])}) {what}; saf imports a chain from Input to "
                           f"Output (plus recurrent synapses)")
        cur = nxt[0]
    left = sorted(set(nodes) - seen - rec)
    if left:
        raise NirError(f"{path}: node '{left[0]}' ({kind(nodes[left[0]])}) is not on the path from Input to Output")
    return Chain(str(path), order, recurrent, dict(getattr(graph, "metadata", None) or {}))


def _back_edges(start: str, succ: dict) -> list:
    """Edges into a node still on the depth-first stack from `start` (each closes a cycle)."""
    back, state = [], {}
    stack = [(start, iter(succ[start]))]
    state[start] = 1
    while stack:
        node, it = stack[-1]
        nxt = next(it, None)
        if nxt is None:
            state[node] = 2
            stack.pop()
        elif state.get(nxt) == 1:
            back.append((node, nxt))
        elif nxt not in state:
            state[nxt] = 1
            stack.append((nxt, iter(succ[nxt])))
    return back
