"""Vision encoder (SigLIP-style ViT) and pixel-shuffle connector: stage 1 of SmolVLA.

SmolVLM2 encodes a 512x512 image with SigLIP-B/16 into a 32x32 grid of 768-wide patch features,
then a pixel shuffle (space-to-depth) folds every 4x4 block of patches into one 768*16-wide token
and a bias-free linear layer projects it to the language model's width: 64 tokens per image.
The shuffle is what keeps the prefix short: it trades sequence length for width before the LM.

Module and parameter names follow Hugging Face's Idefics3 vision model (embeddings.patch_embedding,
encoder.layers.N.self_attn.q_proj, post_layernorm, connector.modality_projection.proj), so
pretrained SmolVLM2 / SmolVLA weights map onto ours by a prefix rename.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from edgevla.policies.common.attention import self_attention
from edgevla.policies.smolvla.config import SmolVLAConfig


def resize_with_pad(images: Tensor, width: int, height: int, pad_value: float = 0.0) -> Tensor:
    """Resize (N, C, H, W) to fit (height, width) keeping the aspect ratio, pad left and top.

    SmolVLA's preprocessing: bilinear resize by the larger of the two ratios, then pad. When the
    input already has the target size nothing is done (a shape check, static at export time).
    """
    cur_h, cur_w = images.shape[-2:]
    if (cur_h, cur_w) == (height, width):
        return images
    ratio = max(cur_w / width, cur_h / height)
    new_h, new_w = int(cur_h / ratio), int(cur_w / ratio)
    resized = F.interpolate(images, size=(new_h, new_w), mode="bilinear", align_corners=False)
    pad_h, pad_w = max(0, height - new_h), max(0, width - new_w)
    return F.pad(resized, (pad_w, 0, pad_h, 0), value=pad_value)  # (N, C, height, width)


def pixel_shuffle(x: Tensor, grid_hw: tuple[int, int], factor: int) -> Tensor:
    """Space-to-depth on a token grid: (N, gh*gw, D) -> (N, gh/f * gw/f, f*f*D).

    Output token (I, J) (row-major) holds the f x f block of input tokens at rows I*f + ii and
    columns J*f + jj, concatenated in (ii, jj) order along the channels: the same layout as
    Idefics3's pixel_shuffle for square grids, extended to rectangular ones.
    """
    n, _, d = x.shape
    gh, gw = grid_hw
    x = x.reshape(n, gh // factor, factor, gw // factor, factor, d)  # (N, I, ii, J, jj, D)
    x = x.permute(0, 1, 3, 2, 4, 5)  # (N, I, J, ii, jj, D)
    return x.reshape(n, (gh // factor) * (gw // factor), factor * factor * d)  # (N, T, f*f*D)


class VisionEmbeddings(nn.Module):
    """Non-overlapping patches (a strided conv) plus one learned position vector per patch."""

    def __init__(self, config: SmolVLAConfig):
        super().__init__()
        d, p = config.vision_hidden_size, config.vision_patch_size
        self.patch_embedding = nn.Conv2d(3, d, kernel_size=p, stride=p)
        gh, gw = config.patch_grid
        self.position_embedding = nn.Embedding(gh * gw, d)
        self.register_buffer("position_ids", torch.arange(gh * gw), persistent=False)

    def forward(self, pixels: Tensor) -> Tensor:
        if torch.onnx.is_in_onnx_export():
            x = self.patches_as_matmul(pixels)
        else:
            x = self.patch_embedding(pixels)  # (N, D, gh, gw)
            x = x.flatten(2).transpose(1, 2)  # (N, gh*gw, D), row-major patch order
        return x + self.position_embedding(self.position_ids)[None]  # (N, P, D)

    def patches_as_matmul(self, pixels: Tensor) -> Tensor:
        """The same patch embedding as one matrix product over flattened patches, the form it
        is exported in: (N, 3, H, W) -> (N, gh*gw, D). Quantised, a strided convolution becomes
        ORT's ConvInteger, a slow generic kernel; a MatMul becomes its int8 GEMM (full-size
        vision stage, int8 dynamic, two threads: 56 ms as ConvInteger)."""
        n, c, h, w = pixels.shape
        p = self.patch_embedding.kernel_size[0]
        x = pixels.reshape(n, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)  # (N,gh,gw,C,p,p)
        x = x.reshape(n, (h // p) * (w // p), c * p * p)  # (N, gh*gw, C*p*p)
        weight = self.patch_embedding.weight  # (D, C, p, p)
        return F.linear(x, weight.reshape(weight.shape[0], -1), self.patch_embedding.bias)


class VisionAttention(nn.Module):
    def __init__(self, hidden: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.q_proj = nn.Linear(hidden, hidden)
        self.k_proj = nn.Linear(hidden, hidden)
        self.v_proj = nn.Linear(hidden, hidden)
        self.out_proj = nn.Linear(hidden, hidden)

    def forward(self, x: Tensor) -> Tensor:  # (N, T, D) -> (N, T, D)
        out = self_attention(self.q_proj(x), self.k_proj(x), self.v_proj(x), self.num_heads)
        return self.out_proj(out)


class VisionMLP(nn.Module):
    def __init__(self, hidden: int, intermediate: int, act: str):
        super().__init__()
        self.fc1 = nn.Linear(hidden, intermediate)
        self.fc2 = nn.Linear(intermediate, hidden)
        self.approximate = "tanh" if act == "gelu_pytorch_tanh" else "none"

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate=self.approximate))


class VisionLayer(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)), then x + mlp(LN(x))."""

    def __init__(self, config: SmolVLAConfig):
        super().__init__()
        d, eps = config.vision_hidden_size, config.vision_layer_norm_eps
        self.layer_norm1 = nn.LayerNorm(d, eps=eps)
        self.self_attn = VisionAttention(d, config.vision_num_heads)
        self.layer_norm2 = nn.LayerNorm(d, eps=eps)
        self.mlp = VisionMLP(d, config.vision_intermediate_size, config.vision_hidden_act)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class VisionEncoderLayers(nn.Module):
    """Holds the blocks under `layers` (HF's `encoder.layers.N` naming)."""

    def __init__(self, config: SmolVLAConfig):
        super().__init__()
        self.layers = nn.ModuleList(VisionLayer(config) for _ in range(config.vision_num_layers))


