"""Objectives: what the optimisation minimises, as a small algebra (after lucent's `optvis/objectives.py`).

An `Objective` is a loss to MINIMISE for one batch element, computed from that element's model outputs
(`Outputs`: logits, the hidden activations the objective asked for, the model input, and the step). Objectives
combine with `+`, `-`, `*` / `/` by a number and unary `-`, and every objective carries a readable `description`.

The factories are the articles' losses:
- `class_logit(c, C)`: `C - O_c`, or the article's `|C - O_c|` with `absolute=True` (input generation I,
  `torch.abs(200 - output[0][c])`);
- `opposite(c)`: `-class_logit(c)`, i.e. minimise `O_c` ("Opposites": `loss = output[0][c]`);
- `merge(a, b)`: `a + b` ("Vector addition": the gradient of `2C - O_1 - O_2`);
- `juxtapose(a, b)`: push whichever of the two is weaker at each step (the article's `g'`);
- `mix(a, b, w_a, w_b)`: `w_a * a + w_b * b` with weights that may depend on the step; `interpolate(a, b)`:
  `mix` with the weights `fades` (class interpolation);
- `l1(weight)`: `weight * sum |a_i|` on the input (the article's L1 regulariser);
- `layer(name)`, `channel(name, maps)`: `sum(C - z)` over a hidden layer or some of its feature maps; `dream`:
  either with C = 0, a whole layer per feature (deep dream).

Batching. The render loop evaluates B elements per step, each with its own objective. So that this costs a few
tensor operations per step rather than a few per element, an objective is stored in a batched form: a function
`(outputs of k elements, k x p integer parameters) -> k losses` plus a hashable `key` that holds everything except
the per-element integers (class indices). Elements whose objectives share a key are evaluated in one call
(`ObjectiveBatch`). A custom objective built from a per-element function (`Objective(fn, description)`) works the
same way, one element at a time.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Hashable, Mapping, Sequence, Union

import torch
from torch import Tensor

Number = Union[int, float]


@dataclass(frozen=True)
class Step:
    """Where the optimisation stands when a loss is computed (for step-dependent objectives)."""
    octave: int     # index of the current octave
    i: int          # iteration within the octave, 0 .. n-1
    n: int          # iterations in the octave
    t: int          # iteration over the whole schedule, 0 .. total-1
    total: int      # iterations in the whole schedule

    @property
    def fraction(self) -> float:
        """Progress over the whole schedule, t / total, in [0, 1)."""
        return self.t / self.total


@dataclass(frozen=True)
class Outputs:
    """Model outputs for k batch elements (leading dimension k), or for one element (no batch dimension)."""
    logits: Tensor                      # k x n_classes, float32
    activations: Mapping[str, Tensor]   # layer -> k x C x H x W (only the layers the objectives asked for)
    image: Tensor                       # k x 3 x h x w: the model input (the crop when cropping), before padding
    step: Step

    def element(self, j: int) -> "Outputs":
        """Element j without the batch dimension: logits n_classes, activations C x H x W, image 3 x h x w."""
        return Outputs(self.logits[j], {k: v[j] for k, v in self.activations.items()}, self.image[j], self.step)

    def batch1(self) -> "Outputs":
        """This single element as a batch of one (inverse of `element`)."""
        return Outputs(self.logits[None], {k: v[None] for k, v in self.activations.items()}, self.image[None],
                       self.step)


BatchedFn = Callable[[Outputs, Tensor], Tensor]     # (outputs of k elements, k x p long params) -> k losses
Weight = Union[Number, Callable[[Step], float]]


class Objective:
    """A loss to minimise for one batch element, with a readable `description`.

    `Objective(fn, description, layers=())` wraps `fn(outputs_of_one_element) -> scalar`; `layers` names the
    hidden layers `fn` reads from `outputs.activations` (only those are captured). Factories below build the
    batched form directly with `Objective.batched`.
    """

    def __init__(self, fn: Callable[[Outputs], Tensor], description: str, layers: Sequence[str] = ()) -> None:
        def per_element(out: Outputs, params: Tensor) -> Tensor:
            return torch.stack([fn(out.element(j)).reshape(()) for j in range(out.logits.shape[0])])
        self._init(per_element, description, key=("element", fn), params=(), layers=layers)

    def _init(self, fn: BatchedFn, description: str, key: Hashable, params: Sequence[int],
              layers: Sequence[str]) -> None:
        self._fn = fn
        self.description = description
        self.key = key                                      # all but the per-element integers; groups a batch
        self.params = tuple(int(p) for p in params)         # per-element integers (class indices)
        self.layers = frozenset(layers)                     # hidden layers this objective reads

    @classmethod
    def batched(cls, fn: BatchedFn, description: str, *, key: Hashable, params: Sequence[int] = (),
                layers: Sequence[str] = ()) -> "Objective":
        """An objective given in batched form: `fn(outputs of k elements, k x len(params) long tensor)`."""
        obj = cls.__new__(cls)
        obj._init(fn, description, key, params, layers)
        return obj

    def evaluate(self, out: Outputs, params: Tensor) -> Tensor:
        """Losses (k) for k elements that share this objective's key; `params` is k x len(self.params)."""
        return self._fn(out, params)

    def __call__(self, out: Outputs) -> Tensor:
        """The scalar loss of one element (`out` without batch dimension)."""
        params = torch.tensor([self.params], dtype=torch.long, device=out.logits.device)
        return self._fn(out.batch1(), params)[0]

    def described(self, description: str) -> "Objective":
        """The same objective under another description."""
        return Objective.batched(self._fn, description, key=self.key, params=self.params, layers=self.layers)

    def __repr__(self) -> str:
        return f"Objective({self.description!r})"

    # -- the algebra: sums and scalar products are the core, the rest is built from them --------------------
    def __add__(self, other: Union["Objective", Number]) -> "Objective":
        if isinstance(other, Objective):
            return _combine("+", self, other, lambda la, lb, step: la + lb, f"{self.description} + {other.description}")
        if isinstance(other, (int, float)):
            c = float(other)
            fn = self._fn
            return Objective.batched(lambda out, p: fn(out, p) + c, f"{self.description} + {c:g}",
                                     key=("+c", self.key, c), params=self.params, layers=self.layers)
        return NotImplemented

    def __radd__(self, other: Union["Objective", Number]) -> "Objective":
        if isinstance(other, (int, float)) and other == 0:  # lets sum([...]) start from 0
            return self
        return self + other

    def __mul__(self, other: Number) -> "Objective":
        if not isinstance(other, (int, float)):
            return NotImplemented
        s = float(other)
        fn = self._fn
        return Objective.batched(lambda out, p: s * fn(out, p), f"{s:g} * ({self.description})",
                                 key=("*", s, self.key), params=self.params, layers=self.layers)

    __rmul__ = __mul__

    def __truediv__(self, other: Number) -> "Objective":
        return self * (1.0 / other)

    def __neg__(self) -> "Objective":
        return (self * -1).described(f"-({self.description})")

    def __sub__(self, other: Union["Objective", Number]) -> "Objective":
        return self + (-other)

    def __rsub__(self, other: Number) -> "Objective":
        return (-self) + other


