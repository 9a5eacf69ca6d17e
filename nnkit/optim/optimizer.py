"""Optimizer: the stateful base class that applies a per-parameter update rule.

A subclass says what state one parameter needs (``_init_state``) and how one parameter is
updated (``_update``); the base class owns everything else: parameter groups, the state
dictionary keyed by parameter, ``step``/``zero_grad`` and a ``state_dict`` made of plain
arrays and numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from numbers import Integral
from typing import Any

import numpy as np
from numpy.typing import NDArray

from nnkit._checks import check_bool, check_real
from nnkit.parameter import Parameter

__all__ = ["Optimizer", "ParamGroup", "State"]

ParamGroup = dict[str, Any]
"""One parameter group: ``"params"`` (a list of Parameters) plus its hyperparameters."""

State = dict[str, Any]
"""The state of one parameter: ``"step"`` (an int) and arrays shaped like the parameter."""

Array = NDArray[np.floating[Any]]


class Optimizer:
    """Base class of the optimizers: parameter groups, per-parameter state, state_dict.

    ``params`` is an iterable of :class:`~nnkit.Parameter`, or of dicts
    ``{"params": [...], "lr": 0.01, ...}`` that each form a *parameter group* with its own
    hyperparameters; options a group does not give are taken from ``defaults`` (the
    constructor's arguments). A parameter may appear only once in the whole optimizer.

    ``step()`` updates every parameter in place from its ``grad`` (which it never modifies),
    reading the hyperparameters from ``param_groups`` at every call, so a scheduler or the user
    may change ``group["lr"]`` between steps. The state of a parameter (its buffers and step
    count) lives in ``state[param]``; it is created at the parameter's first step, in the
    parameter's dtype, and updated in place afterwards.

    Subclasses implement two methods:

    - ``_init_state(param, group)`` returns the buffers one parameter needs (``"step"`` is
      added by the base class);
    - ``_update(param, state, group)`` applies one step of the rule to one parameter, after the
      base class has incremented ``state["step"]`` (so it is ``t`` = 1 on the first step).

    Attributes:
        defaults: the constructor's hyperparameters, used to fill in new groups.
        param_groups: the list of groups, each a dict with ``"params"`` and hyperparameters.
        state: ``{parameter: {"step": t, buffer name: array, ...}}``.
    """

    _state_keys: tuple[str, ...] = ()
    """Names of every buffer the rule may keep (for validating a loaded state)."""

    def __init__(self, params: Iterable[Parameter] | Iterable[ParamGroup], defaults: ParamGroup):
        if isinstance(params, (Parameter, np.ndarray, Mapping)) or not isinstance(params, Iterable):
            raise TypeError(
                "params must be an iterable of Parameters or of parameter-group dicts, got "
                f"{type(params).__name__}; pass e.g. model.parameters() or [param]"
            )
        self.defaults: ParamGroup = dict(defaults)
        self.param_groups: list[ParamGroup] = []
        self.state: dict[Parameter, State] = {}
        self._scratch_buffers: dict[np.dtype[Any], Array] = {}
        entries: list[Any] = list(params)
        if not entries:
            raise ValueError(
                "optimizer got an empty parameter list (model.parameters() is a generator: "
                "it is empty the second time; call it again or pass list(model.parameters()))"
            )
        groups = entries if all(isinstance(e, Mapping) for e in entries) else [{"params": entries}]
        for group in groups:
            self.add_param_group(group)

    # -- the per-parameter rule (implemented by subclasses) --------------------------------------
    def _init_state(self, param: Parameter, group: ParamGroup) -> State:
        """The buffers one parameter needs before its first step (without ``"step"``)."""
        raise NotImplementedError

    def _update(self, param: Parameter, state: State, group: ParamGroup) -> None:
        """Apply one step of the rule to ``param`` in place (``state["step"]`` is already t)."""
        raise NotImplementedError

    def _check_group(self, group: ParamGroup) -> None:
        """Raise ValueError/TypeError, naming the value, if a group's hyperparameter is bad."""

    # -- public API ------------------------------------------------------------------------------
    def step(self) -> None:
        """Update every parameter once, in place, from its current ``grad``."""
        states, update = self.state, self._update  # looked up once: this loop is per step
        for group in self.param_groups:
            for param in group["params"]:
                state = states.get(param)
                if state is None:
                    state = states[param] = {"step": 0, **self._init_state(param, group)}
                state["step"] += 1
                update(param, state, group)

    def zero_grad(self) -> None:
        """Reset the gradient of every parameter to zero, in place."""
        for group in self.param_groups:
            for param in group["params"]:
                param.zero_grad()

    def add_param_group(self, param_group: Mapping[str, Any]) -> None:
        """Add a group of parameters with its own hyperparameters (missing ones from defaults).

        Useful when unfreezing layers while training: the new parameters start with no state.
        """
        if not isinstance(param_group, Mapping) or "params" not in param_group:
            raise TypeError(
                f"a parameter group must be a dict with a 'params' key, got {param_group!r}"
            )
        group = {**self.defaults, **param_group}
        params = group["params"]
        if isinstance(params, Parameter):
            params = [params]
        elif isinstance(params, (np.ndarray, set, frozenset)) or not isinstance(params, Iterable):
            raise TypeError(
                "a group's 'params' must be a Parameter or an ordered iterable of Parameters, "
                f"got {type(params).__name__}"
            )
        params = list(params)
        index = len(self.param_groups)
        if not params:
            raise ValueError(f"parameter group {index} has no parameters")
        seen: set[Parameter] = set()
        for i, param in enumerate(params):
            if not isinstance(param, Parameter):
                raise TypeError(
                    f"parameter group {index} item {i} is a {type(param).__name__}, not a "
                    "Parameter (optimizers update nnkit.Parameter objects in place)"
                )
            if param in seen:
                raise ValueError(
                    f"parameter group {index} lists {param!r} (item {i}) more than once"
                )
            seen.add(param)
        for other_index, other in enumerate(self.param_groups):
            for param in other["params"]:
                if param in seen:
                    raise ValueError(
                        f"{param!r} appears in parameter group {other_index} and again in "
                        f"group {index}; a parameter may belong to one group only"
                    )
        group["params"] = params
        self._check_group(group)
        self.param_groups.append(group)

    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state as plain data: copies of arrays, ints, floats, bools, tuples.

        ``{"state": {index: {"step": t, name: array, ...}}, "param_groups": [{..., "params":
        [index, ...]}]}``, where ``index`` numbers the parameters in ``param_groups`` order (as
        PyTorch does), so the dict refers to no Parameter object and can be saved without
        pickle. Arrays are copies: later steps do not change a state_dict already taken.
        """
        index = {param: i for i, param in enumerate(self._all_params())}
        groups = [
            {**group, "params": [index[param] for param in group["params"]]}
            for group in self.param_groups
        ]
        state = {
            index[param]: {
                key: value.copy() if isinstance(value, np.ndarray) else value
                for key, value in param_state.items()
            }
            for param, param_state in self.state.items()
        }
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a state from :meth:`state_dict` into this optimizer (for the same model).

        The groups must match in number and size and every array must have its parameter's
        shape; the hyperparameters of each group are taken from ``state_dict``. Arrays are
        copied into new buffers in each parameter's dtype. Everything is checked before
        anything is changed (the structure, every hyperparameter's type and range as the
        constructor checks them, each step count and buffer), so a bad state_dict leaves the
        optimizer as it was. Training then continues exactly as it would have without the
        interruption.

        Raises:
            TypeError, ValueError: naming the entry that is wrong and what it should be.
        """
        if not isinstance(state_dict, Mapping) or set(state_dict) != {"state", "param_groups"}:
            keys = sorted(state_dict) if isinstance(state_dict, Mapping) else None
            raise ValueError(
                "state_dict must be a dict with exactly the keys 'param_groups' and 'state', "
                f"as state_dict() returns; got {type(state_dict).__name__} with keys {keys}"
            )
        saved_groups, saved_state = state_dict["param_groups"], state_dict["state"]
        if not isinstance(saved_groups, (list, tuple)) or not all(
            isinstance(group, Mapping) for group in saved_groups
        ):
            raise TypeError("state_dict['param_groups'] must be a list of dicts")
        if not isinstance(saved_state, Mapping):
            raise TypeError(
                f"state_dict['state'] must be a dict, got {type(saved_state).__name__}"
            )
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"loaded state_dict has {len(saved_groups)} parameter groups, but the optimizer "
                f"has {len(self.param_groups)}"
            )
        new_groups: list[ParamGroup] = []
        by_index: dict[int, tuple[Parameter, ParamGroup]] = {}
        for g, (group, saved) in enumerate(zip(self.param_groups, saved_groups, strict=True)):
            saved_ids = saved.get("params")
            if not isinstance(saved_ids, (list, tuple)):
                raise TypeError(f"loaded parameter group {g} has no list of parameter indices")
            if len(saved_ids) != len(group["params"]):
                raise ValueError(
                    f"loaded parameter group {g} has {len(saved_ids)} parameters, but the "
                    f"optimizer's group {g} has {len(group['params'])}"
                )
            new_group = {**group, **saved, "params": group["params"]}
            try:
                self._check_group(new_group)
                _check_scheduler_keys(new_group)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"loaded parameter group {g}: {exc}") from None
            new_groups.append(new_group)
            for saved_id, param in zip(saved_ids, group["params"], strict=True):
                index = _index(saved_id, f"loaded parameter group {g}")
                if index in by_index:
                    raise ValueError(f"loaded parameter groups list parameter {index} twice")
                by_index[index] = (param, new_group)
        new_state: dict[Parameter, State] = {}
        for saved_id, saved_param_state in saved_state.items():
            index = _index(saved_id, "loaded state")
            if index not in by_index:
                raise ValueError(
                    f"loaded state has an entry for parameter {saved_id!r}, which is in no "
                    "parameter group"
                )
            if not isinstance(saved_param_state, Mapping):
                raise TypeError(
                    f"loaded state of parameter {saved_id!r} must be a dict, got "
                    f"{type(saved_param_state).__name__}"
                )
            param, group = by_index[index]
            new_state[param] = self._restore(param, group, saved_param_state, saved_id)
        for group, new_group in zip(self.param_groups, new_groups, strict=True):
            group.update(new_group)  # in place: references to the groups stay valid
        self.state = new_state

    # -- helpers for subclasses ------------------------------------------------------------------
    def _scratch(self, like: Array) -> Array:
        """A reusable work array shaped like ``like`` (contents undefined).

        One buffer per dtype, grown to the largest parameter, serves every parameter, so a rule
        can work in place without allocating at each step or keeping a buffer per parameter.
        It is not part of the state.
        """
        buffer = self._scratch_buffers.get(like.dtype)
        if buffer is None or buffer.size < like.size:
            buffer = self._scratch_buffers[like.dtype] = np.empty(like.size, dtype=like.dtype)
        return buffer[: like.size].reshape(like.shape)

    @staticmethod
    def _gradient(param: Parameter, group: ParamGroup, weight_decay: float) -> Array:
        """``g = ±∇f + λθ``: the gradient negated if ``maximize``, plus L2 weight decay.

        This is PyTorch's order: maximize flips the gradient first, so weight decay still pulls
        the weights towards zero. Returns ``param.grad`` itself when neither applies: callers
        must not modify the result in place.
        """
        grad = param.grad
        if group["maximize"]:
            grad = -grad
        if weight_decay != 0:
            grad = grad + weight_decay * param.data
        return grad

    @staticmethod
    def _check_nonnegative(group: ParamGroup, *names: str) -> None:
        """Check that each named hyperparameter of ``group`` is a finite real number >= 0."""
        for name in names:
            check_real(name, group[name], minimum=0, finite=True)

    @staticmethod
    def _check_flags(group: ParamGroup, *names: str) -> None:
        """Check that each named option of ``group`` is a bool (``"no"`` is not False)."""
        for name in names:
            check_bool(name, group[name])

    # -- internals -------------------------------------------------------------------------------
    def _all_params(self) -> list[Parameter]:
        return [param for group in self.param_groups for param in group["params"]]

    def _restore(
        self, param: Parameter, group: ParamGroup, saved: Mapping[str, Any], saved_id: object
    ) -> State:
        """A new state for ``param`` holding copies of the saved values, after checking them."""
        where = f"loaded state of parameter {saved_id}"
        fresh: State = {"step": 0, **self._init_state(param, group)}
        unknown = set(saved) - set(fresh) - set(self._state_keys)
        if unknown:
            raise ValueError(
                f"{where} has unknown entries {sorted(unknown)} for {type(self).__name__} "
                f"(expected {sorted(fresh)})"
            )
        missing = set(fresh) - set(saved)
        if missing:
            raise ValueError(f"{where} lacks {sorted(missing)} for these hyperparameters")
        state: State = {}
        for key, value in saved.items():
            if key == "step":
                state[key] = _step_count(value, where)
                continue
            try:
                array = np.asarray(value)
            except (TypeError, ValueError):  # ragged nested lists
                raise TypeError(f"{where}: {key!r} is not an array, got {value!r:.80}") from None
            if array.dtype.kind not in "iuf":
                raise TypeError(
                    f"{where}: {key!r} must be a numeric array, got {value!r:.80} of dtype "
                    f"{array.dtype}"
                )
            if array.shape != param.shape:
                raise ValueError(
                    f"{where}: {key!r} has shape {array.shape}, but the parameter has shape "
                    f"{param.shape}"
                )
            state[key] = np.array(array, dtype=param.dtype, copy=True)
        return state


