"""The "Why IN?" experiments measure what the app says they measure, on private copies of the model."""
import pytest
import torch

from stylenet import explain
from stylenet.checkpoint import load_model


def test_bn_depends_on_the_batch_and_the_mode_in_does_not(checkpoints):
    bn, _ = load_model(checkpoints["batch"])
    inorm, _ = load_model(checkpoints["instance"])
    x, others = torch.rand(1, 3, 32, 32), torch.rand(3, 3, 32, 32)
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    _, _, d_mode = explain.train_vs_eval(bn, x)
    _, _, d_bn = explain.batch_dependence(bn, x, others)
    _, _, d_in = explain.batch_dependence(inorm, x, others)
    assert d_mode > 0 and d_bn > 0 and d_in < 1e-6
    assert all(torch.equal(before[k], v) for k, v in bn.state_dict().items())  # the shared model is untouched


def test_the_contrast_test_compares_a_flattened_and_a_boosted_photo(checkpoints):
    model, _ = load_model(checkpoints["instance"])
    x = torch.rand(1, 3, 32, 32) * 0.5 + 0.25  # within [0, 1] at both contrasts: no clamping
    low, high, difference = explain.contrast_sensitivity(model, x)
    assert difference == pytest.approx(explain.mad(low, high)) and low.shape == high.shape == x.shape
    assert torch.allclose(explain.with_contrast(x, 1.0), x)
    flat = explain.with_contrast(x, 0.4)
    assert flat.std() < x.std() and torch.allclose(flat.mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=1e-6)


def test_statistics_around_the_first_norm_become_a_figure(checkpoints):
    models = {label: load_model(checkpoints[norm])[0] for label, norm in (("BN", "batch"), ("IN", "instance"))}
    x = torch.rand(1, 3, 32, 32)
    stats = {label: explain.first_norm_statistics(model, x) for label, model in models.items()}
    assert explain.statistics_figure(stats).axes and explain.norm_axes_figure().axes


def test_batch_statistics_are_what_batch_norm_measures_one_set_for_every_image():
    """Per image the paintings' statistics differ; pooled over the batch they are one set, the one a BN
    layer in training mode normalizes that batch with."""
    from stylenet.adain import EPS, channel_stats

    gen = torch.Generator().manual_seed(0)
    feats = torch.rand(3, 5, 6, 7, generator=gen) * torch.tensor([1.0, 3.0, 0.5]).view(3, 1, 1, 1) + torch.arange(3.0).view(3, 1, 1, 1)
    mean, std = channel_stats(feats)
    assert not torch.allclose(mean[0], mean[1]) and not torch.allclose(std[0], std[2])  # instance: one set per image
    pooled_mean, pooled_std = explain.batch_statistics(mean, std)
    assert pooled_mean.shape == mean.shape and pooled_std.shape == std.shape
    assert all(torch.equal(pooled_mean[i], pooled_mean[0]) and torch.equal(pooled_std[i], pooled_std[0]) for i in range(3))
    bn = torch.nn.functional.batch_norm(feats, None, None, training=True, eps=EPS)
    assert torch.allclose((feats - pooled_mean) / pooled_std, bn, atol=1e-5)


def test_instance_vs_batch_statistics_paints_each_painting_s_own_target_and_one_shared(monkeypatch):
    """The mechanics, on an untrained decoder: the decoder gets each painting's own statistics, then the
    batch's one set; each picture is scored against its own painting (the batch's against every one)."""
    from stylenet.adain import AdaINStylizer, Decoder, channel_stats
    from stylenet.evaluate import Score

    from .conftest import smooth_image

    class Evaluator:  # the real one's interface; records which picture was scored against which painting
        def __init__(self):
            self.calls = []

        def photo_content(self, photo):
            return "content"

        def painting_grams(self, painting):
            return paintings.index(painting)

        def score(self, picture, content, grams):
            self.calls.append((picture, content, grams))
            return Score(style=float(len(self.calls)), content=0.0)

    torch.manual_seed(0)
    stylizer = AdaINStylizer(Decoder(0.125), device="cpu")
    photo, paintings = smooth_image(1, (40, 32)), [smooth_image(2, (64, 48)), smooth_image(3, (48, 64))]
    targets = []
    decode = stylizer.decode
    monkeypatch.setattr(stylizer, "decode", lambda feat: targets.append(feat) or decode(feat))
    evaluator = Evaluator()
    own, shared, d_own, d_batch = explain.instance_vs_batch_statistics(
        stylizer, evaluator, photo, explain.PaintingTargets.of(stylizer, evaluator, paintings, 64))
    assert [p.size for p in [*own, shared]] == [photo.size] * 3 and len(targets) == 3
    scored = [(picture, grams) for picture, _, grams in evaluator.calls]
    assert scored == [(own[0], 0), (own[1], 1), (shared, 0), (shared, 1)]  # own i against painting i only
    assert (d_own, d_batch) == ((1 + 2) / 2, (3 + 4) / 2)  # the means of those scores
    stats = [stylizer.painting_stats(p, 64) for p in paintings]
    pooled = explain.batch_statistics(torch.cat([m for m, _ in stats]), torch.cat([s for _, s in stats]))
    live = channel_stats(targets[0])[1] > 1  # channels the tiny photo leaves flat stay flat whatever the target
    for target, (mean, std) in zip(targets, [*stats, (pooled[0][:1], pooled[1][:1])]):
        got_mean, got_std = channel_stats(target)
        assert torch.allclose(got_mean[live], mean[live], rtol=1e-3, atol=1e-2)
        assert torch.allclose(got_std[live], std[live], rtol=1e-3, atol=1e-2)
    assert not torch.allclose(stats[0][0], stats[1][0])  # the two paintings' own targets differ
