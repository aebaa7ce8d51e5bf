"""Run a QDQ INT8 decoder on onnxruntime's channels-last INT8 kernels, without layout
round trips.

onnxruntime's CPU provider fuses each DequantizeLinear -> Conv -> QuantizeLinear of a
QDQ model into a channels-last QLinearConv, but leaves everything between two
convolutions (the float residual sums, the pixel shuffles) in NCHW, so every
convolution is wrapped in a pair of Transposes, and DepthToSpace moves single bytes.
This module rewrites the graph once, at load time:

* each quantised convolution becomes ``com.microsoft.QLinearConv(channels_last=1)``
  with exactly the weights, scales, zero points and bias of the QDQ model;
* Quantize/DequantizeLinear (per tensor), Add, Relu and Sigmoid run in whatever layout
  their input has;
* a pixel shuffle (DepthToSpace, CRD) after a convolution becomes a copy of contiguous
  runs: the convolution's output channels are reordered (sub-pixel first, then channel)
  so that the shuffle is Reshape -> Transpose of whole rows -> Reshape;
* float convolutions and the graph outputs get NCHW back, transposing the smallest
  tensor that can be transposed (uint8 before a DequantizeLinear, not float after it).

The arithmetic is the QDQ model's; outputs agree to float rounding (test_decoder_int8).
The rewrite is for the CPU provider only: GPU providers take the portable QDQ file.
"""
from __future__ import annotations

import numpy as np

TO_NHWC, TO_NCHW = [0, 2, 3, 1], [0, 3, 1, 2]
_ELEMENTWISE = {"DequantizeLinear", "QuantizeLinear", "Add", "Relu", "Sigmoid"}


class NotConvertible(ValueError):
    """The graph has a shape or an operator this rewrite does not handle."""


