"""Each norm kind normalizes over the axes its definition says, and behaves as documented."""
import pytest
import torch
from torch import nn

from stylenet.norms import NORM_KINDS, create_norm_layer, default_groups, norm_label


def test_unknown_norm_lists_choices():
    with pytest.raises(ValueError, match="batch, instance, layer, group, none"):
        create_norm_layer("bacth", 8)


@pytest.mark.parametrize("kind", NORM_KINDS)
def test_shape_preserved(kind):
    x = torch.randn(2, 16, 5, 7)
    assert create_norm_layer(kind, 16)(x).shape == x.shape


def test_instance_output_independent_of_batch_mates_in_train_and_eval():
    torch.manual_seed(0)
    norm = create_norm_layer("instance", 4)
    a, b = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8) * 5 + 3
    for mode in (norm.train, norm.eval):
        mode()
        alone = norm(a)
        batched = norm(torch.cat([a, b]))[:1]
        torch.testing.assert_close(alone, batched)


def test_instance_normalizes_each_image_channel():
    x = torch.randn(3, 4, 8, 8) * torch.arange(1, 5).view(1, 4, 1, 1) + 7
    y = create_norm_layer("instance", 4).eval()(x)
    torch.testing.assert_close(y.mean(dim=(2, 3)), torch.zeros(3, 4), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(dim=(2, 3), unbiased=False), torch.ones(3, 4), atol=1e-3, rtol=0)


def test_batch_train_output_depends_on_batch_mates():
    norm = create_norm_layer("batch", 4).train()
    a, b = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8) * 5 + 3
    assert (norm(a) - norm(torch.cat([a, b]))[:2]).abs().max() > 0.1


def test_batch_eval_uses_running_statistics():
    norm = create_norm_layer("batch", 4)
    norm.running_mean.fill_(2.0)
    norm.running_var.fill_(4.0)
    norm.eval()
    x = torch.randn(2, 4, 3, 3)
    torch.testing.assert_close(norm(x), (x - 2.0) / torch.sqrt(torch.tensor(4.0) + norm.eps))
    # and it is the same whatever the batch holds
    torch.testing.assert_close(norm(x[:1]), norm(torch.cat([x[:1], x * 9]))[:1])


def test_layer_norm_over_chw_per_image():
    x = torch.randn(2, 6, 4, 4) * 3 + 1
    y = create_norm_layer("layer", 6)(x)
    torch.testing.assert_close(y.mean(dim=(1, 2, 3)), torch.zeros(2), atol=1e-5, rtol=0)
    # channels are not normalized individually (that would be instance norm)
    assert y.mean(dim=(2, 3)).abs().max() > 1e-2


def test_group_norm_groups_and_limits():
    x = torch.randn(2, 16, 4, 4) * 3 + 1
    gn = create_norm_layer("group", 16)
    assert gn.num_groups == default_groups(16) == 8
    y = gn(x).view(2, 8, 2, 4, 4)
    torch.testing.assert_close(y.mean(dim=(2, 3, 4)), torch.zeros(2, 8), atol=1e-5, rtol=0)
    # G = C is instance norm, G = 1 is layer norm (all with fresh unit affine): 8 channels -> 8 groups
    torch.testing.assert_close(create_norm_layer("group", 8)(x[:, :8]), create_norm_layer("instance", 8)(x[:, :8]),
                               atol=1e-4, rtol=0)
    torch.testing.assert_close(nn.GroupNorm(1, 8)(x[:, :8]), create_norm_layer("layer", 8)(x[:, :8]))
    assert default_groups(96) == 8 and default_groups(12) == 6 and default_groups(7) == 7
    assert isinstance(create_norm_layer("none", 8), nn.Identity)


def test_registry_labels_and_order_are_one_table():
    assert NORM_KINDS == ("batch", "instance", "layer", "group", "none")
    assert [norm_label(k) for k in NORM_KINDS] == ["BN", "IN", "LN", "GN", "no norm"]
    with pytest.raises(ValueError, match="unknown norm 'bn'"):
        norm_label("bn")