def _combine(name: str, a: Objective, b: Objective, op: Callable[[Tensor, Tensor, Step], Tensor],
             description: str, extra_key: Hashable = ()) -> Objective:
    """Objective `op(a's losses, b's losses, step)`; parameters are a's followed by b's."""
    n_a = len(a.params)

    def fn(out: Outputs, params: Tensor) -> Tensor:
        return op(a.evaluate(out, params[:, :n_a]), b.evaluate(out, params[:, n_a:]), out.step)
    return Objective.batched(fn, description, key=(name, extra_key, a.key, b.key), params=a.params + b.params,
                             layers=a.layers | b.layers)


class ObjectiveBatch:
    """B objectives, element j under `objectives[j]`, evaluated together: `batch(outputs of B) -> B losses`.

    Elements whose objectives share a key form one group, evaluated in one call, so a batch of class-logit
    objectives costs a handful of tensor operations whatever B is. The grouping, index and parameter tensors are
    built once, on `device`, so evaluating a step copies nothing from the host. Each element's loss depends on its
    own outputs only.
    """

    def __init__(self, objectives: Sequence[Objective], device: torch.device | str = "cpu") -> None:
        self.objectives = list(objectives)
        self.layers = layers_needed(self.objectives)
        members: dict[Hashable, list[int]] = {}
        for j, o in enumerate(self.objectives):
            members.setdefault(o.key, []).append(j)
        self.groups = [(self.objectives[js[0]],
                        torch.tensor(js, dtype=torch.long, device=device),                       # k
                        torch.tensor([self.objectives[j].params for j in js], dtype=torch.long,
                                     device=device))                                              # k x p
                       for js in members.values()]

    def __call__(self, out: Outputs) -> Tensor:
        if len(self.groups) == 1:
            objective, _, params = self.groups[0]
            return objective.evaluate(out, params)
        losses = torch.zeros(len(self.objectives), device=out.logits.device, dtype=out.logits.dtype)
        for objective, index, params in self.groups:
            part = Outputs(out.logits[index], {k: v[index] for k, v in out.activations.items()}, out.image[index],
                           out.step)
            losses = losses.index_put((index,), objective.evaluate(part, params))
        return losses