def channels_last_model(model_bytes: bytes) -> bytes:
    """The rewritten model (serialized); raises NotConvertible if the graph is not a
    QDQ network made of the operators above, with fixed channel counts (batch, height
    and width may be open)."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.shape_inference.infer_shapes(onnx.load_from_string(model_bytes))
    g = model.graph
    init = {t.name: t for t in g.initializer}
    shapes = {}
    for v in list(g.value_info) + list(g.input) + list(g.output):
        dims = [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
        shapes[v.name] = dims
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def attrs(n):
        return {a.name: helper.get_attribute_value(a) for a in n.attribute}

    def const_dq(name):
        """The DequantizeLinear of an initializer (a weight or bias) that makes `name`."""
        n = producer.get(name)
        return n if n is not None and n.op_type == "DequantizeLinear" and n.input[0] in init else None

    def arr(name):
        return numpy_helper.to_array(init[name])

    nodes, inits = [], []
    layout: dict[str, str] = {}          # activation -> "nhwc" (absent: NCHW)
    shuffled: set[str] = set()           # conv outputs whose channels are (sub-pixel, channel) ordered
    transposed: dict[tuple, str] = {}
    emitted_const: set[str] = set()
    done: set[int] = set()

    def in_layout(name, want):
        if name in init or layout.get(name, "nchw") == want:
            return name
        key = (name, want)
        if key not in transposed:
            out = f"{name}/{want}"
            nodes.append(helper.make_node("Transpose", [name], [out], perm=TO_NHWC if want == "nhwc" else TO_NCHW))
            transposed[key] = out
        return transposed[key]

    def keep_const(name):
        d = const_dq(name)
        if d is not None and d.output[0] not in emitted_const:
            nodes.append(d)
            emitted_const.add(d.output[0])

    def qconv(n):
        """DQ(x) -> Conv(DQ(w), DQ(b)) -> Q as one channels-last QLinearConv, or None."""
        x_dq = producer.get(n.input[0])
        w_dq = const_dq(n.input[1])
        b_dq = const_dq(n.input[2]) if len(n.input) > 2 else None
        after = consumers.get(n.output[0], [])
        if x_dq is None or x_dq.op_type != "DequantizeLinear" or x_dq.input[0] in init or w_dq is None \
                or b_dq is None or len(after) != 1 or after[0].op_type != "QuantizeLinear":
            return None
        q = after[0]
        w, ws, wz, b = arr(w_dq.input[0]), arr(w_dq.input[1]), arr(w_dq.input[2]), arr(b_dq.input[0])
        users = consumers.get(q.output[0], [])
        if users and all(u.op_type == "DepthToSpace" and attrs(u).get("mode", b"DCR") in (b"CRD", "CRD")
                         and attrs(u)["blocksize"] == 2 for u in users):
            c = w.shape[0] // 4                         # CRD: channel c*4 + 2a + b -> (a, b, c)
            order = np.array([ch * 4 + a * 2 + bb for a in range(2) for bb in range(2) for ch in range(c)])
            w, b = w[order], b[order]
            ws, wz = (ws[order], wz[order]) if ws.ndim else (ws, wz)
            shuffled.add(q.output[0])
        name = n.output[0]
        for suffix, value in (("w", w), ("w_scale", ws), ("w_zero", wz), ("bias", b)):
            inits.append(numpy_helper.from_array(value, f"{name}/{suffix}"))
        x = in_layout(x_dq.input[0], "nhwc")
        nodes.append(helper.make_node(
            "QLinearConv", [x, x_dq.input[1], x_dq.input[2], f"{name}/w", f"{name}/w_scale", f"{name}/w_zero",
                            q.input[1], q.input[2], f"{name}/bias"], [q.output[0]],
            domain="com.microsoft", channels_last=1, **attrs(n)))
        layout[q.output[0]] = "nhwc"
        return q

    def shuffle(n):
        src = n.input[0]
        c4 = shapes[src][1]
        c = c4 // 4
        s1, mul, div = f"{n.output[0]}/rows", f"{n.output[0]}/mul", f"{n.output[0]}/div"
        # 0: the input's dimension (any batch, height and width: several cameras' frames in
        # one run, pictures of any size)
        inits.append(numpy_helper.from_array(np.array([0, 0, 0, 2, 2 * c], np.int64), s1))
        inits.append(numpy_helper.from_array(np.array([1, 2, 2, 1], np.int64), mul))
        inits.append(numpy_helper.from_array(np.array([1, 1, 1, 4], np.int64), div))
        r, t = f"{n.output[0]}/r", f"{n.output[0]}/t"
        shp, s2m, s2 = f"{n.output[0]}/shape", f"{n.output[0]}/shape2x", f"{n.output[0]}/out"
        nodes.append(helper.make_node("Reshape", [src, s1], [r]))              # [N, H, W, a, (b, c)]
        nodes.append(helper.make_node("Transpose", [r], [t], perm=[0, 1, 3, 2, 4]))  # [N, H, a, W, (b, c)]
        nodes.append(helper.make_node("Shape", [src], [shp]))                  # [N, H, W, 4c]
        nodes.append(helper.make_node("Mul", [shp, mul], [s2m]))
        nodes.append(helper.make_node("Div", [s2m, div], [s2]))                # [N, 2H, 2W, c]
        nodes.append(helper.make_node("Reshape", [t, s2], [n.output[0]]))
        layout[n.output[0]] = "nhwc"

    for v in g.input:
        if len(shapes[v.name]) != 4 or shapes[v.name][1] is None:
            raise NotConvertible(f"input {v.name} is not NCHW with a fixed number of channels")
    for n in g.node:
        if id(n) in done:
            continue
        if n.op_type == "DequantizeLinear" and n.input[0] in init:
            continue                                    # emitted on demand by keep_const
        if n.op_type == "Conv":
            q = qconv(n)
            if q is not None:
                done.add(id(q))
                continue
            for i in n.input:
                keep_const(i)
            nodes.append(helper.make_node("Conv", [in_layout(n.input[0], "nchw")] + list(n.input[1:]),
                                          list(n.output), **attrs(n)))
            continue
        if n.op_type == "DepthToSpace" and n.input[0] in shuffled:
            shuffle(n)
            continue
        acts = [i for i in n.input if i and i not in init and const_dq(i) is None]
        if n.op_type in _ELEMENTWISE:
            scalar_q = n.op_type not in ("DequantizeLinear", "QuantizeLinear") or len(shapes.get(n.input[1], [])) == 0 \
                or n.input[1] in init and arr(n.input[1]).ndim == 0
            if not scalar_q:
                raise NotConvertible(f"{n.name}: per-axis quantisation of an activation")
            want = "nhwc" if any(layout.get(i) == "nhwc" for i in acts) else "nchw"
        elif n.op_type in ("DepthToSpace",):
            want = "nchw"
        else:
            raise NotConvertible(f"operator {n.op_type} ({n.name})")
        for i in n.input:
            keep_const(i)
        ins = [in_layout(i, want) if i in acts else i for i in n.input]
        nodes.append(helper.make_node(n.op_type, ins, list(n.output), domain=n.domain, **attrs(n)))
        for o in n.output:
            layout[o] = want

    out_nodes = []
    for o in g.output:
        if layout.get(o.name) == "nhwc":
            nhwc = f"{o.name}/nhwc"
            for m in nodes:
                m.output[:] = [nhwc if x == o.name else x for x in m.output]
                m.input[:] = [nhwc if x == o.name else x for x in m.input]
            out_nodes.append(helper.make_node("Transpose", [nhwc], [o.name], perm=TO_NCHW))
    nodes = _prune(_sink_transposes(nodes + out_nodes, helper), {o.name for o in g.output})

    used = {i for m in nodes for i in m.input}
    keep = [t for t in g.initializer if t.name in used] + [t for t in inits if t.name in used]
    graph = helper.make_graph(nodes, g.name, list(g.input), list(g.output), keep)
    opsets = [helper.make_opsetid("", _opset(model)), helper.make_opsetid("com.microsoft", 1)]
    out = helper.make_model(graph, opset_imports=opsets, producer_name="mcucoder_ros.channels_last")
    out.ir_version = model.ir_version
    return out.SerializeToString()


def dynamic_batch(model_bytes: bytes) -> bytes:
    """The model with its first input's and outputs' batch, height and width left open
    ("batch", "height", "width"; outputs "out_height", "out_width"): the shipped decoders
    are exported for one 28x28 latent, and a fully convolutional graph runs any batch
    and any size unchanged."""
    import onnx
    model = onnx.load_from_string(model_bytes)
    for i, v in enumerate(list(model.graph.input[:1]) + list(model.graph.output)):
        dims = v.type.tensor_type.shape.dim
        names = ["batch", None, "height", "width"] if i == 0 else ["batch", None, "out_height", "out_width"]
        for dim, name in zip(dims, names):
            if name is not None:
                dim.ClearField("dim_value")
                dim.dim_param = name
    del model.graph.value_info[:]          # inferred again from the open input
    return model.SerializeToString()


def _opset(model) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _sink_transposes(nodes, helper):
    """Transpose(DequantizeLinear(q)) -> DequantizeLinear(Transpose(q)), and the same
    through Add of two such: a quarter of the bytes move (uint8, not float)."""
    producer = {o: n for n in nodes for o in n.output}
    uses: dict[str, int] = {}
    for n in nodes:
        for i in n.input:
            uses[i] = uses.get(i, 0) + 1
    existing = {(n.input[0], tuple(helper.get_attribute_value(n.attribute[0]))): n.output[0]
                for n in nodes if n.op_type == "Transpose"}
    out = []
    for n in nodes:
        src = producer.get(n.input[0]) if n.op_type == "Transpose" else None
        if src is not None and src.op_type == "DequantizeLinear" and uses[src.output[0]] == 1:
            perm = tuple(helper.get_attribute_value(n.attribute[0]))
            out.remove(src)
            t = existing.get((src.input[0], perm))
            if t is None:                               # else reuse the transpose already there
                t = f"{src.input[0]}/perm{''.join(map(str, perm))}"
                out.append(helper.make_node("Transpose", [src.input[0]], [t], perm=list(perm)))
            out.append(helper.make_node("DequantizeLinear", [t] + list(src.input[1:]), list(n.output)))
            continue
        out.append(n)
    return out


def _prune(nodes, outputs):
    """Drop nodes whose results nothing reads (the DequantizeLinear that fed a
    convolution now fused into QLinearConv): onnxruntime would still run them."""
    while True:
        used = {i for n in nodes for i in n.input} | outputs
        live = [n for n in nodes if any(o in used for o in n.output)]
        if len(live) == len(nodes):
            return live
        nodes = live
