"""A user's own network for the tests: plain torch, random weights, nothing pretrained."""

import torch


class SmallNet(torch.nn.Module):
    """A conv-BN-pool network: feature maps at a quarter of the resolution."""

    def __init__(self, width=8):
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(3, width, 3, padding=1), torch.nn.BatchNorm2d(width),
            torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(width, 2 * width, 3, padding=1), torch.nn.BatchNorm2d(2 * width),
            torch.nn.ReLU(), torch.nn.MaxPool2d(2))

    def forward(self, x):
        return self.body(x)