def layers_needed(objectives: Sequence[Objective]) -> list[str]:
    """The hidden layers any of `objectives` reads, sorted (only these are captured during rendering)."""
    return sorted(set().union(*(o.layers for o in objectives))) if objectives else []


# -- factories ------------------------------------------------------------------------------------------------
def class_logit(c: int, C: float | None = None, *, absolute: bool = False) -> Objective:
    """`C - O_c` (minimising it raises the logit of class c); `|C - O_c|` with `absolute=True`, the article's
    `torch.abs(200 - output[0][c])` (Image generation I). `C=None` means 0: the loss is `-O_c`."""
    const = 0.0 if C is None else float(C)
    inner = f"-logit[{c}]" if C is None else f"{const:g} - logit[{c}]"
    description = f"|{inner}|" if absolute else inner

    def fn(out: Outputs, params: Tensor) -> Tensor:
        loss = const - out.logits.gather(1, params[:, :1]).squeeze(1)   # k
        return loss.abs() if absolute else loss
    return Objective.batched(fn, description, key=("class_logit", const, absolute), params=(c,))


def opposite(c: int) -> Objective:
    """Minimise `O_c` itself: the negation of `class_logit(c)` (Latent space, "Opposites": `loss = output[0][c]`)."""
    return (-class_logit(c)).described(f"logit[{c}]")


def _as_objective(x: Union[Objective, int], C: float | None, absolute: bool) -> Objective:
    return x if isinstance(x, Objective) else class_logit(int(x), C, absolute=absolute)


def merge(a: Union[Objective, int], b: Union[Objective, int], C: float | None = None, *,
          absolute: bool = False) -> Objective:
    """Merging: the sum `a + b` (class indices become `class_logit(., C, absolute)`), the article's gradient
    `grad(C - O_1) + grad(C - O_2)` ("Vector addition and subtraction")."""
    a, b = _as_objective(a, C, absolute), _as_objective(b, C, absolute)
    return (a + b).described(f"merge({a.description}, {b.description})")


def juxtapose(a: Union[Objective, int], b: Union[Objective, int], C: float | None = None, *,
              absolute: bool = False) -> Objective:
    """Juxtaposition: at each step follow only the weaker of the two, i.e. the one with the larger loss
    (article: push O_2 if O_1 >= O_2, else O_1; a tie pushes b). The loss value is max(a, b)."""
    a, b = _as_objective(a, C, absolute), _as_objective(b, C, absolute)
    return _combine("juxtapose", a, b, lambda la, lb, step: torch.where(la > lb, la, lb),
                    f"juxtapose({a.description}, {b.description})")


def _weight_value(w: Weight, step: Step) -> float:
    return float(w(step)) if callable(w) else float(w)


def _weight_text(w: Weight) -> str:
    return getattr(w, "__name__", "w") + "(step)" if callable(w) else f"{float(w):g}"


def mix(a: Objective, b: Objective, w_a: Weight, w_b: Weight) -> Objective:
    """`w_a * a + w_b * b`, where each weight is a number or a function of the `Step` (class interpolation:
    the article moves the target from class a to class b with weights (q-n)/q and n/q)."""
    return _combine("mix", a, b,
                    lambda la, lb, step: _weight_value(w_a, step) * la + _weight_value(w_b, step) * lb,
                    f"{_weight_text(w_a)} * ({a.description}) + {_weight_text(w_b)} * ({b.description})",
                    extra_key=(w_a, w_b))


