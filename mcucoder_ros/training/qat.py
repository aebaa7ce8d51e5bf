"""INT8 decoder: quantisation-aware fine-tuning that matches onnxruntime's QDQ arithmetic.

The route (docs/training.md):
1. the FP32 decoder is exported to ONNX and quantised by onnxruntime's own
   `quantize_static` (QDQ format, per-channel symmetric int8 weights, uint8
   activations, percentile calibration on exact latents of training crops);
2. the activation (scale, zero point) of every quantised tensor is read back from that
   model and fixed; training then fake-quantises the same tensors with the same
   parameters, and the weights per output channel with onnxruntime's rule
   (max |w| / 127), so the network learns the grid it will run on;
3. export quantises the fine-tuned weights with `quantize_static` again, with every
   activation pinned to the trained (scale, zero point) through TensorQuantOverrides.

The first and the last convolution stay in FP32 (46 M of 5,050 M MACs): the latent
channels have ranges far apart (one uint8 grid for all twelve would be coarser than
some channels' own 6-bit step), and the output grid is where 8 bits hurt most.  The
residual trunk stays in float too: every convolution reads it on a uint8 grid, but the
sums are carried in float (measured on held-out photos before fine-tuning: k = 12
MS-SSIM 0.9516 with uint8 sums, 0.9556 with float ones, FP32 0.9597; about 10 % of
the INT8 speed).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..codec.geometry import LATENT_CHANNELS, LATENT_SIZE

KEEP_FP32 = ["/head/Conv", "/tail/Conv"]    # ONNX node names left in float
OP_TYPES = ["Conv", "Relu"]                 # residual additions stay in float (float_trunk)


def export_fp32(decoder: torch.nn.Module, path: str | Path) -> None:
    dummy = torch.zeros(1, LATENT_CHANNELS, LATENT_SIZE, LATENT_SIZE)
    torch.onnx.export(decoder.eval(), dummy, str(path), input_names=["latent"], output_names=["image"],
                      opset_version=17, dynamo=False)


class _Latents:
    """onnxruntime CalibrationDataReader over a stack of float latents [N, 12, 28, 28]."""

    def __init__(self, latents: np.ndarray):
        self.it = iter(latents.astype(np.float32))

    def get_next(self):
        z = next(self.it, None)
        return None if z is None else {"latent": z[None]}


def quantize_onnx(fp32_path, out_path, calib: np.ndarray | None = None, qparams: dict | None = None) -> None:
    """FP32 decoder ONNX -> QDQ INT8 ONNX.  Either calibrate on `calib` latents
    (percentile 99.999) or pin every activation to `qparams` {tensor: (scale, zp)}."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        pre = os.path.join(tmp, "pre.onnx")
        quant_pre_process(str(fp32_path), pre, skip_symbolic_shape=True)
        extra = {"ActivationSymmetric": False, "WeightSymmetric": True}
        if qparams:
            qparams = dict(qparams)
            qparams.update({d2s: qparams[relu] for d2s, relu in _shuffle_names(qparams).items()})
            extra["TensorQuantOverrides"] = {
                name: [{"scale": np.array(s, np.float32), "zero_point": np.array(zp, np.uint8)}]
                for name, (s, zp) in qparams.items()}
            calib = np.zeros((1, LATENT_CHANNELS, LATENT_SIZE, LATENT_SIZE), np.float32)
        quantize_static(pre, str(out_path), _Latents(calib), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=OP_TYPES, nodes_to_exclude=KEEP_FP32,
                        calibrate_method=CalibrationMethod.Percentile, extra_options=extra)


def _shuffle_names(qparams: dict) -> dict:
    """DepthToSpace output -> the ReLU output it shuffles (same values, same grid)."""
    return {k.replace("/Relu_output_0", "/shuffle/DepthToSpace_output_0"): k
            for k in qparams if k.startswith("/up") and k.endswith("/Relu_output_0")}


def shuffle_uint8(path) -> None:
    """Rewrite DQ -> DepthToSpace -> Q (float in the middle) into DepthToSpace on the
    uint8 tensor followed by DQ: the shuffle is pure data movement, so this is exact
    when both sides share one grid, and moves a quarter of the bytes (measured: the
    float shuffles took about a fifth of the INT8 decoder's time)."""
    import onnx

    m = onnx.load(str(path))
    g = m.graph
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    drop, changed = [], set()
    for n in g.node:
        if n.op_type != "DepthToSpace":
            continue
        dq_in = producer.get(n.input[0])
        after = consumers.get(n.output[0], [])
        if dq_in is None or dq_in.op_type != "DequantizeLinear" or len(after) != 1 \
                or after[0].op_type != "QuantizeLinear":
            continue
        q_out = after[0]
        n.input[0] = dq_in.input[0]
        for dq in consumers.get(q_out.output[0], []):
            dq.input[0], dq.input[1], dq.input[2] = n.output[0], dq_in.input[1], dq_in.input[2]
        drop.append(q_out)
        if len(consumers[dq_in.output[0]]) == 1:
            drop.append(dq_in)
        changed.add(n.output[0])
    for n in drop:
        g.node.remove(n)
    keep = [v for v in g.value_info if v.name not in changed]      # now uint8: let onnxruntime infer it
    del g.value_info[:]
    g.value_info.extend(keep)
    used = {i for n in g.node for i in n.input}
    unused = [t for t in g.initializer if t.name not in used]
    for t in unused:
        g.initializer.remove(t)
    onnx.checker.check_model(m)
    onnx.save(m, str(path))


