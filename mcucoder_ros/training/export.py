"""Export a trained checkpoint into a model folder.

Post-training INT8 quantisation (TFLite scheme: per-channel symmetric weights, int32
bias, asymmetric int8 activations calibrated by min/max on training photos), fixed
latent ranges, entropy tables fitted on training photos, decoder ONNX, C header.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..codec.c_header import write_c_header
from ..codec.entropy import NUM_CONTEXTS, PROB_BITS, fit_tables
from ..codec.geometry import LATENT_CHANNELS, LATENT_SIZE
from ..codec.int8_encoder import INPUT_ZERO_POINT, ConvLayer, Int8Encoder, quantize_multiplier
from ..codec.latent_quant import LatentQuantizer
from ..codec.model import DECODER_FILE, ENCODER_FILE, model_id_of
from .data import CropSampler, list_images
from .models import MCUCoder


def _act_qparams(lo: float, hi: float) -> tuple[float, int]:
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = (hi - lo) / 255.0
    zp = int(np.clip(round(-128 - lo / scale), -128, 127))
    return scale, zp


def _quant_layer(conv: torch.nn.Conv2d, s_in: float, zp_in: int, s_out, zp_out, relu: bool) -> ConvLayer:
    w = conv.weight.detach().double().numpy()
    b = conv.bias.detach().double().numpy()
    s_w = np.maximum(np.abs(w).reshape(w.shape[0], -1).max(1), 1e-12) / 127.0
    wq = np.clip(np.round(w / s_w[:, None, None, None]), -127, 127).astype(np.int8)
    bq = np.round(b / (s_in * s_w)).astype(np.int32)
    s_out = np.broadcast_to(np.asarray(s_out, np.float64), s_w.shape)
    mult, shift = zip(*(quantize_multiplier(s_in * sw / so) for sw, so in zip(s_w, s_out)))
    zp_out = np.broadcast_to(np.asarray(zp_out, np.int32), s_w.shape).copy()
    return ConvLayer(wq, bq, np.array(mult, np.int32), np.array(shift, np.int32), conv.stride[0], conv.padding[0],
                     zp_in, zp_out, relu)


def calibration_frames(data, n: int, seed: int = 1) -> np.ndarray:
    sampler = CropSampler(list_images(data), "cpu", seed=seed)
    out = []
    for _ in range(0, n, 32):
        x = sampler.batch(32)
        out.append((x.permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8))
    return np.concatenate(out)[:n]


@torch.no_grad()
def quantize_encoder(model: MCUCoder, frames: np.ndarray, range_percentile: float = 0.01) -> Int8Encoder:
    """Activation ranges from robust percentiles of the calibration activations
    (measured: +0.001 MS-SSIM at k=12 over plain min/max)."""
    enc = model.encoder.eval()
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    a1 = F.relu(enc.conv1(x))
    a2 = F.relu(enc.conv2(a1))
    z = enc.conv3(a2)
    s_in, zp_in = 1 / 255.0, INPUT_ZERO_POINT
    s1, zp1 = _act_qparams(0.0, float(np.percentile(a1.numpy(), 100 - range_percentile)))
    s2, zp2 = _act_qparams(0.0, float(np.percentile(a2.numpy(), 100 - range_percentile)))
    # latent: per-channel range (robust percentiles), so every channel uses all 8 bits
    zc = z.transpose(0, 1).reshape(LATENT_CHANNELS, -1).numpy()
    lo = np.percentile(zc, range_percentile, axis=1)
    hi = np.percentile(zc, 100 - range_percentile, axis=1)
    s3 = (hi - lo) / 255.0
    zp3 = np.clip(np.round(-128 - lo / s3), -128, 127).astype(np.int32)
    layers = [_quant_layer(enc.conv1, s_in, zp_in, s1, zp1, True), _quant_layer(enc.conv2, s1, zp1, s2, zp2, True),
              _quant_layer(enc.conv3, s2, zp2, s3, zp3, False)]
    return Int8Encoder(layers, s3, zp3)


def export(checkpoint: str, data, out_dir: str, calib_frames: int = 256, table_frames: int = 768,
           range_percentile: float = 0.01) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ck = torch.load(checkpoint, map_location="cpu")
    arch = ck["config"].get("decoder", "fast")
    model = MCUCoder(arch)
    model.load_state_dict(ck["model"])
    model.eval()
    if ck.get("encoder_model_id") is not None:
        return _export_decoder_only(ck, model, arch, out)

    print("calibrating INT8 encoder ...")
    frames = calibration_frames(data, max(calib_frames, table_frames))
    int8 = quantize_encoder(model, frames[:calib_frames], range_percentile)
    latents = np.stack([int8(f) for f in tqdm(frames, desc="int8 latents", unit="frame")])
    lo = np.full(LATENT_CHANNELS, -128, np.int32)
    hi = np.full(LATENT_CHANNELS, 127, np.int32)
    quant = LatentQuantizer(lo, hi, int8.latent_scale, int8.latent_zero_point)
    zero = int8.latent_zero_point.astype(np.int8).reshape(LATENT_CHANNELS, 1, 1)
    edges = quant.quantize(zero).reshape(-1).astype(np.int32)     # the symbol of a float zero
    symbols = np.stack([quant.quantize(z) for z in latents[:table_frames]])
    print("fitting entropy tables ...")
    freqs = fit_tables(symbols, edges)
    arrays = int8.to_arrays()
    arrays.update(latent_lo=lo, latent_hi=hi, edge_symbols=edges, freqs=freqs.astype(np.uint16),
                  prob_bits=np.int32(PROB_BITS))
    arrays["model_id"] = np.uint32(model_id_of(arrays))
    np.savez(out / ENCODER_FILE, **arrays)

    _export_onnx(model, out / DECODER_FILE.format(arch=arch))
    write_c_header(arrays, out / "encoder_int8.h")
    meta = {"model_id": f"{int(arrays['model_id']):#010x}", "decoder": arch, "iterations": ck["step"],
            "training_minutes": round(ck["elapsed"] / 60, 1), "encoder_parameters": int8.num_parameters,
            "decoder_parameters": sum(p.numel() for p in model.decoder.parameters()),
            "latent_lo": lo.tolist(), "latent_hi": hi.tolist(), "contexts": NUM_CONTEXTS,
            "training_history": ck.get("history", [])[-3:]}
    (out / "export.json").write_text(json.dumps(meta, indent=2))
    print(f"exported model {meta['model_id']} to {out}")
    return meta


def _export_onnx(model: MCUCoder, path: Path) -> None:
    dummy = torch.zeros(1, LATENT_CHANNELS, LATENT_SIZE, LATENT_SIZE)
    torch.onnx.export(model.decoder, dummy, str(path), input_names=["latent"], output_names=["image"],
                      opset_version=17, dynamo=False)


def _export_decoder_only(ck: dict, model: MCUCoder, arch: str, out: Path) -> dict:
    """A decoder fine-tuned on a shipped encoder (`train --decoder-only`): the encoder
    files are kept byte for byte; only the decoder ONNX and export.json change."""
    src = Path(ck["config"]["encoder_model"])
    want = int(ck["encoder_model_id"])
    for d in (out, src):
        if (d / ENCODER_FILE).exists():
            with np.load(d / ENCODER_FILE) as z:
                have = int(z["model_id"])
            if have == want:
                break
    else:
        raise SystemExit(f"decoder-only checkpoint needs the encoder of model {want:#010x} "
                         f"(not found in {out} or {src})")
    if d != out:
        for name in (ENCODER_FILE, "encoder_int8.h"):
            shutil.copyfile(d / name, out / name)
    meta_path = out / "export.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {"model_id": f"{want:#010x}"}
    if ck.get("qat_qparams"):
        # quantisation-aware checkpoint: only the INT8 decoder is written; the FP32 one stays
        from .qat import export_int8
        name = f"{arch}_int8"
        export_int8(model.decoder, ck["qat_qparams"], out / DECODER_FILE.format(arch=name))
        meta.setdefault("int8_decoders", {})[name] = {
            "from": arch, "iterations": ck["step"], "training_minutes": round(ck["elapsed"] / 60, 1),
            "batch": ck["config"]["batch"], "lr": ck["config"]["lr"], "full_k_prob": ck["config"]["full_k_prob"],
            "activation_tensors": len(ck["qat_qparams"]), "training_history": ck.get("history", [])[-3:]}
        meta_path.write_text(json.dumps(meta, indent=2))
        print(f"exported INT8 decoder {name} for model {want:#010x} to {out} (encoder and FP32 decoder unchanged)")
        return meta
    _export_onnx(model, out / DECODER_FILE.format(arch=arch))
    meta.update({"decoder": arch, "decoder_parameters": sum(p.numel() for p in model.decoder.parameters()),
                 "decoder_finetune": {"iterations": ck["step"], "training_minutes": round(ck["elapsed"] / 60, 1),
                                      "batch": ck["config"]["batch"], "lr": ck["config"]["lr"],
                                      "full_k_prob": ck["config"]["full_k_prob"],
                                      "training_history": ck.get("history", [])[-3:]}})
    meta_path.write_text(json.dumps(meta, indent=2))
    print(f"exported decoder for model {want:#010x} to {out} (encoder unchanged)")
    return meta