class VisionTransformer(nn.Module):
    """Images in [0, 1] -> patch features (N, gh*gw, vision_hidden_size).

    Images are resized with padding to the configured size and mapped to [-1, 1] here, as SmolVLA
    does for SigLIP, so the vision stage takes the camera frame as the normaliser leaves it.
    """

    def __init__(self, config: SmolVLAConfig):
        super().__init__()
        self.image_size_hw = config.image_size_hw
        self.embeddings = VisionEmbeddings(config)
        self.encoder = VisionEncoderLayers(config)
        self.post_layernorm = nn.LayerNorm(
            config.vision_hidden_size, eps=config.vision_layer_norm_eps
        )

    def forward(self, images: Tensor) -> Tensor:
        height, width = self.image_size_hw
        x = resize_with_pad(images, width, height, pad_value=0.0) * 2.0 - 1.0  # (N, 3, H, W)
        x = self.embeddings(x)  # (N, P, D)
        for layer in self.encoder.layers:
            x = layer(x)
        return self.post_layernorm(x)


class ModalityProjection(nn.Module):
    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.proj = nn.Linear(in_features, out_features, bias=False)


class PixelShuffleConnector(nn.Module):
    """Patch features (N, gh*gw, Dv) -> image tokens (N, gh*gw/f^2, D_lm)."""

    def __init__(self, config: SmolVLAConfig):
        super().__init__()
        self.grid_hw = config.patch_grid
        self.factor = config.pixel_shuffle_factor
        in_features = config.vision_hidden_size * self.factor**2
        self.modality_projection = ModalityProjection(in_features, config.text_hidden_size)

    def forward(self, features: Tensor) -> Tensor:
        x = pixel_shuffle(features, self.grid_hw, self.factor)  # (N, T, f*f*Dv)
        return self.modality_projection.proj(x)  # (N, T, D_lm)


class VisionTokens(nn.Module):
    """SmolVLA's stage 1 for one image batch, under the policy's attribute names (vision.*,
    connector.*), so its state dict loads into a SmolVLAPolicy as it is (`edgevla pretrain`)."""

    def __init__(self, vision: nn.Module, connector: nn.Module):
        super().__init__()
        self.vision = vision
        self.connector = connector

    def forward(self, images: Tensor) -> Tensor:  # (N, 3, H, W) in [0, 1] -> (N, T, D)
        return self.connector(self.vision(images))
