"""Model zoo: every supported name loads, gives logits of the right shape, taps hidden layers, and weights
loading succeeds or fails exactly as documented."""
from __future__ import annotations

import pickle

import pytest
import torch

from jobs import models
from jobs.models import InvalidWeightsFile, UnknownModel, WeightsUnavailable, load_model

# name -> (layer to tap, expected activation shape for a batch of two at the model's input size)
ARTICLE_MODELS = {
    "googlenet": ("inception4c", (2, 512, 14, 14)),
    "inception_v3": ("Mixed_6e", (2, 768, 17, 17)),
    "resnet50": ("layer3", (2, 1024, 14, 14)),
}


@pytest.fixture(scope="module")
def article_models():
    return {name: load_model(name, "random") for name in ARTICLE_MODELS}


@pytest.mark.parametrize("name", sorted(ARTICLE_MODELS))
def test_article_model_gives_imagenet_logits_and_taps(article_models, name):
    model = article_models[name]
    layer, shape = ARTICLE_MODELS[name]
    images = torch.rand(2, 3, model.input_size, model.input_size)
    logits, acts = model.taps(images, [layer])
    assert logits.shape == (2, 1000)
    assert model.n_classes == 1000 and len(model.class_names) == 1000
    assert model.class_names[1] == "goldfish"  # ImageNet names come from torchvision's metadata, no download
    assert tuple(acts[layer].shape) == shape
    assert layer in model.layer_names
    assert model.weights_id.startswith("random")
    assert torch.isfinite(logits).all()


def test_input_sizes_follow_the_published_weights(article_models):
    assert article_models["inception_v3"].input_size == 299
    assert article_models["googlenet"].input_size == 224
    assert article_models["resnet50"].input_size == 224


def test_inception_auxiliary_head_is_tappable_in_eval_mode(article_models):
    model = article_models["inception_v3"]
    logits, acts = model.taps(torch.rand(2, 3, 299, 299), ["AuxLogits"])
    assert acts["AuxLogits"].shape == (2, 1000)
    assert not torch.allclose(acts["AuxLogits"], logits)


def test_parameters_are_frozen_and_input_gradients_flow(article_models):
    model = article_models["resnet50"]
    assert not any(p.requires_grad for p in model.parameters())
    images = torch.rand(1, 3, 64, 64, requires_grad=True)  # any size the network accepts
    model(images)[0, 3].backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())
    model.train()
    assert not model.training  # generation never runs a network in training mode


def test_normalisation_happens_inside(article_models):
    model = article_models["resnet50"]
    images = torch.rand(2, 3, 64, 64)
    mean = torch.tensor(models.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(models.IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(model(images), model.net((images - mean) / std))


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "squeezenet1_0"])
def test_any_torchvision_classifier_by_name(name):
    model = load_model(name, "random")
    assert model(torch.rand(2, 3, model.input_size, model.input_size)).shape == (2, model.n_classes)


def test_random_weights_are_seeded():
    a, b, c = (load_model("digits", "random", seed=s) for s in (3, 3, 4))
    x = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)
    assert not torch.allclose(a(x), c(x))


def test_unknown_model_is_refused():
    with pytest.raises(UnknownModel, match="unknown model 'not_a_net'"):
        load_model("not_a_net", "random")


def test_missing_weights_error_names_model_cache_path_and_local_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setenv("CLASSWEEP_OFFLINE", "1")
    with pytest.raises(WeightsUnavailable) as raised:
        load_model("googlenet", "DEFAULT")
    message = str(raised.value)
    expected = tmp_path / "torch-home" / "hub" / "checkpoints" / "googlenet-1378be20.pth"
    assert str(expected) in message and "googlenet" in message and "--weights" in message
    assert "\n" not in message


def test_failed_download_gives_the_same_clear_error(tmp_path, monkeypatch):
    import urllib.error
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("CLASSWEEP_OFFLINE", raising=False)

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no route to host")
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    with pytest.raises(WeightsUnavailable, match=r"resnet50 .*not available offline.*URLError"):
        load_model("resnet50", "IMAGENET1K_V2")


