"""CIFAR ResNets (He et al. 2016, section 4.2) and CIFAR-shaped data generated in code,
for examples, benchmarks and tests: nothing is downloaded.

ResNet-(6n+2): a 3x3 convolution with 16 channels, three stages of ``n`` basic blocks with
16, 32 and 64 channels (stride 2 between stages, identity shortcuts padded with zero
channels: "option A"), global average pooling and a linear layer. ResNet-20 has n = 3
(0.27 M parameters), ResNet-56 n = 9 (0.85 M).

Example:
    >>> model = cifar_resnet(20)
    >>> images, labels = cifar_like(4)
    >>> model(images).shape, sum(p.numel() for p in model.parameters())
    (torch.Size([4, 10]), 269722)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .checks import check_seed

__all__ = ["CifarResNet", "cifar_like", "cifar_resnet"]


class _BasicBlock(nn.Module):
    def __init__(self, inputs: int, outputs: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(outputs)
        self.conv2 = nn.Conv2d(outputs, outputs, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(outputs)
        self.stride, self.extra = stride, outputs - inputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x
        if self.extra:
            half = self.extra // 2
            shortcut = F.pad(shortcut, (0, 0, 0, 0, half, self.extra - half))
        return F.relu(out + shortcut)


class CifarResNet(nn.Module):
    """A ResNet for 32 x 32 images of ``depth = 6n + 2`` layers (20, 32, 44, 56, 110)."""

    def __init__(self, depth: int, num_classes: int = 10):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"expected a depth 6n + 2 (20, 32, 44, 56, 110), got {depth}")
        n = (depth - 2) // 6
        self.conv = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        blocks, channels = [], 16
        for stage, width in enumerate((16, 32, 64)):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(_BasicBlock(channels, width, stride))
                channels = width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes)`` of images ``(N, 3, 32, 32)``."""
        out = self.blocks(F.relu(self.bn(self.conv(x))))
        return self.fc(out.mean(dim=(2, 3)))


def cifar_resnet(depth: int = 20, *, seed: int = 0, num_classes: int = 10) -> CifarResNet:
    """A CIFAR ResNet of the given depth, initialized from ``seed`` (the global random
    state is left as it was), in eval mode."""
    seed = check_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CifarResNet(depth, num_classes).eval()


def cifar_like(
    num_examples: int, *, seed: int = 0, signal: float = 0.0, num_classes: int = 10
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generated CIFAR-shaped data: ``(N, 3, 32, 32)`` float32 images and labels.

    Each image is Gaussian noise plus ``signal`` times its class's template (a smooth
    random colour pattern, the same for every seed), so ``signal=0`` is pure noise with
    random labels (for timing) and ``signal`` around 0.5 a task a ResNet learns in a few
    epochs. Examples are drawn from ``seed``.
    """
    templates = torch.randn(num_classes, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    templates = F.interpolate(templates, size=(32, 32), mode="bilinear", align_corners=False)
    templates /= templates.flatten(1).std(dim=1).view(-1, 1, 1, 1)
    g = torch.Generator().manual_seed(check_seed(seed))
    labels = torch.randint(0, num_classes, (num_examples,), generator=g)
    images = torch.randn(num_examples, 3, 32, 32, generator=g) + signal * templates[labels]
    return images, labels
