"""Torch networks: the paper's encoder, a fast CPU decoder and the paper's decoder.

Training-only module: nothing at run time imports it (run time uses the INT8
numpy encoder and the ONNX decoders exported from these networks).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..codec.geometry import LATENT_CHANNELS


class Encoder(nn.Module):
    """The paper's 10,524-parameter encoder: 224x224x3 -> 12x28x28."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 7, stride=2, padding=3)
        self.conv2 = nn.Conv2d(16, 16, 5, stride=4, padding=1)
        self.conv3 = nn.Conv2d(16, LATENT_CHANNELS, 3, stride=1, padding=1)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        return self.conv3(x)  # no activation: keep the signed range for quantisation


class _ResBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x):
        return x + self.conv2(F.relu(self.conv1(x)))


class _Up(nn.Module):
    """x2 upsampling by sub-pixel convolution (cheap and artefact-free on CPU)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout * 4, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x):
        # ReLU before the shuffle (the same function): the INT8 decoder fuses it into the
        # convolution and shuffles uint8 instead of float
        return self.shuffle(F.relu(self.conv(x)))


class FastDecoder(nn.Module):
    """Default decoder: pixel-shuffle CNN sized for real-time decoding on 2 CPU cores."""

    def __init__(self, width=(160, 96, 48, 24), blocks=(4, 2, 1, 1)):
        super().__init__()
        w28, w56, w112, w224 = width
        self.head = nn.Conv2d(LATENT_CHANNELS, w28, 3, padding=1)
        self.stage28 = nn.Sequential(*[_ResBlock(w28) for _ in range(blocks[0])])
        self.up56 = _Up(w28, w56)
        self.stage56 = nn.Sequential(*[_ResBlock(w56) for _ in range(blocks[1])])
        self.up112 = _Up(w56, w112)
        self.stage112 = nn.Sequential(*[_ResBlock(w112) for _ in range(blocks[2])])
        self.up224 = _Up(w112, w224)
        self.stage224 = nn.Sequential(*[_ResBlock(w224) for _ in range(blocks[3])])
        self.tail = nn.Conv2d(w224, 3, 3, padding=1)

    def forward(self, z):
        x = F.relu(self.head(z))
        x = self.stage28(x)
        x = self.stage56(self.up56(x))
        x = self.stage112(self.up112(x))
        x = self.stage224(self.up224(x))
        return torch.sigmoid(self.tail(x))


# --- The paper's decoder (layout of the authors' published state_dict) ---------------

def _conv1x1(cin, cout):
    return nn.Conv2d(cin, cout, 1)


def _conv3x3(cin, cout):
    return nn.Conv2d(cin, cout, 3, padding=1)


def _deconv(cin, cout):
    return nn.ConvTranspose2d(cin, cout, 5, stride=2, padding=2, output_padding=1)


class _ResidualUnit(nn.Module):
    def __init__(self, n: int):
        super().__init__()
        self.conv = nn.Sequential(_conv1x1(n, n // 2), nn.ReLU(), _conv3x3(n // 2, n // 2), nn.ReLU(),
                                  _conv1x1(n // 2, n))

    def forward(self, x):
        return F.relu(x + self.conv(x))


class AttentionBlock(nn.Module):
    """Simplified attention (Cheng et al. 2020): trunk * sigmoid(mask) + identity."""

    def __init__(self, n: int):
        super().__init__()
        self.conv_a = nn.Sequential(_ResidualUnit(n), _ResidualUnit(n), _ResidualUnit(n))
        self.conv_b = nn.Sequential(_ResidualUnit(n), _ResidualUnit(n), _ResidualUnit(n), _conv1x1(n, n))

    def forward(self, x):
        return x + self.conv_a(x) * torch.sigmoid(self.conv_b(x))


class ResidualBottleneckBlock(nn.Module):
    def __init__(self, n: int):
        super().__init__()
        mid = n // 2
        self.conv1 = _conv1x1(n, mid)
        self.conv2 = _conv3x3(mid, mid)
        self.conv3 = _conv1x1(mid, n)

    def forward(self, x):
        return x + self.conv3(F.relu(self.conv2(F.relu(self.conv1(x)))))


class PaperDecoder(nn.Module):
    """The authors' decoder (N=196): attention + residual bottleneck blocks, three x2 deconvs.

    Parameter names follow the authors' `decoder.dec.<i>...` layout so that their
    published state_dict loads with `load_paper_state_dict`.
    """

    def __init__(self, n: int = 196):
        super().__init__()
        rbb = lambda: ResidualBottleneckBlock(n)  # noqa: E731
        layers = [AttentionBlock(LATENT_CHANNELS), _deconv(LATENT_CHANNELS, n)]
        layers += [rbb(), rbb(), rbb(), AttentionBlock(n), rbb(), rbb(), rbb(), AttentionBlock(n),
                   rbb(), rbb(), rbb(), _deconv(n, n)]
        layers += [AttentionBlock(n), rbb(), rbb(), rbb(), AttentionBlock(n), rbb(), rbb(), rbb(),
                   AttentionBlock(n), rbb(), rbb(), rbb(), _deconv(n, 3)]
        self.dec = nn.Sequential(*layers)

    def forward(self, z):
        return torch.sigmoid(self.dec(z))


DECODERS = {"fast": FastDecoder, "paper": PaperDecoder}


class MCUCoder(nn.Module):
    def __init__(self, decoder: str = "fast"):
        super().__init__()
        self.encoder = Encoder()
        self.decoder = DECODERS[decoder]()
        self.decoder_name = decoder


def load_paper_state_dict(model: MCUCoder, state: dict) -> None:
    """Load the authors' checkpoint (Lightning `state_dict` or a bare one) into `model`."""
    if "state_dict" in state:
        state = state["state_dict"]
    state = {k[len("model."):] if k.startswith("model.") else k: v for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    wanted = [k for k in missing if not k.startswith("encoder.")] + unexpected
    if wanted:
        raise ValueError(f"checkpoint does not match the paper layout: missing/unexpected {wanted[:5]}...")