def test_unknown_weights_name_lists_the_choices():
    with pytest.raises(WeightsUnavailable, match="IMAGENET1K_V1"):
        load_model("googlenet", "IMAGENET9K")


def test_cached_weights_load_offline(tmp_path, monkeypatch):
    """A checkpoint already in the hub cache is what torchvision loads, with no network."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("CLASSWEEP_OFFLINE", "1")
    reference = load_model("squeezenet1_0", "random", seed=5)
    path = models.cache_path("squeezenet1_0", "IMAGENET1K_V1")
    path.parent.mkdir(parents=True)
    torch.save(reference.net.state_dict(), path)
    monkeypatch.setattr(torch.hub, "check_integrity", lambda *a, **k: True, raising=False)
    loaded = load_model("squeezenet1_0", "IMAGENET1K_V1", seed=1)
    x = torch.rand(1, 3, 64, 64)
    torch.testing.assert_close(loaded(x), reference(x))
    assert loaded.weights_id == "SqueezeNet1_0_Weights.IMAGENET1K_V1"


@pytest.mark.parametrize("name", ["googlenet", "digits"])
def test_local_state_dict_round_trip(tmp_path, name):
    reference = load_model(name, "random", seed=7)
    path = tmp_path / f"{name}.pth"
    torch.save(reference.net.state_dict(), path)
    loaded = load_model(name, str(path), seed=0)
    x = torch.rand(2, 3, 48, 48)
    torch.testing.assert_close(loaded(x), reference(x), rtol=0, atol=0)
    assert loaded.weights_id.startswith(f"file:{name}.pth:")


class _NotAStateDict:
    pass


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("payload", ["pickled-object", "tensor-list", "text", "wrong-keys"])
def test_files_that_are_not_state_dicts_are_refused(tmp_path, payload):
    path = tmp_path / "weights.pth"
    if payload == "pickled-object":
        with open(path, "wb") as f:
            pickle.dump(_NotAStateDict(), f)
    elif payload == "tensor-list":
        torch.save([torch.zeros(3)], path)
    elif payload == "text":
        path.write_text("definitely not weights")
    else:
        torch.save({"layer.weight": torch.zeros(3)}, path)
    with pytest.raises(InvalidWeightsFile, match=str(path)):
        load_model("digits", str(path))


def test_a_state_dict_holding_nan_or_inf_is_refused_naming_its_tensors(tmp_path):
    """A diverged training's checkpoint loaded, and every item then failed in its worker with "non-finite loss ...:
    lower the learning rate", which no learning rate mends."""
    state = load_model("digits", "random").net.state_dict()
    names = [name for name, value in state.items() if value.is_floating_point()]
    state[names[0]][0] = float("nan")
    state[names[2]][-1] = float("inf")
    path = tmp_path / "diverged.pth"
    torch.save(state, path)
    with pytest.raises(InvalidWeightsFile) as error:
        load_model("digits", str(path))
    assert str(error.value) == (f"{path} holds values that are not finite (nan or inf) in 2 tensors ({names[0]}, "
                                f"{names[2]}): not a usable state dict (a diverged training's checkpoint?)")


@pytest.mark.parametrize("key", ["state_dict", "model_state_dict", "model"])
def test_a_training_checkpoint_loads_the_state_dict_it_wraps(tmp_path, key):
    """A checkpoint `{"model": state_dict, "optimizer": ..., "epoch": 3}` was refused ("does not hold a state
    dict") while `{"state_dict": ...}` loaded: the common wrappers all unwrap, still with weights_only=True."""
    reference = load_model("digits", "random", seed=7)
    optimizer = torch.optim.SGD(reference.net.parameters(), lr=0.1, momentum=0.9)
    path = tmp_path / "checkpoint.pth"
    torch.save({key: reference.net.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 3}, path)
    loaded = load_model("digits", str(path), seed=0)
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(loaded(x), reference(x), rtol=0, atol=0)


def test_a_checkpoint_wrapping_its_state_dict_under_another_key_is_refused_naming_its_keys(tmp_path):
    path = tmp_path / "checkpoint.pth"
    torch.save({"weights": load_model("digits", "random").net.state_dict(), "epoch": 3}, path)
    with pytest.raises(InvalidWeightsFile) as error:
        load_model("digits", str(path))
    assert str(error.value) == (f"{path} does not hold a state dict (a mapping of parameter names to tensors), nor "
                                f"one under 'state_dict', 'model_state_dict' or 'model' as checkpoints do: it maps "
                                f"weights, epoch (save `model.state_dict()` with torch.save)")


