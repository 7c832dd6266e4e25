"""Model zoo: every classifier behind one interface, RGB images in [0, 1] in, logits out.

`load_model(name, weights)` returns a `Classifier`: it applies the network's own input normalisation inside
(or not: see `Classifier.input`), freezes every parameter (generation needs input gradients only), and can tap
named hidden layers with forward hooks. Names: `googlenet`, `inception_v3`, `resnet50`, any other torchvision
classification model, and the built-in demo models `digits` (see `jobs.digits`) and `digits-resnet`
(`jobs.digits_resnet`, another architecture trained independently on the same digits, for scoring one model's
images with another).

`weights` is one of
- a torchvision weights name (`DEFAULT`, `IMAGENET1K_V1`, ...): fetched into the torch hub cache by torchvision's
  own mechanism when online; offline it must already be there, or `WeightsUnavailable` names the exact path;
- a local `.pth`/`.pt` state dict, read with `torch.load(..., weights_only=True)` (never unpickles objects), or
  a training checkpoint holding one under a key of `CHECKPOINT_KEYS`;
- `random`: seeded random initialisation, for plumbing tests and speed benchmarks only (marked in `weights_id`);
- `random-he`: the same network with every convolution and linear layer drawn again from He's normal
  (std sqrt(2 / fan_in), zero bias). torchvision initialises GoogLeNet with std 0.01, through which almost no
  signal passes: input gradients are about 1e-13, float rounding noise, so comparing a speed option (bf16) with
  float32 on it measures nothing. Through He-initialised layers an input gradient survives, which makes
  numerical comparisons meaningful without pretrained weights.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pickle
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Collection, Iterator, Sequence

import torch
from torch import nn

from jobs import digits
from jobs.demo_models import DEFAULT_DEMO, DEMO_MODELS
from jobs.text import counted, first_line, listing

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RANDOM_WEIGHTS = "random"
RANDOM_HE_WEIGHTS = "random-he"

# Architecture arguments that make a torchvision model match its published checkpoints, so that a local state
# dict saved from the pretrained model loads strictly. GoogLeNet's aux heads are dropped after loading.
_ARCH_KWARGS = {
    "googlenet": {"aux_logits": True, "transform_input": True, "init_weights": False},
    "inception_v3": {"aux_logits": True, "transform_input": True, "init_weights": False},
}
# Layers that the articles use, offered first in `Classifier.layer_names`.
SUGGESTED_LAYERS = {
    "googlenet": ("inception3b", "inception4a", "inception4c", "inception4e", "inception5a", "inception5b"),
    "inception_v3": ("Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7c", "AuxLogits"),
    "resnet50": ("layer1", "layer2", "layer3", "layer4"),
}
# Hidden layer a plain `dream` raises by default. Deep dream, "Layer Optimization": InceptionV3 "optimizing layer
# Mixed 6b" and "optimizing layer 3 of ResNet"; GoogLeNet layer 4c in "Enhancements with Dreams" and "Directed
# dream" (Mixed 6e is where it raises single feature maps: `--layers Mixed_6e:0,4`). A middle layer otherwise.
DREAM_LAYERS = {"googlenet": "inception4c", "inception_v3": "Mixed_6b", "resnet50": "layer3",
                **{m.name: m.dream_layer for m in DEMO_MODELS.values()}}


class WeightsUnavailable(RuntimeError):
    """The requested weights cannot be had here; the message says where they were expected and what to do."""


class InvalidWeightsFile(ValueError):
    """A local weights file that is not a state dict for this model."""


class UnknownModel(ValueError):
    """A model name that is neither a demo model (`digits`, `digits-resnet`) nor a torchvision classifier."""


class Classifier(nn.Module):
    """A frozen classifier taking RGB in [0, 1] (any size the network accepts) and returning logits.

    Attributes: `name`, `weights_id` (what the weights are; `random...` marks random ones), `class_names`,
    `n_classes`, `input_size` (the side the network was trained at), `layer_names` (tappable hidden layers).
    """

    def __init__(self, net: nn.Module, *, name: str, weights_id: str, class_names: Sequence[str],
                 input_size: int, mean: Sequence[float], std: Sequence[float],
                 suggested_layers: Sequence[str] = ()) -> None:
        super().__init__()
        self.net = net.eval().requires_grad_(False)
        self.name = name
        self.weights_id = weights_id
        self.class_names = tuple(class_names)
        self.n_classes = len(self.class_names)
        self.input_size = int(input_size)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        # "normalized": (x - mean) / std before the network (torchvision's recipe); "raw": x as it is, as the
        # articles' code fed the hub GoogLeNet/InceptionV3, which apply their own `transform_input`
        # (Image generation I). Set per run with `input_as` (a schedule's `input`).
        self.input = "normalized"
        # Every tappable module path (e.g. "inception4c", "features.6"); `layer_names` lists the notable ones.
        self.all_layers = frozenset(name for name, _ in self.net.named_modules() if name)
        top_level = [n for n, _ in self.net.named_children()]
        self.layer_names = tuple(dict.fromkeys([*(l for l in suggested_layers if l in self.all_layers),
                                                *top_level]))
        self.folded: dict[str, str] = {}   # convolution -> the batch norm folded into it (`fold_batchnorm`)

    def train(self, mode: bool = True) -> "Classifier":
        # Generation always runs the network in eval mode (batch norm statistics fixed, no dropout, no aux heads).
        return super().train(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # images: B x 3 x H x W in [0, 1]  ->  logits: B x n_classes
        if self.input == "raw":
            return self.net(images)
        return self.net((images - self.mean) / self.std)

    @contextlib.contextmanager
    def input_as(self, convention: str) -> Iterator["Classifier"]:
        """Within the block the network is fed images under `convention`: "raw" (the pixels as they are, the
        articles' code) or "normalized" (ImageNet mean/std first)."""
        if convention not in ("raw", "normalized"):
            raise ValueError(f"input convention must be raw or normalized, got {convention!r}")
        before, self.input = self.input, convention
        try:
            yield self
        finally:
            self.input = before

    def taps(self, images: torch.Tensor, layers: Sequence[str]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits plus the named hidden layers' activations for `images`, in one forward pass."""
        with self.capture(layers) as activations:
            logits = self(images)
        return logits, dict(activations)

    def fold_batchnorm(self, keep: Collection[str] = ()) -> dict[str, str]:
        """Fold each eval-mode batch norm that only a convolution feeds into that convolution (`jobs.folding`: the
        same function up to float rounding, faster), except where the convolution is a layer in `keep` (a layer
        the caller will read: its output would become the batch norm's). Returns {convolution: batch norm} of the
        pairs folded; `capture` refuses those convolutions from then on."""
        from jobs.folding import fold_batchnorm
        example = torch.zeros(1, 3, self.input_size, self.input_size, dtype=self.mean.dtype,
                              device=self.mean.device)                                     # 1 x 3 x S x S
        folded = fold_batchnorm(self.net, example, keep)
        self.folded.update(folded)
        return folded

    @contextlib.contextmanager
    def capture(self, layers: Sequence[str]) -> Iterator[dict[str, torch.Tensor]]:
        """Within the block, each forward pass fills the yielded dict with `layer -> activation`."""
        modules = dict(self.net.named_modules())
        unknown = [l for l in layers if l not in self.all_layers]
        if unknown:
            raise KeyError(f"{self.name} has no layer {', '.join(map(repr, unknown))}; "
                           f"layers: {', '.join(self.layer_names)}")
        folded = [l for l in layers if l in self.folded]
        if folded:   # its output is the batch norm's now: never hand that out as the convolution's
            raise ValueError(f"{self.name}'s layer {folded[0]!r} has the batch norm {self.folded[folded[0]]!r} "
                             f"folded into it (--fold-batchnorm), so it no longer gives its own output: run with "
                             f"--no-fold-batchnorm to read it")
        activations: dict[str, torch.Tensor] = {}
        handles = []
        for layer in layers:
            if layer == "AuxLogits" and "Mixed_6e" in modules:
                # InceptionV3 runs its auxiliary head only in training mode; in eval we apply it to Mixed_6e.
                aux_head = modules["AuxLogits"]

                def run_aux(_module, _inputs, output, _head=aux_head):
                    activations["AuxLogits"] = _head(output)
                handles.append(modules["Mixed_6e"].register_forward_hook(run_aux))
                continue

            def keep(_module, _inputs, output, _layer=layer):
                activations[_layer] = output
            handles.append(modules[layer].register_forward_hook(keep))
        try:
            with _eager_while(bool(handles)):
                yield activations
        finally:
            for handle in handles:
                handle.remove()


def _eager_while(hooked: bool) -> contextlib.AbstractContextManager:
    """Within the block, compiled networks run eagerly when `hooked`. torch.compile does not see forward hooks added
    after it traced a network: a graph traced without them (the worker's memory probe, a class batch) is reused by
    a call with the same shapes and drops the hooks, so a dream's or a tapped head's layer would never be
    captured (`sweep run --compile`: KeyError on the layer)."""
    set_stance = getattr(torch.compiler, "set_stance", None)   # torch >= 2.6
    return set_stance("force_eager") if hooked and set_stance is not None else contextlib.nullcontext()


def default_dream_layer(model: Classifier) -> str:
    """The model's default dream layer: the article's choice where there is one, else a middle block (of its
    `features` stack when it has one, as MobileNet, VGG, EfficientNet and DenseNet do)."""
    if model.name in DREAM_LAYERS:
        return DREAM_LAYERS[model.name]
    if "layer3" in model.layer_names:  # every ResNet-like network
        return "layer3"
    features = getattr(model.net, "features", None)
    if isinstance(features, nn.Sequential) and len(features) > 1:
        names = [name for name, _ in features.named_children()]
        return f"features.{names[len(names) // 2]}"
    blocks = [n for n, m in model.net.named_children()
              if not isinstance(m, (nn.Linear, nn.Dropout, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Flatten))]
    return blocks[len(blocks) // 2]


@dataclass(frozen=True)
class ModelInfo:
    name: str
    n_classes: int
    input_size: int
    weights: str            # the weights name `load_model` uses by default
    weights_offline: bool   # whether those weights load without a network connection


def torchvision_classifiers() -> list[str]:
    import torchvision
    return sorted(torchvision.models.list_models(module=torchvision.models))


def _torchvision_weights(name: str, weights: str):
    import torchvision
    enum = torchvision.models.get_model_weights(name)
    try:
        return enum[weights]
    except KeyError:
        raise WeightsUnavailable(
            f"{name} has no weights named {weights!r}; choose one of "
            f"{', '.join(['DEFAULT', *enum.__members__])}, '{RANDOM_WEIGHTS}', or a local .pth file") from None


def _default_weights(name: str):
    import torchvision
    return torchvision.models.get_model_weights(name).DEFAULT


def cache_path(name: str, weights: str = "DEFAULT") -> Path:
    """Where torchvision keeps (or would keep) the checkpoint file for `name`'s `weights`."""
    url = _torchvision_weights(name, weights).url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def _input_size(weights_enum_value) -> int:
    transforms = weights_enum_value.transforms
    crop = getattr(transforms, "keywords", {}).get("crop_size")
    if crop is None:
        return 224
    return int(crop[0] if isinstance(crop, (tuple, list)) else crop)


# Where training checkpoints keep the network's state dict, beside the optimizer's and the epoch: Lightning and
# timm write "state_dict", the PyTorch tutorials "model_state_dict", DeiT and many training scripts "model".
CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model")


def _is_state_dict(value) -> bool:
    return isinstance(value, dict) and bool(value) and all(isinstance(v, torch.Tensor) for v in value.values())


def _unwrapped(state):
    """The state dict a training checkpoint wraps under one of `CHECKPOINT_KEYS`; `state` itself otherwise."""
    if isinstance(state, dict) and not _is_state_dict(state):
        return next((state[key] for key in CHECKPOINT_KEYS if _is_state_dict(state.get(key))), state)
    return state


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:   # holds objects other than tensors: torch's message suggests running them
        raise InvalidWeightsFile(f"{path} is not a plain state dict: it holds Python objects besides tensors, "
                                 f"and classweep never unpickles objects (save `model.state_dict()` with "
                                 f"torch.save)") from None
    except Exception as error:  # truncated files, not a torch file at all
        detail = first_line(error)
        if "weights_only" in str(error):   # never pass on torch's advice to load it unsafely
            detail = "not a plain state dict of tensors"
        raise InvalidWeightsFile(f"{path} is not a readable state dict ({type(error).__name__}: "
                                 f"{detail})") from None
    state = _unwrapped(state)
    if not _is_state_dict(state):
        refusal = f"{path} does not hold a state dict (a mapping of parameter names to tensors)"
        if isinstance(state, dict) and state:   # a checkpoint keeping it under a key of its own
            wrappers = ", ".join(map(repr, CHECKPOINT_KEYS[:-1])) + f" or {CHECKPOINT_KEYS[-1]!r}"
            refusal += (f", nor one under {wrappers} as checkpoints do: it maps {listing(state)} (save "
                        f"`model.state_dict()` with torch.save)")
        raise InvalidWeightsFile(refusal)
    broken = [name for name, value in state.items() if value.is_floating_point() and not torch.isfinite(value).all()]
    if broken:   # every item would fail in its worker with a non-finite loss, whatever its learning rate
        raise InvalidWeightsFile(f"{path} holds values that are not finite (nan or inf) in "
                                 f"{counted(len(broken), 'tensor')} ({listing(broken, SHOWN_KEYS)}): not a usable "
                                 f"state dict (a diverged training's checkpoint?)")
    return state


def _file_id(path: Path) -> str:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return f"file:{path.name}:{digest}"


SHOWN_KEYS = 3   # state-dict keys named per kind (missing, unexpected, wrong shape) when a file does not fit


def state_dict_mismatch(net: nn.Module, state: dict[str, torch.Tensor]) -> str:
    """What keeps `state` from loading into `net`, in one line: the first few missing and unexpected keys and
    parameters of another shape ("" when it fits)."""
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} for {tuple(own[k].shape)}" for k in own
              if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(own[k].shape)]
    parts = [f"{len(missing)} missing keys ({listing(missing, SHOWN_KEYS)})" if missing else "",
             f"{len(unexpected)} unexpected keys ({listing(unexpected, SHOWN_KEYS)})" if unexpected else "",
             f"{len(shapes)} of another shape ({listing(shapes, SHOWN_KEYS)})" if shapes else ""]
    return "; ".join(p for p in parts if p)


def _load_state_dict(net: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as error:
        detail = state_dict_mismatch(net, state) or first_line(error)
        raise InvalidWeightsFile(f"{source} does not match this model's parameters: {detail}") from None


def _fetch_torchvision_state(name: str, weights: str) -> tuple[dict[str, torch.Tensor], str]:
    weights_value = _torchvision_weights(name, weights)
    expected = cache_path(name, weights)
    offline = os.environ.get("CLASSWEEP_OFFLINE", "") not in ("", "0")
    hint = (f"{name} weights {weights_value} are not available offline: expected {expected}; copy the file there "
            f"or pass a local state dict with --weights /path/to/{name}.pth")
    if not expected.exists() and offline:
        raise WeightsUnavailable(hint)
    chatter = io.StringIO()   # torch.hub announces the download on stdout; the error below must stay one line
    try:
        with contextlib.redirect_stdout(chatter):
            state = weights_value.get_state_dict(progress=False, check_hash=True)
    except Exception as error:
        raise WeightsUnavailable(f"{hint} (download failed: {type(error).__name__})") from None
    if chatter.getvalue():
        print(f"downloaded {name} weights {weights_value} to {expected}", file=sys.stderr)
    return state, str(weights_value)


def _state_dict(weights: str, named) -> tuple[dict[str, torch.Tensor], str, str]:
    """The weights policy of every model, for anything but `random`: a local state-dict file, or the weights the
    model itself names (`named(weights)` -> (state, weights_id)). Returns (state, weights_id, where they came from)."""
    path = Path(weights)
    if path.suffix in (".pth", ".pt") or path.exists():
        if not path.is_file():
            raise WeightsUnavailable(f"weights file {path} not found (the path does not exist)")
        return _read_state_dict(path), _file_id(path), str(path)
    state, weights_id = named(weights)
    return state, weights_id, weights_id


def _random_weights(net: nn.Module, weights: str, seed: int) -> str:
    """Finish a randomly initialised `net` as `weights` asks (`random`: as built; `random-he`: every convolution
    and linear layer drawn again from He's normal, seeded) and return its weights id."""
    if weights == RANDOM_HE_WEIGHTS:
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for layer in net.modules():
                if isinstance(layer, (nn.Conv2d, nn.Linear)):
                    fan_in = layer.weight[0].numel()
                    layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * (2 / fan_in) ** 0.5)
                    if layer.bias is not None:
                        layer.bias.zero_()
    return f"{weights}:seed={seed}"


def _build_demo(name: str, weights: str, seed: int) -> Classifier:
    """A demo model (`jobs.digits`, `jobs.digits_resnet`): `weights` DEFAULT (the shipped checkpoint), `random`,
    or a local state dict."""
    demo = DEMO_MODELS[name]

    def shipped(wanted: str) -> tuple[dict[str, torch.Tensor], str]:
        if wanted not in ("DEFAULT", "shipped"):
            raise WeightsUnavailable(f"{name} has no weights named {wanted!r}: pass DEFAULT, random, or a .pth file")
        if not demo.checkpoint.is_file():
            raise WeightsUnavailable(f"{name} weights not found at {demo.checkpoint}: reinstall the package or "
                                     f"rebuild it with `{demo.train_command}`")
        return _read_state_dict(demo.checkpoint), "shipped"

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = demo.network()
    if weights in (RANDOM_WEIGHTS, RANDOM_HE_WEIGHTS):
        weights_id = _random_weights(net, weights, seed)
    else:
        state, weights_id, source = _state_dict(weights, shipped)
        _load_state_dict(net, state, source)
    # The normalisation the checkpoint was trained with (`jobs.train_digits` reads the same record).
    return Classifier(net, name=name, weights_id=weights_id, class_names=digits.CLASS_NAMES,
                      input_size=digits.INPUT_SIZE, mean=(demo.mean,) * 3, std=(demo.std,) * 3,
                      suggested_layers=demo.layers)


def _build_torchvision(name: str, weights: str, seed: int) -> Classifier:
    import torchvision
    if name not in torchvision_classifiers():
        raise UnknownModel(f"unknown model {name!r}: use 'digits', 'digits-resnet' or a torchvision classifier "
                           f"(e.g. googlenet, inception_v3, resnet50); `sweep models` lists them")
    default = _default_weights(name)
    arch_kwargs = dict(_ARCH_KWARGS.get(name, {}))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if weights in (RANDOM_WEIGHTS, RANDOM_HE_WEIGHTS):
            arch_kwargs["init_weights"] = True if "init_weights" in arch_kwargs else None
            arch_kwargs = {k: v for k, v in arch_kwargs.items() if v is not None}
            net = torchvision.models.get_model(name, weights=None, **arch_kwargs)
            weights_id = _random_weights(net, weights, seed)
        else:
            state, weights_id, source = _state_dict(weights, lambda named: _fetch_torchvision_state(name, named))
            if "aux_logits" in arch_kwargs:
                # A state dict saved from a model without auxiliary heads (ours drops GoogLeNet's) loads too.
                arch_kwargs["aux_logits"] = any(k.startswith(("aux1.", "AuxLogits.")) for k in state)
            net = torchvision.models.get_model(name, weights=None, **arch_kwargs)
            _load_state_dict(net, state, source)
    if name == "googlenet" and net.aux_logits:  # the published GoogLeNet is used without its auxiliary heads
        net.aux_logits, net.aux1, net.aux2 = False, None, None
    return Classifier(net, name=name, weights_id=weights_id, class_names=default.meta["categories"],
                      input_size=_input_size(default), mean=IMAGENET_MEAN, std=IMAGENET_STD,
                      suggested_layers=SUGGESTED_LAYERS.get(name, ()))


def load_model(name: str, weights: str = "DEFAULT", *, device: torch.device | str = "cpu",
               seed: int = 0) -> Classifier:
    """The classifier `name` with `weights` (see module docstring), frozen, in eval mode, on `device`.

    `seed` only matters for random weights (`random`, `random-he`): the same seed gives the same network.
    """
    model = _build_demo(name, weights, seed) if name in DEMO_MODELS else _build_torchvision(name, weights, seed)
    return model.to(device)


def model_info(name: str) -> ModelInfo:
    """Class count, input size and offline availability of the default weights, without building the network."""
    if name in DEMO_MODELS:
        return ModelInfo(name, len(digits.CLASS_NAMES), digits.INPUT_SIZE, "DEFAULT",
                         DEMO_MODELS[name].checkpoint.exists())
    default = _default_weights(name)
    return ModelInfo(name, len(default.meta["categories"]), _input_size(default), "DEFAULT",
                     cache_path(name).exists())


def model_class_names(name: str) -> tuple[str, ...]:
    """The class names `load_model(name)` gives its classifier, without building the network (ImageNet names from
    torchvision's weights metadata, no download); ValueError for a model this installation does not know."""
    if name in DEMO_MODELS:
        return tuple(digits.CLASS_NAMES)
    return tuple(_default_weights(name).meta["categories"])


def list_models() -> list[ModelInfo]:
    """The demo model, the articles' three, the other demo models, then every other torchvision classifier."""
    names = [DEFAULT_DEMO, "googlenet", "inception_v3", "resnet50", *(n for n in DEMO_MODELS if n != DEFAULT_DEMO)]
    names += [n for n in torchvision_classifiers() if n not in names]
    return [model_info(n) for n in names]
