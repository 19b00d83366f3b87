"""The real default backbone (packaged ImageNet weights) on real images from ../shared/data."""

import numpy as np
import pytest
import torch

from streamad.vision.backbones import load_backbone
from streamad.config import ChannelConfig, FeatureConfig, InReachConfig, PositionalConfig
from streamad.evaluation.datasets import load_dataset, read_image, read_mask
from streamad.errors import UserError
from streamad.vision.features import PatchFeatureExtractor
from streamad.batch.inreach import InReaCh


def test_lite0_weights_are_the_real_imagenet_ones():
    """Random initialisation would not have these batch-norm statistics."""
    b = load_backbone("efficientnet_lite0")
    rand = load_backbone("efficientnet_lite0", weights="random")
    w, r = b.trunk.mods[1]._bn2.running_var, rand.trunk.mods[1]._bn2.running_var
    assert not torch.allclose(w, r) and torch.allclose(r, torch.ones_like(r))


def test_missing_weight_file_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="weight file not found"):
        load_backbone("efficientnet_lite0", weights=str(tmp_path / "missing.pth"))
    with pytest.raises(UserError, match="unknown backbone"):
        load_backbone("vgg99")
    with pytest.raises(UserError, match="unknown layer"):
        load_backbone("efficientnet_lite0", layers=("blocks.99",))


def test_torchvision_backbone_loads_a_local_weight_file(tmp_path):
    """Offline, torchvision backbones take an explicit file; here a stand-in saved from a seeded init."""
    torch.manual_seed(0)
    stand_in = load_backbone("resnet18", weights="random")
    import torchvision

    full = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(full.state_dict(), path)
    loaded = load_backbone("resnet18", weights=str(path))
    assert torch.equal(loaded.trunk.mods[1][0].conv1.weight, full.layer1[0].conv1.weight)
    assert stand_in.info.channels == (128, 256)
    bad = tmp_path / "garbage.pth"
    bad.write_bytes(b"garbage")
    with pytest.raises(UserError, match="could not read weights"):
        load_backbone("resnet18", weights=str(bad))


def test_descriptors_of_real_images(bottle_dir):
    ds = load_dataset(str(bottle_dir))
    images = [read_image(s.path) for s in ds.train[:3]]
    ex = PatchFeatureExtractor(FeatureConfig())
    d = ex(images)
    assert d.shape == (3, 28 * 28, 152) and d.dtype == np.float32 and np.isfinite(d).all()
    # the same place in two good bottles is closer than two different places
    same = np.linalg.norm(d[0] - d[1], axis=1).mean()
    shuffled = np.linalg.norm(d[0] - d[1][::-1], axis=1).mean()
    assert same < shuffled


def test_inreach_on_real_bottles_finds_the_defect(bottle_dir):
    ds = load_dataset(str(bottle_dir))
    train = [read_image(s.path) for s in ds.train[:16]]
    good = [s for s in ds.test if s.label == 0][:3]
    bad = [s for s in ds.test if s.defect == "broken_large"][:3]
    config = InReachConfig(channels=ChannelConfig(seeds=3), positional=PositionalConfig(mode="off"))
    model = InReaCh(config).fit(train)
    pred = model.predict([read_image(s.path) for s in good + bad])
    assert pred.scores[3:].min() > pred.scores[:3].max()
    assert pred.heatmaps.shape == (6, 224, 224)
    # the hottest pixel of each broken bottle lies inside (or right next to) its defect
    for heat, sample in zip(pred.heatmaps[3:], bad):
        mask = read_mask(sample, (224, 224))
        y, x = np.unravel_index(heat.argmax(), heat.shape)
        assert mask[max(0, y - 8):y + 9, max(0, x - 8):x + 9].any()
