"""CIFAR-style ResNets (He et al. 2016, section 4.2) and CIFAR-shaped generated data,
for the benchmarks only.

ResNet-(6n+2): a 3x3 conv with 16 channels, three stages of ``n`` basic blocks with 16,
32 and 64 channels (stride 2 between stages, identity shortcuts padded with zero
channels, "option A"), global average pooling and a linear layer. ResNet-20 has n = 3
(0.27 M parameters), ResNet-56 has n = 9 (0.85 M).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
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
    def __init__(self, depth: int, num_classes: int = 10):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"depth must be 6n + 2 (20, 32, 44, 56, 110), got {depth}")
        n = (depth - 2) // 6
        self.conv = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        blocks, channels = [], 16
        for stage, width in enumerate((16, 32, 64)):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlock(channels, width, stride))
                channels = width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.blocks(F.relu(self.bn(self.conv(x))))
        return self.fc(out.mean(dim=(2, 3)))


def resnet(depth: int, *, seed: int = 0) -> nn.Module:
    """A CIFAR ResNet of the given depth, seeded, in eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CifarResNet(depth).eval()


def cifar_like(num_examples: int, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Generated CIFAR-shaped data: ``(N, 3, 32, 32)`` Gaussian images, labels 0-9."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(num_examples, 3, 32, 32, generator=g)
    return images, torch.randint(0, 10, (num_examples,), generator=g)