@functools.lru_cache(maxsize=None)
def fades(start: int = 0) -> tuple[Callable[[Step], float], Callable[[Step], float]]:
    """(fade_out, fade_in): the weights (q - n) / q and n / q of class interpolation, n the steps done since step
    `start` and q the steps from `start` to the end of the schedule (before `start`: 1 and 0). Cached, so that
    every objective built on the same start holds the same two functions: one key, one group of a batch."""
    def fade_in(step: Step) -> float:
        return min(1.0, max(0.0, (step.t - start) / (step.total - start)))     # n / q

    def fade_out(step: Step) -> float:
        return 1.0 - fade_in(step)                                              # (q - n) / q
    return fade_out, fade_in


def interpolate(a: Union[Objective, int], b: Union[Objective, int], C: float | None = None, *,
                absolute: bool = False, start: int = 0) -> Objective:
    """Class interpolation from a to b, from step `start` to the end of the schedule: `mix(a, b, *fades(start))`
    (Latent space, "Dog transfiguration")."""
    return mix(_as_objective(a, C, absolute), _as_objective(b, C, absolute), *fades(start))


def l1(weight: float = 1.0) -> Objective:
    """`weight * sum_i |a_i|` over the model input (the article's L1 regulariser, weight 0.001 there)."""
    w = float(weight)
    return Objective.batched(lambda out, p: w * out.image.abs().flatten(1).sum(1), f"{w:g} * |input|_1",
                             key=("l1", w))


def layer(name: str, C: float = 200.0, *, per_feature: bool = False) -> Objective:
    """`sum(C - z)` over every unit of hidden layer `name` (deep dream: raise the whole layer's activation);
    `per_feature`: divided by the layer's feature count F (its channels)."""
    const = float(C)

    def fn(out: Outputs, params: Tensor) -> Tensor:
        z = out.activations[name]                                               # k x F x H x W
        total = (const - z).flatten(1).sum(1)                                   # k
        return total / z.shape[1] if per_feature else total
    return Objective.batched(fn, f"sum({const:g} - {name})" + (" / features" if per_feature else ""),
                             key=("layer", name, const, per_feature), layers=(name,))


def channel(name: str, maps: Union[int, Sequence[int]], C: float = 200.0) -> Objective:
    """`sum(C - z_f)` over feature maps `maps` of layer `name` (deep dream on chosen features)."""
    maps = (int(maps),) if isinstance(maps, int) else tuple(int(m) for m in maps)
    const = float(C)
    return Objective.batched(lambda out, p: (const - out.activations[name][:, list(maps)]).flatten(1).sum(1),
                             f"sum({const:g} - {name}[{', '.join(map(str, maps))}])",
                             key=("channel", name, maps, const), layers=(name,))


def dream(name: str, maps: Sequence[int] | None = None) -> Objective:
    """Deep dream on hidden layer `name`: raise its total activation, `-sum(z) / F` with F its feature count (the
    article divides a whole layer's gradient by its number of features to avoid saturated images); with `maps`,
    raise those feature maps only, `-sum(z_f)` (Deep dream, "Feature optimization"). That is `layer` and `channel`
    with C = 0 (`0 - z` is exactly `-z`)."""
    if maps:
        maps = tuple(int(m) for m in maps)
        return channel(name, maps, C=0).described(f"-sum({name}[{', '.join(map(str, maps))}])")
    return layer(name, C=0, per_feature=True).described(f"-sum({name}) / features")


def logit_toward(c: int, value: Weight) -> Objective:
    """`|v - O_c|` with `v` a number or a function of the `Step`: hold class c's logit at a moving target."""
    def fn(out: Outputs, params: Tensor) -> Tensor:
        target = _weight_value(value, out.step)
        return (target - out.logits.gather(1, params[:, :1]).squeeze(1)).abs()   # k
    return Objective.batched(fn, f"|{_weight_text(value)} - logit[{c}]|", key=("logit_toward", value), params=(c,))
