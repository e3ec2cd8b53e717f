"""Small in-place edits of ONNX graphs, shared by the activation rewrite and INT4 packing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def consumers_by_tensor(nodes: Sequence[Any]) -> dict[str, list[Any]]:
    """Tensor name → the nodes that read it."""
    out: dict[str, list[Any]] = {}
    for n in nodes:
        for i in n.input:
            out.setdefault(i, []).append(n)
    return out


def drop_unused_initializers(model: Any) -> None:
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    keep = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)


def replace_nodes(model: Any, drop: set[int] = frozenset(), before: dict[int, list[Any]] | None = None) -> None:
    """Remove the nodes whose ``id()`` is in ``drop``, and put ``before[id(node)]`` right before a node.

    Inserting in place keeps the graph in topological order without sorting it again. The ids are
    of node objects the caller still holds, so they stay unique while this runs.
    """
    before = before or {}
    nodes = []
    for node in model.graph.node:
        nodes.extend(before.get(id(node), ()))
        if id(node) not in drop:
            nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)


def set_axis(node: Any, axis: int) -> None:
    import onnx

    for a in node.attribute:
        if a.name == "axis":
            a.i = axis
            return
    node.attribute.append(onnx.helper.make_attribute("axis", axis))