def test_missing_local_file_is_refused(tmp_path):
    with pytest.raises(WeightsUnavailable, match="does not exist"):
        load_model("resnet50", str(tmp_path / "absent.pth"))


def test_list_models_reports_offline_availability(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    infos = {info.name: info for info in models.list_models()}
    assert list(infos)[:4] == ["digits", "googlenet", "inception_v3", "resnet50"]
    assert infos["digits"].weights_offline and infos["digits"].n_classes == 10
    assert not infos["googlenet"].weights_offline
    assert (infos["inception_v3"].n_classes, infos["inception_v3"].input_size) == (1000, 299)


def test_default_dream_layers(article_models):
    from jobs.models import default_dream_layer
    assert default_dream_layer(article_models["googlenet"]) == "inception4c"  # the article's choice
    assert default_dream_layer(article_models["inception_v3"]) == "Mixed_6b"  # its whole-layer dream
    assert default_dream_layer(article_models["resnet50"]) == "layer3"
    assert default_dream_layer(load_model("digits", "random")) == "block2"
    model = load_model("mobilenet_v3_small", "random")
    layer = default_dream_layer(model)
    _, acts = model.taps(torch.rand(1, 3, 64, 64), [layer])
    assert layer.startswith("features.") and acts[layer].dim() == 4  # a convolutional block, not the head


# -- every model `sweep models` lists gets a default schedule that fits it, or is refused ------------------------
# One model per torchvision family (the smallest), the demo model and the articles' two. Rendering at the articles'
# sizes on a CPU takes 10-170 s per network, so all but the cheapest are marked slow.
SLOW_FAMILY_MODELS = ("alexnet", "googlenet", "inception_v3", "resnet18", "mobilenet_v2", "mobilenet_v3_small",
                      "mnasnet0_5", "efficientnet_b0", "regnet_x_400mf", "densenet121", "vit_b_32", "swin_t",
                      "convnext_tiny", "maxvit_t", "efficientnet_v2_s", "vgg11", "swin_v2_t")
FAMILY_MODELS = ["digits", "digits-resnet", "squeezenet1_1", "shufflenet_v2_x0_5",
                 *[pytest.param(n, marks=pytest.mark.slow) for n in SLOW_FAMILY_MODELS]]


def _family(name: str) -> str:
    """A model's family: the torchvision module that builds it (resnext and wide_resnet are resnet's)."""
    import torchvision
    return name if name.startswith("digits") else torchvision.models.get_model_builder(name).__module__


def test_the_family_list_covers_every_listed_family():
    listed = {_family(m.name) for m in models.list_models()}
    covered = {_family(p if isinstance(p, str) else p.values[0]) for p in FAMILY_MODELS}
    assert listed == covered


def _default_fits_and_one_item_renders(model):
    from jobs.catalog import ALL_JOBS
    from jobs.kinds import JobSpec, run_batch
    from jobs.render import check_fits, fixed_input_size, takes_size
    from jobs.schedules import default_schedules, load_schedule, schedule_set
    defaults = default_schedules(model.name, ALL_JOBS, fixed_size=fixed_input_size(model))
    check_fits(model, defaults, ALL_JOBS)                                 # raises when a default does not fit
    tiny = load_schedule("tiny")
    if all(takes_size(model, s) for s in (*tiny.model_input_sizes(), tiny.final_size)):
        schedule = tiny
    else:
        schedule = defaults.for_job("octave").shortened(1)
        with pytest.raises(ValueError, match="cannot take"):               # refused before anything runs
            check_fits(model, schedule_set(defaults, "tiny"), ["octave"])
    (result,) = run_batch(model, [JobSpec("octave", 1)], schedule)
    assert result.error is None and result.image.shape[0] == schedule.final_size


@pytest.mark.parametrize("name", FAMILY_MODELS)
def test_every_model_family_has_default_schedules_that_fit(name):
    """The defaults of every job fit the network (checked as `sweep run` checks before Ray starts), and one tiny
    class item renders (the `tiny` preset where the network takes 32-40 px, else its default cut to a step per
    octave)."""
    _default_fits_and_one_item_renders(load_model(name, "random", seed=0))


def test_a_network_of_one_input_size_gets_a_schedule_of_that_size(random_digits_model):
    """What ViT and MaxViT need, on a stand-in: the digits network refusing every side but 32."""
    from jobs.render import fixed_input_size

    class OnlyAt32(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            assert x.shape[-1] == 32, f"Wrong image height! Expected 32 but got {x.shape[-1]}!"
            return self.net(x)
    fixed = models.Classifier(OnlyAt32(random_digits_model.net.net if hasattr(random_digits_model.net, "net")
                                       else random_digits_model.net), name="only32", weights_id="random:seed=0",
                              class_names=[str(i) for i in range(10)], input_size=32, mean=(0.5,) * 3, std=(0.5,) * 3)
    assert fixed_input_size(fixed) == 32 and fixed_input_size(random_digits_model) is None
    _default_fits_and_one_item_renders(fixed)


def test_a_state_dict_that_does_not_fit_names_its_first_missing_and_unexpected_keys(tmp_path):
    """Issue 10 ("Smaller"): not just "Error(s) in loading state_dict": which keys, the first few."""
    path = tmp_path / "other.pth"
    from jobs.models import SHOWN_KEYS, state_dict_mismatch
    import torch.nn as nn
    net = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 4))
    state = {k: v.clone() for k, v in net.state_dict().items()}
    state.pop("0.weight")
    state["1.bias"] = torch.zeros(5)
    state.update({f"extra.{i}": torch.zeros(1) for i in range(5)})
    message = state_dict_mismatch(net, state)
    assert "1 missing keys (0.weight)" in message
    assert "5 unexpected keys (extra.0, extra.1, extra.2 and 2 more)" in message and SHOWN_KEYS == 3
    assert "1.bias (5,) for (4,)" in message and "\n" not in message
    assert state_dict_mismatch(net, net.state_dict()) == ""
    torch.save({"layer.weight": torch.zeros(3)}, path)
    with pytest.raises(InvalidWeightsFile, match=r"missing keys \(.*\).*1 unexpected keys \(layer.weight\)"):
        load_model("digits", str(path))