_SCHEDULER_KEYS = ("initial_lr", "max_lr", "min_lr", "max_momentum", "base_momentum")
"""Keys a learning-rate scheduler adds to a parameter group (see ``lr_scheduler``)."""


def _check_scheduler_keys(group: ParamGroup) -> None:
    """The values schedulers keep in a group are finite reals >= 0, where present."""
    for name in _SCHEDULER_KEYS:
        if name in group:
            check_real(name, group[name], minimum=0, finite=True)


def _index(value: object, where: str) -> int:
    """A parameter index of a state_dict: an int, or its decimal string (JSON keys)."""
    if isinstance(value, str) and value.isdecimal():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 0:
        raise TypeError(f"{where} refers to parameter {value!r}, not an index (an int >= 0)")
    return int(value)


def _step_count(value: object, where: str) -> int:
    """A saved step count: an integer >= 0 (an int, a NumPy integer, or a whole float, also
    as a 0-d array); not a bool or a string."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError):
        array = np.asarray(None)
    number = array.item() if array.ndim == 0 and array.dtype.kind in "iuf" else None
    if isinstance(value, bool) or array.dtype.kind == "b" or number is None:
        raise TypeError(f"{where}: step must be an int, got {value!r} ({type(value).__name__})")
    if not (float(number).is_integer() and number >= 0):
        raise ValueError(f"{where}: step must be an integer >= 0, got {value!r}")
    return int(number)