def read_qparams(qdq_path) -> dict:
    """{activation tensor name: (scale, zero point)} of every QuantizeLinear in a QDQ model."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(qdq_path))
    init = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    out = {}
    for n in m.graph.node:
        if n.op_type == "QuantizeLinear" and n.input[0] not in init:
            out[n.input[0]] = (float(init[n.input[1]]), int(init[n.input[2]]))
    return out


def calibrate(decoder: torch.nn.Module, latents: np.ndarray) -> dict:
    """onnxruntime's own calibration of the FP32 decoder -> fixed activation qparams."""
    with tempfile.TemporaryDirectory() as tmp:
        fp32, q = os.path.join(tmp, "fp32.onnx"), os.path.join(tmp, "q.onnx")
        export_fp32(decoder, fp32)
        quantize_onnx(fp32, q, calib=latents)
        qp = read_qparams(q)
    for d2s in _shuffle_names(qp):     # carried on the ReLU output's grid (shuffle_uint8)
        qp.pop(d2s, None)
    return qp


def _fq_weight(w: torch.Tensor) -> torch.Tensor:
    """Per-output-channel symmetric int8, onnxruntime's rule: scale = max|w| / 127."""
    scale = w.detach().abs().amax(dim=(1, 2, 3)).clamp_min(1e-12) / 127.0
    zp = torch.zeros_like(scale, dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(w, scale, zp, 0, -127, 127)


class QatForward:
    """The FastDecoder's forward with fake quantisation at exactly the tensors that the
    onnxruntime QDQ model quantises (names as torch.onnx.export writes them)."""

    def __init__(self, qparams: dict):
        self.qp = qparams

    def fq(self, x, name):
        if name not in self.qp:
            return x
        s, zp = self.qp[name]
        return torch.fake_quantize_per_tensor_affine(x, s, zp, 0, 255)

    @staticmethod
    def conv(x, m, quant=True):
        return F.conv2d(x, _fq_weight(m.weight) if quant else m.weight, m.bias, m.stride, m.padding)

    def __call__(self, dec, z):
        fq, conv = self.fq, self.conv
        head = conv(fq(z, "latent"), dec.head, quant="/head/Conv" not in KEEP_FP32)
        x = fq(F.relu(head), "/Relu_output_0")
        xq = x                                  # the trunk as the next convolution reads it
        stages = [("stage28", None), ("up56", "stage56"), ("up112", "stage112"), ("up224", "stage224")]
        for up, stage in stages:
            if stage is None:
                stage = up
            else:   # the shuffle moves uint8 values: it keeps the ReLU output's grid
                u = fq(F.relu(conv(xq, getattr(dec, up).conv)), f"/{up}/Relu_output_0")
                x = xq = F.pixel_shuffle(u, 2)
            for i, blk in enumerate(getattr(dec, stage)):
                p = f"/{stage}/{stage}.{i}"
                h = fq(F.relu(conv(xq, blk.conv1)), f"{p}/Relu_output_0")
                h = fq(conv(h, blk.conv2), f"{p}/conv2/Conv_output_0")
                x = x + h                       # float sum (float_trunk)
                xq = fq(x, f"{p}/Add_output_0")
        return torch.sigmoid(conv(x, dec.tail, quant="/tail/Conv" not in KEEP_FP32))


def float_trunk(path) -> None:
    """onnxruntime's quantiser feeds every consumer of a quantised tensor its DQ output;
    give the residual additions the float sum of the previous addition instead, so that
    only the convolutions read the trunk on its uint8 grid."""
    import onnx

    m = onnx.load(str(path))
    producer = {o: n for n in m.graph.node for o in n.output}
    for n in m.graph.node:
        if n.op_type != "Add":
            continue
        for i, name in enumerate(n.input):
            dq = producer.get(name)
            q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
            src = producer.get(q.input[0]) if q is not None and q.op_type == "QuantizeLinear" else None
            if src is not None and src.op_type == "Add":
                n.input[i] = q.input[0]
    onnx.checker.check_model(m)
    onnx.save(m, str(path))


def export_int8(decoder: torch.nn.Module, qparams: dict, out_path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = os.path.join(tmp, "fp32.onnx")
        export_fp32(decoder, fp32)
        quantize_onnx(fp32, out_path, qparams=qparams)
    shuffle_uint8(out_path)
    float_trunk(out_path)