def test_random_he_weights_are_seeded_he_normal_draws():
    a, b = load_model("digits", "random-he", seed=3), load_model("digits", "random-he", seed=3)
    plain = load_model("digits", "random", seed=3)
    assert a.weights_id == "random-he:seed=3" and plain.weights_id == "random:seed=3"
    convs = [m for m in a.net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs
    for conv in convs:
        fan_in = conv.weight[0].numel()
        assert abs(conv.weight.std().item() / (2 / fan_in) ** 0.5 - 1) < 0.2     # He's normal
        assert conv.bias is None or not conv.bias.any()
    for (name, p), q, r in zip(a.net.named_parameters(), b.net.parameters(), plain.net.parameters()):
        assert torch.equal(p, q), name                                            # same seed, same network
    assert any(not torch.equal(p, r) for p, r in zip(a.net.parameters(), plain.net.parameters()))
    assert not torch.equal(next(load_model("digits", "random-he", seed=4).net.parameters()),
                           next(a.net.parameters()))


def test_a_compiled_network_still_feeds_its_taps():
    """`sweep run --compile` (GPU workers only; the same dynamo here with its eager backend on the CPU): a graph traced
    without hooks (the worker's memory probe, a class batch) must not swallow a later tap of the same shapes."""
    model = load_model("digits", "random")
    x = torch.rand(2, 3, 32, 32, requires_grad=True)                         # 2 x 3 x 32 x 32
    expected_logits, expected = model.taps(x, ["block2"])
    model.net.compile(backend="eager")
    model(x)                                                                 # traced without hooks
    logits, activations = model.taps(x, ["block2"])
    assert torch.equal(logits, expected_logits) and torch.equal(activations["block2"], expected["block2"])
    assert torch.equal(model(x), expected_logits)                            # and as before outside a tap
