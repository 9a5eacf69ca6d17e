"""The module registry, and the architecture description that rebuilds a model from it.

A model's architecture is saved as a tree of nodes, one per module::

    {"class": "Sequential", "config": {}, "training": true,
     "children": [["0", {"class": "Dense", "config": {"in_features": 2, ...}, ...}],
                  ["1", {"class": "Tanh", ...}]]}

``class`` is the module's *registered name*; ``config`` is its ``get_config()``; ``children``
lists its ``named_children()``. A module met a second time in the tree (one object reached
through two attributes) is saved as ``{"ref": "0"}``, the dotted path of its first
occurrence, and rebuilt as the same object.

Loading calls constructors of registered classes only: the registry is the allowlist of code
a file can make nnkit run. Each module is rebuilt from its config:
``cls.from_config(config)`` if the class has that classmethod, else ``cls(**config)``.

A config may hold modules: a container's ``get_config`` returns its children
(``Residual`` gives ``{"body": self.body, "shortcut": None}``, ``Sequential``
``{"layers": [...]}``, a user's ``Block`` ``{"encoder": ..., "head": ...}``). Such a value must
be a child of the module, and is saved as ``{"__module__": "body"}``, a reference to the saved
child of that name. Loading builds the referenced children first and passes them to the
constructor. Children a constructor builds itself (a block that creates its layers in
``__init__``) are checked against the saved ones (names, classes, configs, sharing), so a model
whose code no longer matches the file fails loudly instead of loading wrongly.

Format version 1 saved a Sequential's layers as children only; :func:`upgrade_v1` turns such a
tree into the current form, so old files still load.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

import numpy as np

from nnkit import layers
from nnkit.containers import Concat, Parallel, Residual, Sequential
from nnkit.graph import Graph
from nnkit.module import Module
from nnkit.serialization.errors import (
    CorruptFileError,
    SerializationError,
    StateMismatchError,
    UnregisteredModuleError,
)
from nnkit.serialization.tree import MAX_DEPTH, ArraySink, ArraySource, decode, encode

__all__ = [
    "build",
    "encode_architecture",
    "parse_architecture",
    "register_module",
    "upgrade_v1",
]

ModuleClass = TypeVar("ModuleClass", bound="type[Module]")

_BY_NAME: dict[str, type[Module]] = {}
_BY_CLASS: dict[type[Module], str] = {}
_BUILTIN: set[str] = set()


# -- the registry ----------------------------------------------------------------------------
@overload
def register_module(cls: ModuleClass, *, name: str | None = None) -> ModuleClass: ...
@overload
def register_module(
    cls: None = None, *, name: str | None = None
) -> Callable[[ModuleClass], ModuleClass]: ...
def register_module(
    cls: ModuleClass | None = None, *, name: str | None = None
) -> ModuleClass | Callable[[ModuleClass], ModuleClass]:
    """Register a Module subclass so that :func:`nnkit.load` can rebuild it; returns the class.

    Use as a decorator, ``@nnkit.register_module`` or ``@nnkit.register_module(name="...")``,
    or call ``nnkit.register_module(MyLayer)``. The class is saved under ``name`` (by default
    its ``__name__``) and rebuilt with ``cls.from_config(config)`` if it defines that
    classmethod, else ``cls(**config)``, where ``config`` is what its ``get_config()``
    returned when saved; then the saved weights are loaded into it. Every built-in layer and
    Sequential are registered already.

    Registering the same class again under the same name does nothing; registering a class
    with the same module and qualified name as the registered one (a class redefined in a
    notebook) replaces it.

    Raises:
        TypeError: ``cls`` is not a Module subclass.
        ValueError: the name is taken by another class (built-in names always are), or the
            class is registered under another name already.
    """
    if cls is None:
        return lambda c: register_module(c, name=name)
    _register(cls, name)
    return cls


def _register(cls: type[Module], name: str | None, builtin: bool = False) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Module)):
        raise TypeError(f"register_module takes a Module subclass, got {cls!r}")
    name = cls.__name__ if name is None else name
    if type(name) is not str or not name:
        raise ValueError(f"a registered name must be a non-empty string, got {name!r}")
    existing = _BY_NAME.get(name)
    if existing is not None and existing is not cls:
        redefined = name not in _BUILTIN and (existing.__module__, existing.__qualname__) == (
            cls.__module__,
            cls.__qualname__,
        )
        if not redefined:
            raise ValueError(
                f"cannot register {_qualname(cls)} as {name!r}: that name belongs to "
                f"{_qualname(existing)}. Choose another, e.g. "
                f"@nnkit.register_module(name='mypackage.{name}')"
            )
    previous = _BY_CLASS.get(cls)
    if previous is not None and previous != name:
        raise ValueError(f"{_qualname(cls)} is already registered as {previous!r}")
    _BY_NAME[name] = cls
    _BY_CLASS[cls] = name
    if builtin:
        _BUILTIN.add(name)


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


for _name in layers.__all__:
    _register(getattr(layers, _name), None, builtin=True)
for _cls in (Sequential, Residual, Concat, Parallel, Graph):
    _register(_cls, None, builtin=True)


# -- saving ----------------------------------------------------------------------------------
def encode_architecture(model: Module, sink: ArraySink) -> dict[str, Any]:
    """The architecture node of ``model`` (see the module docstring); arrays in configs go
    into ``sink``.

    Raises:
        UnregisteredModuleError: a module in the tree has an unregistered class.
        SerializationError: a config that is not a dict of storable values, or a cycle.
    """
    seen: dict[int, str] = {}

    def node(module: Module, path: str, ancestors: tuple[int, ...]) -> dict[str, Any]:
        if id(module) in ancestors:
            raise SerializationError(f"cannot save: {_where(path)} contains itself")
        if id(module) in seen:
            return {"ref": seen[id(module)]}
        if len(ancestors) > MAX_DEPTH:
            raise SerializationError(f"cannot save: modules nested over {MAX_DEPTH} deep")
        seen[id(module)] = path
        cls = type(module)
        name = _BY_CLASS.get(cls)
        where = f"{_where(path)} ({cls.__name__})"
        if name is None:
            raise UnregisteredModuleError(
                f"cannot save {where}: its class {_qualname(cls)} is not registered, so "
                f"nnkit.load could not rebuild it. Decorate the class with "
                f"@nnkit.register_module (or call nnkit.register_module({cls.__name__})) and "
                "make its get_config() return its constructor arguments; or save the weights "
                "alone with nnkit.save_weights"
            )
        config = module.get_config()
        if type(config) is not dict or not all(type(k) is str for k in config):
            raise SerializationError(
                f"cannot save {where}: get_config() must return a dict with str keys (the "
                f"constructor's keyword arguments), got {config!r}"
            )
        names = _first_names(module)  # a child reached twice: the first name, saved in full

        def child_name(value: Any) -> str | None:
            if not isinstance(value, Module):
                return None
            if id(value) not in names:
                raise SerializationError(
                    f"cannot save {where}: its get_config() holds a {type(value).__name__} that "
                    "is not one of its children; a module in a config must be a child (an "
                    "attribute) of the module"
                )
            return names[id(value)]

        encoded = encode(config, sink, "config", f"the config of {where}", child=child_name)
        _check_rebuildable(module, config, where)
        inner = (*ancestors, id(module))
        return {
            "class": name,
            "config": encoded,
            "training": bool(module.training),
            "children": [
                [child_name, node(child, _join(path, child_name), inner)]
                for child_name, child in module.named_children()
            ],
        }

    return node(model, "", ())


def _check_rebuildable(module: Module, config: dict[str, Any], where: str) -> None:
    """Refuse to save a module that load could not construct from its config."""
    cls = type(module)
    if isinstance(module, Sequential) and len(module) and "layers" not in config:
        takes_layers = any(
            p.kind is inspect.Parameter.VAR_POSITIONAL
            for p in inspect.signature(cls).parameters.values()
        )
        if takes_layers:
            raise SerializationError(
                f"cannot save {where}: its get_config() returns {config!r} without the layers "
                "that its constructor takes, so nnkit.load would rebuild it empty. Return "
                "{**super().get_config(), ...} from get_config()"
            )
    if callable(getattr(cls, "from_config", None)):
        return
    try:
        inspect.signature(cls).bind(**config)
    except TypeError as exc:
        raise SerializationError(
            f"cannot save {where}: nnkit.load would call {cls.__name__}(**config) with config "
            f"{config!r} from get_config(), and that fails ({exc}). Make get_config() return "
            "the constructor's arguments, or define a from_config classmethod."
        ) from None


# -- loading ---------------------------------------------------------------------------------
@dataclass
class Plan:
    """A checked architecture node, before any constructor has run."""

    path: str
    cls: type[Module]
    name: str
    config: dict[str, Any]
    training: bool
    children: list[tuple[str, Plan | str]] = field(default_factory=list)  # str: a ref path


def parse_architecture(node: Any, source: ArraySource) -> Plan:
    """Check the architecture tree and look up every class, running no constructor.

    Raises:
        CorruptFileError: a malformed node, or a reference to no earlier module.
        UnregisteredModuleError: a class name that is not registered.
    """
    done: set[str] = set()

    def corrupt(path: str, problem: str) -> CorruptFileError:
        return CorruptFileError(
            f"{source.path}: the architecture entry of {_where(path)} {problem}; the file is "
            "damaged or was not written by nnkit"
        )

    def parse(node: Any, path: str, depth: int) -> Plan:
        if depth > MAX_DEPTH:
            raise corrupt(path, f"is nested more than {MAX_DEPTH} levels deep")
        if type(node) is not dict or set(node) != {"class", "config", "training", "children"}:
            raise corrupt(path, "is not {class, config, training, children}")
        name, training, children = node["class"], node["training"], node["children"]
        if type(name) is not str or type(training) is not bool or type(children) is not list:
            raise corrupt(path, "has a class, training flag or children list of the wrong type")
        cls = _BY_NAME.get(name)
        if cls is None:
            raise UnregisteredModuleError(
                f"{source.path}: {_where(path)} is of class {name!r}, which is not registered in "
                "this program. Import the code that defines it and register the class with "
                f"@nnkit.register_module (or @nnkit.register_module(name={name!r}) if the class "
                "is named differently), then load again"
            )
        referenced: set[str] = set()

        def child_ref(child_name: str, where: str) -> ChildRef:
            referenced.add(child_name)
            return ChildRef(child_name)

        config = decode(node["config"], source, f"the config of {_where(path)}", child=child_ref)
        if type(config) is not dict or not all(type(k) is str for k in config):
            raise corrupt(path, "has a config that is not a dict with str keys")
        plan = Plan(path, cls, name, config, training)
        names: set[str] = set()
        for item in children:
            if type(item) is not list or len(item) != 2 or type(item[0]) is not str:
                raise corrupt(path, "has a child that is not a [name, node] pair")
            child_name, child = item
            if child_name in names or not child_name:
                raise corrupt(path, f"has an empty or repeated child name {child_name!r}")
            names.add(child_name)
            child_path = _join(path, child_name)
            if type(child) is dict and set(child) == {"ref"}:
                if child["ref"] not in done:
                    raise corrupt(child_path, f"refers to {child['ref']!r}, no earlier module")
                plan.children.append((child_name, child["ref"]))
            else:
                plan.children.append((child_name, parse(child, child_path, depth + 1)))
        unknown = sorted(referenced - names)
        if unknown:
            raise corrupt(path, f"has a config that refers to the children {unknown} it lacks")
        done.add(path)
        return plan

    return parse(node, "", 0)


def build(plan: Plan) -> Module:
    """Construct the model that ``plan`` describes (running the registered constructors).

    Children a config refers to are built first and passed to the constructor; the children
    the constructor then has are compared with the saved ones.

    Raises:
        StateMismatchError: a constructor failed, or built children that differ from the file.
    """
    built: dict[str, Module] = {}
    built_ids: set[int] = set()
    plans: dict[str, Plan] = {}

    def collect(plan: Plan) -> None:
        plans[plan.path] = plan
        for _, spec in plan.children:
            if isinstance(spec, Plan):
                collect(spec)

    collect(plan)

    def record(path: str, module: Module) -> None:
        built[path] = module
        built_ids.add(id(module))

    def resolve(path: str) -> Module:
        """The module saved at ``path``, built now if nothing has built it yet."""
        if path in built:
            return built[path]
        if path not in plans:  # pragma: no cover - parse_architecture checks refs
            raise StateMismatchError(f"{_where(path)} is referred to but not in the file")
        return make(plans[path])

    def make(plan: Plan) -> Module:
        if plan.path in built:  # already built, as the target of a reference
            return built[plan.path]
        specs = dict(plan.children)
        given: dict[str, Module] = {}

        def substitute(value: Any) -> Any:
            if isinstance(value, ChildRef):
                if value.name not in given:
                    spec = specs[value.name]
                    given[value.name] = resolve(spec) if isinstance(spec, str) else make(spec)
                return given[value.name]
            if type(value) is list:
                return [substitute(v) for v in value]
            if type(value) is tuple:
                return tuple(substitute(v) for v in value)
            if type(value) is dict:
                return {k: substitute(v) for k, v in value.items()}
            return value

        config = substitute(plan.config)
        module = _construct(plan, config)
        check_children(plan, list(module.named_children()), plan.children, given)
        module.training = plan.training
        record(plan.path, module)
        return module

    def check_children(
        plan: Plan,
        actual: list[tuple[str, Module]],
        saved: list[tuple[str, Plan | str]],
        given: dict[str, Module],
    ) -> None:
        """Compare the children a module has after construction with the saved ones: those
        passed to the constructor must be kept, the others are checked recursively."""
        names, saved_names = [n for n, _ in actual], [n for n, _ in saved]
        if names != saved_names:
            raise _mismatch(plan, f"built the children {names}, but the file has {saved_names}")
        for (name, child), (_, spec) in zip(actual, saved, strict=True):
            if name in given:
                if child is not given[name]:
                    raise _mismatch(plan, f"did not keep the child {name!r} it was given")
                continue
            if isinstance(spec, str):
                if child is not built.get(spec):
                    raise _mismatch(plan, f"does not share its child with {_where(spec)}")
                continue
            if built.get(spec.path) is child:
                continue  # built already, as the target of a reference
            if id(child) in built_ids:
                raise _mismatch(spec, "is shared with another module here but not in the file")
            if type(child) is not spec.cls:
                raise _mismatch(spec, f"was built as a {type(child).__name__} by its parent")
            if not _same_config(child, spec.config):
                raise _mismatch(
                    spec,
                    f"was built with config {child.get_config()!r}, but the file has "
                    f"{spec.config!r}",
                )
            child.training = spec.training
            record(spec.path, child)
            check_children(spec, list(child.named_children()), spec.children, {})

    return make(plan)


@dataclass(frozen=True)
class ChildRef:
    """A child module in a decoded config, before it is built."""

    name: str


def _same_config(module: Module, saved: dict[str, Any]) -> bool:
    """Whether a constructor-built child's config equals the saved one, its modules compared
    by their child names, dtype ignored."""
    names = _first_names(module)
    return _same(_without_dtype(_as_refs(module.get_config(), names)), _without_dtype(saved))


def _first_names(module: Module) -> dict[int, str]:
    names: dict[int, str] = {}
    for name, child in module.named_children():
        names.setdefault(id(child), name)
    return names


def _as_refs(value: Any, names: dict[int, str]) -> Any:
    """``value`` with each module replaced by a ChildRef to its child name."""
    if isinstance(value, Module):
        return ChildRef(names.get(id(value), "?"))
    if type(value) is list:
        return [_as_refs(v, names) for v in value]
    if type(value) is tuple:
        return tuple(_as_refs(v, names) for v in value)
    if type(value) is dict:
        return {k: _as_refs(v, names) for k, v in value.items()}
    return value


def _without_dtype(config: Any) -> Any:
    """A config without its dtype: a child built in the default dtype is converted at load."""
    if isinstance(config, dict):
        return {key: value for key, value in config.items() if key != "dtype"}
    return config


def _construct(plan: Plan, config: dict[str, Any]) -> Module:
    cls = plan.cls
    from_config = getattr(cls, "from_config", None)
    try:
        module = from_config(config) if callable(from_config) else cls(**config)
    except Exception as exc:
        call = (
            f"{plan.name}.from_config(config)"
            if callable(from_config)
            else f"{plan.name}(**config)"
        )
        raise _mismatch(
            plan,
            f"could not be rebuilt from its saved config {plan.config!r}: {call} raised "
            f"{type(exc).__name__}: {exc}. get_config() must return exactly the arguments "
            "that rebuild the module (or the class must define a from_config classmethod)",
        ) from exc
    if type(module) is not cls:
        raise _mismatch(plan, f"was rebuilt as a {type(module).__name__}, not a {cls.__name__}")
    return module


def _mismatch(plan: Plan, problem: str) -> StateMismatchError:
    return StateMismatchError(
        f"{_where(plan.path)} ({plan.name}) {problem}; the registered class no longer matches "
        "the file, nothing was loaded"
    )


def _same(a: Any, b: Any) -> bool:
    """Exact equality of two trees: same types, same values (nan equals nan), same dtypes."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (np.ndarray, np.generic)):
        return bool(a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes())
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return bool(a == b)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _where(path: str) -> str:
    return f"module {path!r}" if path else "the model"


def upgrade_v1(node: Any) -> Any:
    """A format-1 architecture tree in the current form: a Sequential (or a registered
    subclass) kept its layers as the children ``"0"``, ``"1"``, ... and not in its config; now
    its config names them, ``{"layers": [{"__module__": "0"}, ...], **config}``. Malformed
    nodes are returned as they are, for parse_architecture to report."""
    if type(node) is not dict:
        return node
    children = node.get("children")
    if type(children) is not list:
        return node
    new_children = [
        [item[0], upgrade_v1(item[1])] if type(item) is list and len(item) == 2 else item
        for item in children
    ]
    node = {**node, "children": new_children}
    cls = _BY_NAME.get(node.get("class")) if type(node.get("class")) is str else None
    config = node.get("config")
    if cls is not None and issubclass(cls, Sequential) and type(config) is dict:
        layers = [
            {"__module__": item[0]}
            for item in new_children
            if type(item) is list and type(item[0]) is str and item[0].isdigit()
        ]
        node["config"] = {"layers": layers, **config}
    return node
