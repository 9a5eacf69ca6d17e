"""Graph: a container for any directed acyclic network of modules.

Sequential chains modules; a Graph wires them. It has named inputs, nodes that are modules
fed by inputs or earlier nodes, and named outputs (Torch7's nngraph, the Keras functional
API)::

    model = nnkit.Graph(
        inputs="x",
        nodes={
            "hidden": (nnkit.Dense(4, 16, rng=rng), "x"),
            "left": (nnkit.ReLU(), "hidden"),
            "right": (nnkit.Tanh(), "hidden"),
            "joined": (nnkit.Concatenate(axis=1), ["left", "right"]),
            "out": (nnkit.Dense(32, 3, rng=rng), "joined"),
        },
        outputs="out",
    )

docs/architectures.md explains the syntax with a two-branch and a two-output example.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from nnkit.containers import Container
from nnkit.module import Module

__all__ = ["Graph"]


class _Ref(NamedTuple):
    """A value in the graph: an input or a node's output, or element ``index`` of a node's
    tuple output (written ``"name:index"``)."""

    name: str
    element: int | None

    def __str__(self) -> str:
        return self.name if self.element is None else f"{self.name}:{self.element}"


class _Node(NamedTuple):
    name: str
    module: Module
    sources: tuple[_Ref, ...]


class Graph(Container):
    """A directed acyclic graph of modules with named inputs and outputs.

    Args:
        inputs: the name of the one input, or a list of names; ``forward`` takes the inputs
            positionally, in this order.
        nodes: ``{name: (module, source)}`` or ``{name: (module, [source, ...])}``, where a
            source is an input's name, an earlier node's name, or ``"name:i"`` for element
            ``i`` of a node that returns a tuple (an LSTM's ``(output, state)``, say). A node
            with several sources calls ``module(*sources)``. Nodes may be listed in any order;
            they run in a topological order that keeps the listed order where it can.
        outputs: the node that is the output, or a list of them (then ``forward`` returns a
            tuple, and ``backward`` takes one gradient per output, ``None`` for zeros).

    Forward runs the nodes in topological order. Backward runs them in reverse; a node whose
    value feeds several consumers receives the **sum** of their gradients before its own
    backward runs, so fan-out is handled exactly. Backward returns the gradient of each input
    (a tuple for several inputs). Parameters are named by node: ``"hidden.weight"``.

    Raises:
        ValueError: at construction, for a cycle, a source that names nothing, an input that
            feeds no node, a node that feeds nothing and is no output, a module used by two
            nodes, or a bad name.
    """

    def __init__(
        self,
        inputs: str | Sequence[str],
        nodes: Mapping[str, Any],
        outputs: str | Sequence[str],
    ) -> None:
        super().__init__()
        self.inputs = _names(inputs, "inputs")
        if not isinstance(nodes, Mapping) or not nodes:
            raise TypeError("Graph nodes must be a non-empty dict {name: (module, sources)}")
        self.outputs = _names(outputs, "outputs")
        self._single_output = isinstance(outputs, str)
        taken = set(self.inputs)
        parsed: dict[str, _Node] = {}
        for name, spec in nodes.items():
            _check_name(name, "node")
            if name in taken:
                raise ValueError(f"Graph: the name {name!r} is used twice (inputs and nodes)")
            taken.add(name)
            if not isinstance(spec, (tuple, list)) or len(spec) != 2:
                raise TypeError(
                    f"Graph node {name!r} must be (module, source) or (module, [sources]), "
                    f"got {spec!r}"
                )
            module, sources = spec
            refs = (sources,) if isinstance(sources, str) else sources
            if not isinstance(refs, (tuple, list)) or not refs:
                raise TypeError(
                    f"Graph node {name!r}: sources must be a name or a non-empty list of names, "
                    f"got {sources!r}"
                )
            parsed[name] = _Node(name, module, tuple(_parse_ref(r, name) for r in refs))
        self._sources_given = {name: nodes[name][1] for name in nodes}
        self.nodes: dict[str, Module] = {}
        for node in parsed.values():
            self.nodes[node.name] = self._adopt(node.module, f"node {node.name!r}")
        self._order = _topological(parsed, self.inputs)
        self._output_refs = tuple(_parse_ref(o, "outputs") for o in self.outputs)
        _check_use(parsed, self.inputs, self._output_refs)
        self._values: dict[str, Any] | None = None

    # -- the tree --------------------------------------------------------------------------
    def _named_members(self) -> Iterator[tuple[str, Any]]:
        yield from self.nodes.items()
        for name, member in super()._named_members():  # what a subclass adds of its own
            if not name.startswith("nodes."):
                yield name, member

    def get_config(self) -> dict[str, Any]:
        return {
            "inputs": self.inputs[0] if len(self.inputs) == 1 else list(self.inputs),
            "nodes": {name: [self.nodes[name], self._sources_given[name]] for name in self.nodes},
            "outputs": self.outputs[0] if self._single_output else list(self.outputs),
        }

    def extra_repr(self) -> str:
        wires = ", ".join(
            f"{node.name}<-{'+'.join(str(s) for s in node.sources)}" for node in self._order
        )
        return f"inputs={self.inputs}, outputs={self.outputs}, wiring: {wires}"

    # -- forward and backward --------------------------------------------------------------
    def forward(self, *inputs: Any) -> Any:
        if len(inputs) != len(self.inputs):
            raise ValueError(
                f"Graph takes {len(self.inputs)} input{'s' if len(self.inputs) > 1 else ''} "
                f"({', '.join(self.inputs)}), got {len(inputs)}"
            )
        values: dict[str, Any] = dict(zip(self.inputs, self._as_own_dtype(inputs), strict=True))
        for node in self._order:
            args = [_get(values, ref) for ref in node.sources]
            values[node.name] = self._forward_child(node.name, node.module, *args)
        self._values = values
        outs = tuple(_get(values, ref) for ref in self._output_refs)
        return outs[0] if self._single_output else outs

    def backward(self, *grads: Any) -> Any:
        return self._backward(grads, need_input_grads=True)

    def accumulate_grad(self, *grads: Any) -> None:
        self._backward(grads, need_input_grads=False)

    def _backward(self, grads: tuple[Any, ...], need_input_grads: bool) -> Any:
        if self._values is None:
            raise self._no_cache_error()
        values = self._values
        if len(grads) != len(self._output_refs):
            raise ValueError(
                f"Graph.backward() takes one gradient per output ({len(self._output_refs)}: "
                f"{', '.join(self.outputs)}), got {len(grads)}"
            )
        pending: dict[_Ref, Any] = {}
        for ref, grad in zip(self._output_refs, grads, strict=True):
            _add(pending, ref, grad)
        inputs = set(self.inputs)
        for node in reversed(self._order):
            grad = _node_grad(pending, node.name, values[node.name])
            if not need_input_grads and all(ref.name in inputs for ref in node.sources):
                self._accumulate_child(node.name, node.module, grad)
                continue
            result = self._backward_child(node.name, node.module, grad)
            source_grads = (result,) if len(node.sources) == 1 else result
            if not isinstance(source_grads, tuple) or len(source_grads) != len(node.sources):
                raise TypeError(
                    f"Graph node {node.name!r} ({type(node.module).__name__}) has "
                    f"{len(node.sources)} sources but its backward returned "
                    f"{type(result).__name__}; it must return one gradient per input"
                )
            for ref, g in zip(node.sources, source_grads, strict=True):
                _add(pending, ref, g)
        if not need_input_grads:
            return None
        dx = tuple(pending.get(_Ref(name, None)) for name in self.inputs)
        return dx[0] if len(dx) == 1 else dx


def _names(value: str | Sequence[str], what: str) -> list[str]:
    names = [value] if isinstance(value, str) else list(value)
    if not names or not all(isinstance(n, str) for n in names):
        raise TypeError(f"Graph {what} must be a name or a non-empty list of names, got {value!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"Graph {what} {names} name something twice")
    if what == "inputs":
        for name in names:
            _check_name(name, "input")
    return names


def _check_name(name: Any, what: str) -> None:
    if not isinstance(name, str) or not name or "." in name or ":" in name:
        raise ValueError(
            f"Graph {what} names must be non-empty strings without '.' or ':', got {name!r}"
        )


def _parse_ref(ref: Any, where: str) -> _Ref:
    if not isinstance(ref, str) or not ref:
        raise TypeError(f"Graph {where}: a source must be a name string, got {ref!r}")
    name, colon, index = ref.partition(":")
    if not colon:
        return _Ref(name, None)
    if not index.isdigit():
        raise ValueError(f"Graph {where}: {ref!r} must be 'name' or 'name:index' (index >= 0)")
    return _Ref(name, int(index))


def _topological(nodes: dict[str, _Node], inputs: list[str]) -> list[_Node]:
    """Kahn's algorithm, keeping the listed order among ready nodes; ValueError on a cycle or
    a source that names nothing."""
    known = set(inputs) | set(nodes)
    for node in nodes.values():
        for ref in node.sources:
            if ref.name not in known:
                raise ValueError(
                    f"Graph node {node.name!r} takes {str(ref)!r}, which is neither an input nor "
                    f"a node (inputs: {inputs}; nodes: {list(nodes)})"
                )
            if ref.name == node.name:
                raise ValueError(f"Graph node {node.name!r} takes its own output (a cycle)")
    done = set(inputs)
    order: list[_Node] = []
    remaining = dict(nodes)
    while remaining:
        ready = [n for n in remaining.values() if all(r.name in done for r in n.sources)]
        if not ready:
            raise ValueError(
                f"Graph has a cycle among the nodes {sorted(remaining)}; every node must depend "
                "only on inputs and on nodes that do not depend on it"
            )
        for node in ready:
            order.append(node)
            done.add(node.name)
            del remaining[node.name]
    return order


def _check_use(nodes: dict[str, _Node], inputs: list[str], outputs: tuple[_Ref, ...]) -> None:
    """Every input feeds a node, every node feeds a node or is an output."""
    used = {ref.name for node in nodes.values() for ref in node.sources}
    for ref in outputs:
        if ref.name not in nodes:
            raise ValueError(
                f"Graph output {str(ref)!r} is not a node (nodes: {list(nodes)}); an output must "
                "be a node's value"
            )
    unused_inputs = [name for name in inputs if name not in used]
    if unused_inputs:
        raise ValueError(f"Graph inputs {unused_inputs} feed no node; remove them or use them")
    outs = {ref.name for ref in outputs}
    unused = [name for name in nodes if name not in used and name not in outs]
    if unused:
        raise ValueError(
            f"Graph nodes {unused} feed no node and are not outputs, so their values would be "
            "computed and dropped; add them to outputs or remove them"
        )


def _get(values: dict[str, Any], ref: _Ref) -> Any:
    value = values[ref.name]
    if ref.element is None:
        return value
    if not isinstance(value, tuple) or ref.element >= len(value):
        got = f"a tuple of {len(value)}" if isinstance(value, tuple) else "one array"
        raise ValueError(f"Graph source {str(ref)!r}: node {ref.name!r} returned {got}")
    return value[ref.element]


def _add(pending: dict[_Ref, Any], ref: _Ref, grad: Any) -> None:
    """Sum ``grad`` into the gradient pending for ``ref``, never modifying a given array."""
    if grad is None:
        return
    current = pending.get(ref)
    if current is None:
        pending[ref] = grad
    else:
        pending[ref] = np.add(current, grad, dtype=current.dtype)


def _node_grad(pending: dict[_Ref, Any], name: str, value: Any) -> Any:
    """The summed gradient of a node's value: an array (zeros when nothing reached it), or
    for a tuple value the tuple of element gradients (None where nothing reached one)."""
    whole = pending.pop(_Ref(name, None), None)
    if isinstance(value, tuple):
        parts: list[Any] = [pending.pop(_Ref(name, i), None) for i in range(len(value))]
        if whole is not None:
            for i, g in enumerate(whole):
                if g is not None:
                    parts[i] = g if parts[i] is None else np.add(parts[i], g, dtype=g.dtype)
        return tuple(parts)
    return np.zeros_like(value) if whole is None else whole
