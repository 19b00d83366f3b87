"""The transpose test and rotation alignment (paper section 3.2, supplement D)."""

import numpy as np

from streamad.config import ChannelConfig, FeatureConfig, InReachConfig, PositionalConfig
from streamad.batch.inreach import InReaCh
from streamad.vision.positional import best_rotation, rotate, transpose_score


def _bar(size=96):
    img = np.full((size, size, 3), 40, np.uint8)
    img[:, 10:30] = 230  # a vertical bar left of centre: fixed pose, far from its transpose
    img[40:56, 60:90] = 120
    return img


def test_fixed_pose_passes_and_texture_fails():
    rng = np.random.default_rng(0)
    texture = [rng.integers(0, 255, (96, 96, 3), dtype=np.uint8) for _ in range(20)]
    assert transpose_score([_bar()] * 5) > 600
    assert transpose_score(texture) < 600


def test_best_rotation_recovers_the_angle():
    img = _bar()
    turned = rotate(img, 40.0)
    angle = best_rotation(turned, img)
    assert abs(((angle + 40.0 + 180) % 360) - 180) <= 2.0


def test_randomly_rotated_objects_are_aligned_and_get_positions():
    rng = np.random.default_rng(1)
    base = _bar()
    images = [base] + [rotate(base, float(a)) for a in rng.uniform(0, 360, size=7)]
    assert transpose_score(images) < 600  # random orientation washes the pose out
    config = InReachConfig(features=FeatureConfig(image_size=(64, 64), grid=(8, 8)),
                           channels=ChannelConfig(seeds=2, min_span=2))
    model = InReaCh(config)
    aligned = model.decide_positions(images)
    assert model.aligned_ and model.uses_positions_ and model.transpose_score_ > 600
    assert transpose_score(aligned) > 600
    # the decision is public: one angle per training image (the first is the reference), and test
    # images are turned onto that reference as predict turns them
    assert len(model.train_angles_) == len(images) and model.train_angles_[0] == 0.0
    assert model.reference_ is images[0]
    turned, angles = model.align([rotate(base, 70.0)])
    assert abs(((angles[0] + 70.0 + 180) % 360) - 180) <= 2.0 and transpose_score([base, turned[0]]) > 600
    # ... and can be handed to another detector (a cached decision) without running the test again
    other = InReaCh(config).use_positional_decision(True, True, model.transpose_score_, model.train_angles_,
                                                    reference=model.reference_)
    assert other.align([rotate(base, 70.0)])[1] == angles
    desc = np.zeros((1, 64, 5), np.float32)
    assert other.with_positions(desc).shape == (1, 64, 7)


def test_without_alignment_the_decision_is_still_complete():
    model = InReaCh(InReachConfig(features=FeatureConfig(image_size=(64, 64), grid=(8, 8)),
                                  channels=ChannelConfig(seeds=2, min_span=2)))
    assert model.train_angles_ == [] and model.reference_ is None  # set before any fit
    images = [_bar()] * 4
    model.decide_positions(images)
    assert model.uses_positions_ and not model.aligned_
    assert model.train_angles_ == [0.0] * 4 and model.reference_ is None
    same, angles = model.align(images[:2])
    assert angles == [0.0, 0.0] and all(a is b for a, b in zip(same, images))
    desc = np.zeros((1, 64, 5), np.float32)
    assert model.with_positions(desc).shape == (1, 64, 7)
    model.use_positional_decision(False, False, None)
    assert model.with_positions(desc) is desc


def test_forced_modes_skip_the_test():
    model = InReaCh(InReachConfig(features=FeatureConfig(image_size=(64, 64), grid=(8, 8)),
                                  positional=PositionalConfig(mode="on")))
    model.decide_positions([_bar()] * 2)
    assert model.uses_positions_ and model.transpose_score_ is None and model.train_angles_ == [0.0, 0.0]
