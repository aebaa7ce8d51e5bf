"""Training loop: stochastic tail-drop, latent quantisation noise, MS-SSIM loss.

Progress is measured in iterations or wall-clock time (whichever runs out first), so
that the cosine learning-rate schedule fits a fixed time budget on any machine.
Checkpoints are written periodically and training resumes from them.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_msssim import ms_ssim
from tqdm import tqdm

from ..codec.geometry import LATENT_CHANNELS, NUM_SYMBOLS
from .data import CropSampler, list_images
from .models import MCUCoder


@dataclass
class TrainConfig:
    data: list
    out: str = "runs/default"
    decoder: str = "fast"
    iterations: int = 100_000
    minutes: float = 0.0            # 0 = no time limit
    batch: int = 16
    lr: float = 1e-3
    lr_min: float = 1e-5
    warmup: int = 200
    mse_weight: float = 1.0         # small pixel term steadies colours next to MS-SSIM
    heldout: str = ""               # npz of 224x224 frames for validation
    ckpt_every_s: float = 120.0
    seed: int = 0
    device: str = "auto"
    init: str = ""                  # start from these weights with a fresh schedule (fine-tuning)
    full_k_prob: float = 0.0        # share of samples that keep all 12 channels (high-end fine-tuning)
    encoder_model: str = ""         # train only the decoder, on this exported model's exact INT8 latents
    qat: bool = False               # quantisation-aware: train the INT8 decoder onnxruntime will run
    distill: str = ""               # checkpoint of a teacher decoder: learn its output, not the photo


class LatentRange:
    """Running per-channel latent range (EMA of batch min/max).  It sets the
    quantisation step the noise imitates; export fixes the shipped range."""

    def __init__(self, device, momentum=0.99):
        self.lo = torch.full((LATENT_CHANNELS,), -1.0, device=device)
        self.hi = torch.full((LATENT_CHANNELS,), 1.0, device=device)
        self.m = momentum
        self.started = False

    @torch.no_grad()
    def update(self, z):
        lo = z.amin(dim=(0, 2, 3)).float()
        hi = z.amax(dim=(0, 2, 3)).float()
        if not self.started:
            self.lo.copy_(lo), self.hi.copy_(hi)
            self.started = True
        else:
            self.lo.mul_(self.m).add_((1 - self.m) * lo)
            self.hi.mul_(self.m).add_((1 - self.m) * hi)

    def quantise_noise(self, z, hard=False):
        lo, hi = self.lo.view(1, -1, 1, 1), self.hi.view(1, -1, 1, 1)
        step = (hi - lo) / (NUM_SYMBOLS - 1)
        z = torch.maximum(torch.minimum(z, hi), lo)
        if hard:
            return lo + torch.round((z - lo) / step) * step
        return z + (torch.rand_like(z) - 0.5) * step


def tail_drop(z, k):
    """Zero channels >= k (per sample): the decoder learns to use any prefix."""
    idx = torch.arange(LATENT_CHANNELS, device=z.device).view(1, -1, 1, 1)
    return z * (idx < k.view(-1, 1, 1, 1)).to(z.dtype)


class ExactLatents:
    """The shipped encoder as the firmware runs it: INT8 reference, 6-bit symbols,
    dequantised exactly as the decoder receives them at run time.  Training the decoder
    on these (encoder frozen) removes the train/run mismatch of quantisation noise and
    leaves the model id, the firmware and every bitstream unchanged."""

    def __init__(self, model_dir: str, device):
        from ..codec.model import EncoderModel

        self.model = EncoderModel.load(model_dir)
        self.device = device
        self.channels = list(range(LATENT_CHANNELS))

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """float frames in 0..1 -> (the same frames on the uint8 grid, latents)."""
        u8 = (x * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        q = self.model.quantizer
        z = np.stack([q.dequantize(self.model.symbols(f), self.channels) for f in u8])
        x8 = torch.from_numpy(u8).permute(0, 3, 1, 2).float().div(255)
        return x8.to(self.device), torch.from_numpy(z).to(self.device)


def pick_device(name):
    if name != "auto":
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def qat_calibration(model, exact: ExactLatents, data, n: int = 64) -> dict:
    """onnxruntime's activation ranges of the FP32 decoder on exact latents of training
    crops, every k equally often; fixed for the whole quantisation-aware training."""
    from .export import calibration_frames
    from .qat import calibrate

    x = torch.from_numpy(calibration_frames(data, n, seed=7)).permute(0, 3, 1, 2).float().div(255)
    z = exact(x)[1].cpu()
    z = tail_drop(z, torch.arange(n) % LATENT_CHANNELS + 1)
    return calibrate(model.decoder.cpu(), z.numpy())


@torch.no_grad()
def validate(model, rng: LatentRange, frames: np.ndarray, device, ks=(1, 3, 6, 9, 12),
             exact: ExactLatents | None = None, decode=None) -> dict:
    model.eval()
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255).to(device)
    res = {}
    for k in ks:
        vals = []
        for i in range(0, len(x), 16):
            xb = x[i:i + 16]
            z = exact(xb)[1] if exact else rng.quantise_noise(model.encoder(xb), hard=True)
            z = tail_drop(z, torch.full((len(xb),), k, device=device))
            y = (decode or model.decoder)(z).float().clamp(0, 1)
            vals.append(ms_ssim(y, xb, data_range=1.0, size_average=False))
        res[k] = float(torch.cat(vals).mean())
    model.train()
    return res


def save_checkpoint(path, model, opt, rng, step, elapsed, cfg, history, encoder_model_id=None, qparams=None):
    tmp = path + ".tmp"
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict() if opt else None,
                "latent_lo": rng.lo.cpu(), "latent_hi": rng.hi.cpu(), "step": step, "elapsed": elapsed,
                "config": asdict(cfg), "history": history, "encoder_model_id": encoder_model_id,
                "qat_qparams": qparams}, tmp)
    os.replace(tmp, path)


def train(cfg: TrainConfig) -> str:
    torch.manual_seed(cfg.seed)
    device = pick_device(cfg.device)
    os.makedirs(cfg.out, exist_ok=True)
    ckpt_path = os.path.join(cfg.out, "checkpoint.pt")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    model = MCUCoder(cfg.decoder).to(device)
    exact = ExactLatents(cfg.encoder_model, device) if cfg.encoder_model else None
    eid = exact.model.model_id if exact else None
    if exact:
        model.encoder.requires_grad_(False)
    opt = torch.optim.Adam(model.decoder.parameters() if exact else model.parameters(), lr=cfg.lr)
    rng = LatentRange(device)
    step, elapsed, history = 0, 0.0, []
    resumed_qparams = None
    if cfg.init and not os.path.exists(ckpt_path):
        ck = torch.load(cfg.init, map_location=device)
        model.load_state_dict(ck["model"])
        rng.lo.copy_(ck["latent_lo"].to(device)), rng.hi.copy_(ck["latent_hi"].to(device))
        rng.started = True
        history = ck.get("history", [])
        print(f"fine-tuning from {cfg.init}")
    if os.path.exists(ckpt_path):
        ck = torch.load(ckpt_path, map_location=device)
        model.load_state_dict(ck["model"])
        if ck.get("optimizer"):
            opt.load_state_dict(ck["optimizer"])
        rng.lo.copy_(ck["latent_lo"].to(device)), rng.hi.copy_(ck["latent_hi"].to(device))
        rng.started = True
        step, elapsed, history = ck["step"], ck["elapsed"], ck.get("history", [])
        resumed_qparams = ck.get("qat_qparams")
        print(f"resumed from {ckpt_path} at step {step} ({elapsed / 60:.1f} min trained)")

    qparams, decode = None, None
    if cfg.qat:
        if not exact:
            raise SystemExit("--qat trains the INT8 decoder of a shipped encoder: give --decoder-only MODEL_DIR")
        from .qat import QatForward
        qparams = resumed_qparams or qat_calibration(model, exact, cfg.data)
        model.to(device)
        qf = QatForward(qparams)
        decode = lambda z: qf(model.decoder, z)  # noqa: E731
        print(f"quantisation-aware: {len(qparams)} activation tensors on fixed onnxruntime grids")

    teacher = None
    if cfg.distill:
        if not exact:
            raise SystemExit("--distill needs --decoder-only MODEL_DIR (the teacher decodes the same latents)")
        teacher = MCUCoder(cfg.decoder).to(device)
        teacher.load_state_dict(torch.load(cfg.distill, map_location=device)["model"])
        teacher = teacher.decoder.eval().requires_grad_(False)
        print(f"distilling from the decoder of {cfg.distill}")

    paths = list_images(cfg.data)
    sampler = CropSampler(paths, device, seed=cfg.seed + step)
    frames = np.load(cfg.heldout)["frames"] if cfg.heldout else None
    print(f"training on {len(paths)} photos, device {device}, decoder {cfg.decoder}, "
          f"{sum(p.numel() for p in model.decoder.parameters()):,} decoder parameters"
          + (f"; decoder only, on the exact latents of model {exact.model.model_id:#010x}" if exact else ""))
    use_amp = device.type == "cuda"

    def progress():
        p_it = step / cfg.iterations
        p_t = elapsed / (cfg.minutes * 60) if cfg.minutes > 0 else 0.0
        return max(p_it, p_t)

    bar = tqdm(total=100, unit="%", bar_format="{l_bar}{bar}| {n:.1f}/{total}% [{elapsed}<{remaining}{postfix}]")
    t_last, t_ckpt, imgs_since, t_rate = time.time(), time.time(), 0, time.time()
    ema_loss = None
    model.train()
    while progress() < 1.0:
        p = progress()
        lr = cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * p))
        lr *= min(1.0, (step + 1) / cfg.warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        x = sampler.batch(cfg.batch)
        k = torch.randint(1, LATENT_CHANNELS + 1, (cfg.batch,), device=device)
        if cfg.full_k_prob > 0:
            k = torch.where(torch.rand(cfg.batch, device=device) < cfg.full_k_prob, LATENT_CHANNELS, k)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            if exact:
                x, z = exact(x)
                zq = tail_drop(z, k)
            else:
                z = model.encoder(x).float()
                rng.update(z)
                zq = tail_drop(rng.quantise_noise(z), k)
            y = (decode or model.decoder)(zq)
            if teacher is not None:     # the target is the teacher's picture of the same latents
                with torch.no_grad():
                    x = teacher(zq).float().clamp(0, 1)
        y = y.float()
        loss = 1 - ms_ssim(y, x, data_range=1.0) + cfg.mse_weight * F.mse_loss(y, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        imgs_since += cfg.batch
        now = time.time()
        elapsed += now - t_last
        t_last = now
        if step % 20 == 0:
            lv = float(loss.detach())
            ema_loss = lv if ema_loss is None else 0.9 * ema_loss + 0.1 * lv
            rate = imgs_since / max(1e-9, now - t_rate)
            imgs_since, t_rate = 0, now
            bar.n = round(100 * progress(), 1)
            bar.set_postfix(step=step, loss=f"{ema_loss:.4f}", lr=f"{lr:.1e}", img_s=f"{rate:.0f}")
        if now - t_ckpt > cfg.ckpt_every_s or progress() >= 1.0:
            entry = {"step": step, "minutes": elapsed / 60, "loss": ema_loss}
            if frames is not None:
                entry["val_ms_ssim"] = validate(model, rng, frames, device, exact=exact, decode=decode)
                tqdm.write(json.dumps(entry))
            history.append(entry)
            save_checkpoint(ckpt_path, model, opt, rng, step, elapsed, cfg, history, eid, qparams)
            save_checkpoint(os.path.join(cfg.out, "weights.pt"), model, None, rng, step, elapsed, cfg, history, eid,
                            qparams)
            t_ckpt = time.time()
            t_last = t_ckpt  # time spent validating is not training time
    bar.close()
    save_checkpoint(ckpt_path, model, opt, rng, step, elapsed, cfg, history, eid, qparams)
    weights = os.path.join(cfg.out, "weights.pt")
    save_checkpoint(weights, model, None, rng, step, elapsed, cfg, history, eid, qparams)
    print(f"done: {step} iterations, {elapsed / 60:.1f} min; weights in {weights}")
    return weights
