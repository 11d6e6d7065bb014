"""Two rewrites of an exported ONNX graph that ONNX Runtime's own optimiser leaves undone.

``torch.onnx.export(dynamo=True)`` writes

* ``nn.GELU()`` as ``Div(x, sqrt 2) -> Erf -> Add 1 -> Mul 0.5 -> Mul x``: five passes over the
  tensor, an order ONNX Runtime's ``GeluFusion`` does not match (it expects the ``Mul x`` before
  the ``Mul 0.5``). :func:`fuse_gelu` puts ONNX Runtime's own ``com.microsoft.Gelu`` kernel there
  (the exact, erf form: the same function);
* ``nn.GroupNorm(C, C)`` (MedNeXt's norm: one group per channel) as ``Reshape -> InstanceNormalization
  (scale 1, bias 0) -> Reshape -> Mul gamma -> Add beta``. With one channel per group that is
  ``InstanceNormalization(x, gamma, beta)``; :func:`fold_group_norm` writes that.

Measured (ONNX Runtime 1.32, bundled MedNeXt-S k3, batch of 2 x 64^3, one thread, this project's
2-core AVX2 machine): GELU was 38 % of the run (Erf alone 18 %); with it fused, 1.57-1.78 s ->
1.22-1.39 s per batch, logits within 3e-5 (|logits| up to 94). Both rewrites change the arithmetic
by float rounding only; ``tests/inference/test_onnx_graph.py`` checks the outputs against the graph
before the rewrite.
"""
from __future__ import annotations

from typing import Any

import numpy as np

#: bumped whenever the rewrites change (part of the compiled-model cache key)
GRAPH_REWRITES = "gelu+groupnorm-1"


def _graph_index(graph: Any) -> tuple[dict[str, Any], dict[str, list[Any]], dict[str, np.ndarray]]:
    from onnx import numpy_helper

    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    return producer, consumers, inits


def _scalar(inits: dict[str, np.ndarray], name: str, value: float) -> bool:
    a = inits.get(name)
    return a is not None and a.size == 1 and abs(float(a.reshape(-1)[0]) - value) < 1e-6


def _only_consumer(consumers: dict[str, list[Any]], node: Any, op: str) -> Any | None:
    after = consumers.get(node.output[0], [])
    return after[0] if len(after) == 1 and after[0].op_type == op else None


def _replace(graph: Any, remove: set[int], insert: dict[int, Any]) -> None:
    """Drop the nodes in ``remove`` (by id) and put ``insert[id]`` where that node stood."""
    kept = [insert.get(id(n), n) for n in graph.node if id(n) not in remove or id(n) in insert]
    del graph.node[:]
    graph.node.extend(kept)


def _prune(graph: Any) -> None:
    """Remove nodes nobody reads and initialisers nobody uses (repeat until nothing changes)."""
    outputs = {o.name for o in graph.output}
    while True:
        used = {i for n in graph.node for i in n.input} | outputs
        dead = [n for n in graph.node if not any(o in used for o in n.output)]
        if not dead:
            break
        ids = {id(n) for n in dead}
        kept = [n for n in graph.node if id(n) not in ids]
        del graph.node[:]
        graph.node.extend(kept)
    used = {i for n in graph.node for i in n.input}
    kept_init = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept_init)


def fuse_gelu(model: Any) -> int:
    """Replace every exported erf-GELU chain by ``com.microsoft.Gelu``; returns how many."""
    from onnx import helper

    graph = model.graph
    producer, consumers, inits = _graph_index(graph)
    remove: set[int] = set()
    insert: dict[int, Any] = {}
    for erf in graph.node:
        if erf.op_type != "Erf":
            continue
        div = producer.get(erf.input[0])
        if div is None or div.op_type != "Div" or not _scalar(inits, div.input[1], 2 ** 0.5):
            continue
        x = div.input[0]
        add = _only_consumer(consumers, erf, "Add")
        half = add and _only_consumer(consumers, add, "Mul")
        out = half and _only_consumer(consumers, half, "Mul")
        if not (out and any(_scalar(inits, i, 1.0) for i in add.input) and any(_scalar(inits, i, 0.5) for i in half.input)
                and x in out.input and len(consumers.get(div.output[0], [])) == 1):
            continue
        chain = (div, erf, add, half, out)
        remove |= {id(n) for n in chain}
        insert[id(out)] = helper.make_node("Gelu", [x], [out.output[0]], domain="com.microsoft", name=f"{out.name}_gelu")
    if insert:
        _replace(graph, remove, insert)
        if not any(o.domain == "com.microsoft" for o in model.opset_import):
            model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return len(insert)


def fold_group_norm(model: Any) -> int:
    """Turn exported ``GroupNorm(C, C)`` chains into one ``InstanceNormalization(x, gamma, beta)``;
    returns how many (chains with fewer groups than channels are left alone)."""
    from onnx import helper, numpy_helper

    graph = model.graph
    producer, consumers, inits = _graph_index(graph)
    remove: set[int] = set()
    insert: dict[int, Any] = {}
    new_inits = []
    for norm in graph.node:
        if norm.op_type != "InstanceNormalization" or len(norm.input) != 3:
            continue
        reshape_in = producer.get(norm.input[0])
        scale, bias = inits.get(norm.input[1]), inits.get(norm.input[2])
        if reshape_in is None or reshape_in.op_type != "Reshape" or scale is None or bias is None:
            continue
        if not (np.all(scale == 1) and np.all(bias == 0)) or len(consumers.get(reshape_in.output[0], [])) != 1:
            continue
        reshape_out = _only_consumer(consumers, norm, "Reshape")
        mul = reshape_out and _only_consumer(consumers, reshape_out, "Mul")
        add = mul and _only_consumer(consumers, mul, "Add")
        if not add:
            continue
        gamma = next((inits[i] for i in mul.input if i in inits), None)
        beta = next((inits[i] for i in add.input if i in inits), None)
        groups = scale.size
        if gamma is None or beta is None or gamma.size != groups or beta.size != groups or gamma.ndim < 2:
            continue  # not one group per channel (or not a per-channel affine)
        x = reshape_in.input[0]
        g_name, b_name = f"{norm.name}_gamma", f"{norm.name}_beta"
        new_inits += [numpy_helper.from_array(gamma.reshape(-1).astype(np.float32), g_name),
                      numpy_helper.from_array(beta.reshape(-1).astype(np.float32), b_name)]
        eps = [a for a in norm.attribute if a.name == "epsilon"]
        node = helper.make_node("InstanceNormalization", [x, g_name, b_name], [add.output[0]], name=f"{norm.name}_affine")
        node.attribute.extend(eps)
        remove |= {id(n) for n in (reshape_in, norm, reshape_out, mul, add)}
        insert[id(add)] = node
    if insert:
        _replace(graph, remove, insert)
        graph.initializer.extend(new_inits)
    return len(insert)


def rewrite(model: Any) -> dict[str, int]:
    """Both rewrites, then unused nodes and initialisers dropped; returns how many of each."""
    done = {"gelu": fuse_gelu(model), "group_norm": fold_group_norm(model)}
    _prune(model.graph)
    return done
