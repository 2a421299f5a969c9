"""Our ResNet: torchvision's names, FrozenBatchNorm2d semantics, torchvision weight files."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgevla.policies.act.resnet import (
    FrozenBatchNorm2d,
    ResNet,
    load_torchvision_weights,
    with_trainable_batch_norm,
)


def test_frozen_batchnorm_matches_eval_batchnorm():
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(5).eval()
    with torch.no_grad():
        for t in (bn.weight, bn.bias, bn.running_mean):
            t.normal_()
        bn.running_var.uniform_(0.5, 2.0)
    frozen = FrozenBatchNorm2d(5)
    frozen.load_state_dict(bn.state_dict())  # num_batches_tracked is dropped
    assert [n for n, _ in frozen.named_parameters()] == []
    x = torch.randn(2, 5, 3, 4)
    torch.testing.assert_close(frozen(x), bn(x), rtol=1e-5, atol=1e-6)


def test_names_and_feature_map():
    names = list(ResNet("resnet18", num_classes=1000).state_dict())
    assert names[:5] == [
        "conv1.weight",
        "bn1.weight",
        "bn1.bias",
        "bn1.running_mean",
        "bn1.running_var",
    ]
    assert "layer4.0.downsample.0.weight" in names and "layer4.0.downsample.1.running_var" in names
    assert names[-2:] == ["fc.weight", "fc.bias"]
    assert len(names) == 102
    trunk = ResNet("resnet34")
    assert not any(n.startswith("fc.") for n in trunk.state_dict())
    assert len(trunk.layer3) == 6
    with torch.no_grad():
        assert trunk(torch.randn(1, 3, 96, 128)).shape == (1, 512, 3, 4)


def test_load_torchvision_weights(tmp_path):
    # A torchvision-style file: regular BatchNorm (with num_batches_tracked) and an fc head.
    state = ResNet("resnet18", num_classes=10).state_dict()
    state = {k: torch.randn_like(v) for k, v in state.items()}
    state["bn1.num_batches_tracked"] = torch.tensor(7)
    torch.save(state, tmp_path / "resnet18.pth")
    trunk = ResNet("resnet18")
    load_torchvision_weights(trunk, tmp_path / "resnet18.pth")
    torch.testing.assert_close(trunk.layer2[0].conv1.weight, state["layer2.0.conv1.weight"])
    with pytest.raises(ValueError, match="missing"):
        load_torchvision_weights(ResNet("resnet34"), tmp_path / "resnet18.pth")


def test_trunk_trained_with_batch_norm_freezes_into_the_same_function(tmp_path):
    """edgevla pretrain trains with ordinary batch norm; loading its state dict into ACT's
    frozen trunk must compute what the trained trunk computes in eval mode."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    trained = with_trainable_batch_norm(ResNet("resnet10-w8"))
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in trained.modules())
    opt = torch.optim.SGD(trained.parameters(), lr=0.1)
    for _ in range(3):  # moves the weights, the affine terms and the running statistics
        loss = trained(torch.rand(4, 3, 64, 80)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    trained.eval()
    save_file(
        {k: v.contiguous() for k, v in trained.state_dict().items()}, tmp_path / "t.safetensors"
    )
    frozen = ResNet("resnet10-w8")
    load_torchvision_weights(frozen, tmp_path / "t.safetensors")
    x = torch.rand(2, 3, 64, 80)
    with torch.no_grad():
        torch.testing.assert_close(frozen(x), trained(x), rtol=1e-5, atol=1e-5)
    assert frozen.bn1.running_mean.abs().sum() > 0  # the statistics came along


def test_weights_of_another_width_are_refused(tmp_path):
    torch.save(ResNet("resnet10-w16").state_dict(), tmp_path / "w16.pth")
    with pytest.raises(ValueError, match="another backbone"):
        load_torchvision_weights(ResNet("resnet10-w8"), tmp_path / "w16.pth")
