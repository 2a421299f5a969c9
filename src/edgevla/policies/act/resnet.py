"""ResNet-18/34 with torchvision's parameter names and frozen batch norm, without torchvision.

ACT's image encoder is torchvision's ResNet cut after layer4, with FrozenBatchNorm2d (batch
statistics and affine terms are buffers, never trained). LeRobot checkpoints name the weights
after torchvision's module tree (conv1, bn1, layer1.0.conv1, layer2.0.downsample.0, ...), so we
rebuild that tree here and any torchvision or LeRobot state dict loads without renaming.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import Tensor, nn

# Blocks per stage (BasicBlock only: Bottleneck ResNets-50+ are not needed on the edge).
RESNET_LAYERS: dict[str, tuple[int, int, int, int]] = {
    "resnet10": (1, 1, 1, 1),
    "resnet18": (2, 2, 2, 2),
    "resnet34": (3, 4, 6, 3),
}
STAGE_WIDTHS = (64, 128, 256, 512)
_NAME = re.compile(r"^(resnet(?:10|18|34))(?:-w(\d+))?$")


def parse_backbone(name: str) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
    """(blocks per stage, widths per stage) for "resnet18", "resnet34", "resnet10", and narrow
    edge variants "resnet18-w32" (stage widths 32/64/128/256: a quarter of the FLOPs, same
    parameter names). torchvision and LeRobot only know the plain names."""
    m = _NAME.match(name)
    if not m:
        raise ValueError(
            f"unknown ResNet {name!r}; use resnet10, resnet18 or resnet34, optionally narrowed "
            "with -w<base width>, e.g. resnet18-w32"
        )
    base = int(m.group(2)) if m.group(2) else STAGE_WIDTHS[0]
    if not 8 <= base <= 128:
        raise ValueError(f"{name}: base width {base} must be between 8 and 128")
    return RESNET_LAYERS[m.group(1)], (base, 2 * base, 4 * base, 8 * base)


class FrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics and affine terms, as torchvision.ops.FrozenBatchNorm2d.

    Small training batches make batch statistics noisy, so DETR and ACT freeze them at their
    (ImageNet) values. All four tensors are buffers: saved, moved with .to(), never optimised.
    """

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        # A regular BatchNorm2d state dict also has num_batches_tracked; it means nothing here.
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W)
        scale = self.weight * (self.running_var + self.eps).rsqrt()  # (C,)
        shift = self.bias - self.running_mean * scale  # (C,)
        return x * scale.reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


def _conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection; a 1x1 conv matches shapes when they change."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = _conv3x3(c_in, c_out, stride)
        self.bn1 = FrozenBatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(c_out, c_out)
        self.bn2 = FrozenBatchNorm2d(c_out)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, c_out, kernel_size=1, stride=stride, bias=False),
                FrozenBatchNorm2d(c_out),
            )

    def forward(self, x: Tensor) -> Tensor:  # (B, C_in, H, W) -> (B, C_out, H/s, W/s)
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """torchvision-compatible ResNet-18/34 trunk returning the layer4 feature map.

    With `num_classes=None` (ACT's use) there is no avgpool/fc, matching the module LeRobot keeps
    (IntermediateLayerGetter up to layer4); with a number of classes the fc head exists so a full
    torchvision classifier state dict loads strictly.
    """

    def __init__(self, name: str = "resnet18", num_classes: int | None = None):
        super().__init__()
        layers, widths = parse_backbone(name)
        self.conv1 = nn.Conv2d(3, widths[0], kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = FrozenBatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        c_in = widths[0]
        for i, (n_blocks, width) in enumerate(zip(layers, widths, strict=True)):
            stride = 1 if i == 0 else 2
            blocks = [BasicBlock(c_in, width, stride)]
            blocks += [BasicBlock(width, width) for _ in range(n_blocks - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            c_in = width
        self.out_channels = c_in
        self.fc = nn.Linear(c_in, num_classes) if num_classes is not None else None
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        # torchvision's initialisation: He (fan-out) for convs; frozen BN starts as identity.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) -> layer4 map (B, 512, ~H/32, ~W/32); logits (B, classes) if fc exists."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, 64, H/4, W/4)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, 512, H/32, W/32)
        if self.fc is None:
            return x
        return self.fc(torch.flatten(x.mean(dim=(2, 3), keepdim=True), 1))  # (B, classes)


def load_torchvision_weights(backbone: ResNet, path: str | Path) -> None:
    """Load a torchvision ResNet state dict file (.pth or .safetensors) into `backbone`, strictly.

    The fc head is dropped when the backbone has none (ACT). Use this to start ACT from ImageNet
    weights, since we never download them (LeRobot's pretrained_backbone_weights).
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    if backbone.fc is None:
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    try:
        missing, unexpected = backbone.load_state_dict(state, strict=False)
    except RuntimeError as e:  # same names, other shapes: a different width or depth
        raise ValueError(
            f"{path} does not fit this ResNet ({e}); was it saved for another backbone "
            "(e.g. resnet18 weights for resnet18-w32)?"
        ) from e
    if missing or unexpected:
        raise ValueError(
            f"{path} does not match this ResNet: missing {missing}, unexpected {unexpected}; "
            "is it a torchvision resnet18/resnet34 state dict of the same depth?"
        )


def with_trainable_batch_norm(backbone: ResNet) -> ResNet:
    """Swap every FrozenBatchNorm2d for a training nn.BatchNorm2d holding the same values, in place.

    For pre-training the trunk from scratch (edgevla pretrain): with ordinary batch norm a
    ResNet learns quickly from large batches; its state dict then has torchvision's layout, and
    its running statistics become ACT's frozen ones when loaded with load_torchvision_weights.
    """
    for module in list(backbone.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, FrozenBatchNorm2d):
                bn = nn.BatchNorm2d(child.weight.shape[0], eps=child.eps)
                with torch.no_grad():
                    bn.weight.copy_(child.weight)
                    bn.bias.copy_(child.bias)
                    bn.running_mean.copy_(child.running_mean)
                    bn.running_var.copy_(child.running_var)
                setattr(module, child_name, bn)
    return backbone
