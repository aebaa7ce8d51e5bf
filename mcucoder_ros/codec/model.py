"""A shipped codec model: INT8 encoder + latent quantiser + entropy tables (one npz,
everything the camera side needs) and an ONNX decoder.  Thin encode/decode API."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from .. import resources
from .bitstream import Frame
from .entropy import ChannelCoder, EntropyError
from .geometry import IMAGE_SIZE, LATENT_CHANNELS, LATENT_SIZE, check_size, decimate, latent_shape
from .images import ImageError, pad_to_stride, upscale
from .int8_encoder import Int8Encoder
from .inter import InterChannelCoder, ReceivedReferences, ReferenceState
from .latent_quant import LatentQuantizer

ENCODER_FILE = "encoder_int8.npz"
INTER_FILE = "encoder_inter.npz"      # inter-frame tables (codec/inter.py), optional
DECODER_FILE = "decoder_{arch}.onnx"
# The decoder used when none is named: the first of these that the model folder ships.
DECODER_PREFERENCE = ("fast_int8", "fast")
# onnxruntime execution providers by short name (the `providers` parameter of decoder_node)
PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
             "tensorrt": "TensorrtExecutionProvider", "openvino": "OpenVINOExecutionProvider",
             "rocm": "ROCMExecutionProvider", "coreml": "CoreMLExecutionProvider",
             "dml": "DmlExecutionProvider"}


class ModelError(RuntimeError):
    """A model folder is missing, incomplete or does not match the bitstream."""


def load_inter_tables(model_dir, model_id: int):
    """The model's inter-frame tables [12, 8, 64], or None when it has none."""
    path = Path(model_dir) / INTER_FILE
    if not path.exists():
        return None
    with np.load(path) as z:
        if int(z["model_id"]) != model_id:
            raise ModelError(f"{path} was fitted for model {int(z['model_id']):#010x}, not {model_id:#010x} "
                             "(refit it: mcucoder fit-inter)")
        return z["freqs"]


def default_model_dir() -> Path:
    """The shipped model folder: $MCUCODER_MODEL_DIR, else models/default of the checkout,
    the colcon install (ament index) or the venv (see mcucoder_ros.resources); ModelError
    naming every place looked in when there is none."""
    try:
        return resources.find("models/default", "the shipped model", env="MCUCODER_MODEL_DIR",
                              marker=ENCODER_FILE)
    except resources.ResourceNotFound as e:
        raise ModelError(str(e)) from None


def shipped_decoders(model_dir=None) -> list[str]:
    """Names of the decoders in a model folder (decoder_<name>.onnx), preferred first."""
    d = Path(model_dir or default_model_dir())
    names = sorted(p.name[len("decoder_"):-len(".onnx")] for p in d.glob("decoder_*.onnx"))
    return sorted(names, key=lambda n: DECODER_PREFERENCE.index(n) if n in DECODER_PREFERENCE else len(names))


def resolve_providers(names) -> tuple[list[str], str | None]:
    """Short or full provider names -> the onnxruntime providers to use, CPU last, and a
    note when some are not available in this onnxruntime build (they are left out)."""
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    wanted, missing = [], []
    for n in names or ["cpu"]:
        full = PROVIDERS.get(str(n).lower(), str(n))
        if full not in PROVIDERS.values():
            raise ModelError(f"unknown execution provider '{n}' (choose from {', '.join(PROVIDERS)})")
        (wanted if full in available else missing).append(full)
    if "CPUExecutionProvider" not in wanted:
        wanted.append("CPUExecutionProvider")
    note = None
    if missing:
        note = (f"execution provider(s) {', '.join(missing)} not available in this onnxruntime "
                f"(it has {', '.join(sorted(available))}); decoding with {', '.join(wanted)}")
    return wanted, note


def _cpu_graph(onnx_path: Path) -> tuple[bytes | str, str]:
    """The graph to give the CPU provider, with an open batch dimension: a QDQ INT8
    model rewritten to channels-last kernels, anything else (or a graph the rewrite does
    not know) as shipped."""
    data = onnx_path.read_bytes()
    try:
        from .channels_last import NotConvertible, channels_last_model, dynamic_batch
    except ModuleNotFoundError:                  # onnx not installed: still correct, slower
        return str(onnx_path), "as shipped (the onnx package is missing for the channels-last rewrite)"
    data = dynamic_batch(data)
    if b"QuantizeLinear" not in data:
        return data, "as shipped"
    try:
        return channels_last_model(data), "channels-last rewrite"
    except NotConvertible as e:
        return data, f"as shipped (channels-last rewrite: {e})"


def model_channel_gains(model_dir=None) -> list[float]:
    """MS-SSIM each channel adds, from the model's validation at some k (export.json's
    last training_history entry): what the shared-link controller weighs channels by."""
    import json

    from ..control import channel_gains
    path = Path(model_dir or default_model_dir()) / "export.json"
    try:
        return channel_gains(json.loads(path.read_text())["training_history"][-1]["val_ms_ssim"])
    except (OSError, ValueError, KeyError, IndexError) as e:
        raise ModelError(f"no per-channel quality in {path} ({type(e).__name__}: {e})") from None


def model_id_of(arrays: dict) -> int:
    """u32 identity of the coding parameters (anything that changes the bits changes it)."""
    h = hashlib.sha256()
    for k in sorted(arrays):
        if k == "model_id":
            continue
        a = np.ascontiguousarray(arrays[k])
        h.update(k.encode()), h.update(str(a.dtype).encode()), h.update(a.tobytes())
    return int.from_bytes(h.digest()[:4], "little")


class EncoderModel:
    """uint8 RGB frame -> Frame (bitstream chunks of the first k channels)."""

    def __init__(self, arrays, inter_freqs=None):
        self.arrays = {k: np.asarray(arrays[k]) for k in arrays}
        self.int8 = Int8Encoder.from_arrays(self.arrays)
        self.quantizer = LatentQuantizer(self.arrays["latent_lo"], self.arrays["latent_hi"],
                                         self.int8.latent_scale, self.int8.latent_zero_point)
        self.edges = self.arrays["edge_symbols"].astype(int)
        self.coders = [ChannelCoder(self.arrays["freqs"][c], self.edges[c]) for c in range(LATENT_CHANNELS)]
        self.model_id = int(self.arrays["model_id"])
        self.inter_coders = None if inter_freqs is None else \
            [InterChannelCoder(inter_freqs[c], self.edges[c]) for c in range(LATENT_CHANNELS)]

    @classmethod
    def load(cls, model_dir=None) -> EncoderModel:
        d = Path(model_dir or default_model_dir())
        path = d / ENCODER_FILE
        if not path.exists():
            raise ModelError(f"encoder model not found: {path} (run `mcucoder export` or set MCUCODER_MODEL_DIR)")
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        return cls(arrays, load_inter_tables(d, int(arrays["model_id"])))

    def latent(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 RGB frame of its own size (up to 1920x1088) -> int8 latent [12, H/8, W/8]
        (sides rounded up: a frame whose sides are not multiples of 8 is padded by edge
        replication; 224x224 -> [12, 28, 28]).  No resizing: resize before, if wanted."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ImageError(f"expected an HxWx3 uint8 RGB frame, got shape {rgb.shape} dtype {rgb.dtype}")
        check_size(rgb.shape[1], rgb.shape[0])
        return self.int8(pad_to_stride(rgb))

    def symbols(self, rgb: np.ndarray) -> np.ndarray:
        return self.quantizer.quantize(self.latent(rgb))

    def encode(self, rgb: np.ndarray, channels: int = LATENT_CHANNELS, sequence: int = 0,
               references: ReferenceState | None = None, scale_shift: int = 0) -> Frame:
        """The first `channels` channels of the frame at its own size, intra; with
        `references` (video mode), each channel is coded against its acknowledged
        reference when that is shorter.  224x224: bitstream v1 (v2 with inter chunks),
        what the firmware sends; any other size: v3, which carries the size.
        scale_shift 1 or 2: coded at 1/2 or 1/4 of its size (geometry.decimate), v4."""
        if not 0 <= channels <= LATENT_CHANNELS:
            raise ValueError(f"channels must be in 0..{LATENT_CHANNELS}, got {channels}")
        latent = self.latent(decimate(rgb, scale_shift))[:channels]   # only the budgeted channels are coded
        return self.code(self.quantizer.quantize(latent), channels, sequence, references,
                         size=(rgb.shape[1], rgb.shape[0]), scale_shift=scale_shift)

    def code(self, sym: np.ndarray, channels: int, sequence: int = 0,
             references: ReferenceState | None = None, size: tuple[int, int] | None = None,
             scale_shift: int = 0) -> Frame:
        """The entropy-coding half of `encode`, from the symbols (at least `channels` of
        them).  size: (width, height) of the camera's picture (default: 8 pixels per
        symbol); scale_shift: the symbols are of that picture at 1 / 2^scale_shift.  In
        video mode a channel of another latent size has no reference (a scale change
        starts new references)."""
        if references is not None and self.inter_coders is None:
            raise ModelError("this model has no inter-frame tables (encoder_inter.npz): fit them with "
                             "`mcucoder fit-inter`")
        sequence %= 2**32
        chunks, refs = [], []
        for c in range(channels):
            chunk, delta = self.coders[c].encode(sym[c]), 0
            ref = references.reference(sequence, c, sym[c].shape) if references is not None else None
            if ref is not None:
                inter = self.inter_coders[c].encode(sym[c], ref[1])
                if len(inter) < len(chunk):
                    chunk, delta = inter, ref[0]
            chunks.append(chunk)
            refs.append(delta)
            if references is not None:
                references.sent(sequence, c, sym[c])
        if references is not None:
            references.frame_done()
        width, height = size if size is not None else (sym.shape[2] * 8, sym.shape[1] * 8)
        return Frame(self.model_id, sequence, list(range(channels)), chunks,
                     references=refs if any(refs) else None, width=int(width), height=int(height),
                     scale_shift=scale_shift)


def _session_options(threads: int):
    """onnxruntime options of every decoder session (threads 0: onnxruntime's default)."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    so.log_severity_level = 3
    # no busy-waiting worker threads: the decoder shares the CPU with other nodes
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return so


MAX_SIZED_SESSIONS = 8       # sizes a decoder keeps a session for (cameras of several sizes)


class DecoderModel:
    """Frame (any subset of channels) -> uint8 RGB picture of the frame's size, through
    onnxruntime.  The network takes any latent size (its height and width are left open
    when it is loaded); batches are grouped by size."""

    def __init__(self, encoder_arrays, onnx_path: Path, threads: int = 0, providers=("cpu",), inter_freqs=None,
                 cpu_rewrite: bool = True):
        """cpu_rewrite: on the CPU provider, run an INT8 (QDQ) decoder through the
        channels-last rewrite (codec/channels_last.py: same arithmetic, faster); `graph`
        says which graph runs."""

        enc = EncoderModel(encoder_arrays, inter_freqs)
        self.model_id = enc.model_id
        self.quantizer = enc.quantizer
        self.coders = enc.coders
        self.inter_coders = enc.inter_coders
        wanted, self.provider_note = resolve_providers(providers)
        self._on_cpu = wanted == ["CPUExecutionProvider"]
        model, self.graph = _cpu_graph(Path(onnx_path)) if self._on_cpu and cpu_rewrite \
            else _any_size_graph(Path(onnx_path))
        self._graph_source, self._wanted, self._threads_opt = model, wanted, threads
        self._sized: dict[tuple[int, int, int], object] = {}     # (threads, latent h, w) -> session
        self.session = self._session_for(LATENT_SIZE, LATENT_SIZE)     # 224x224, the firmware's frames
        self.threads = threads or os.cpu_count() or 1
        self._frame_pool = None
        self.warm_sizes: set[tuple[int, int, int]] = set()     # (batch, latent height, width) run once
        self.providers = self.session.get_providers()      # what onnxruntime really uses
        self.input_name = self.session.get_inputs()[0].name
        self.onnx_path = Path(onnx_path)
        self.name = self.onnx_path.name[len("decoder_"):-len(".onnx")]

    @classmethod
    def load(cls, model_dir=None, arch: str | None = None, threads: int = 0, providers=("cpu",),
             cpu_rewrite: bool = True) -> DecoderModel:
        """arch: a decoder of the model folder (decoder_<arch>.onnx); None or "": the preferred one."""
        d = Path(model_dir or default_model_dir())
        if not arch:
            names = shipped_decoders(d)
            if not names:
                raise ModelError(f"no decoder (decoder_*.onnx) in {d}")
            arch = names[0]
        onnx_path = d / DECODER_FILE.format(arch=arch)
        if not onnx_path.exists():
            have = ", ".join(shipped_decoders(d)) or "none"
            raise ModelError(f"decoder model not found: {onnx_path} (this model has: {have})")
        enc = d / ENCODER_FILE
        if not enc.exists():
            raise ModelError(f"encoder parameters not found: {enc}")
        with np.load(enc) as z:
            arrays = {k: z[k] for k in z.files}
        return cls(arrays, onnx_path, threads, providers, load_inter_tables(d, int(arrays["model_id"])), cpu_rewrite)

    def symbols(self, frame: Frame, references: ReceivedReferences | None = None) -> dict[int, np.ndarray]:
        """Decode the chunks -> {channel: symbols}.  An inter chunk decodes only against
        that channel of its reference frame, from `references`; without it the channel
        is lost (left out, so zero-filled), never decoded wrong.  frame.extra gets
        `lost_channels`; with `references`, the decoded channels are stored there."""
        if frame.model_id != self.model_id:
            raise ModelError(f"frame was coded with model {frame.model_id:#010x}, this decoder has "
                             f"{self.model_id:#010x}")
        out, lost = {}, []
        shape = frame.latent_shape
        for c, chunk, delta in zip(frame.channel_indices, frame.chunks, frame.reference_deltas):
            try:
                if not delta:
                    out[c] = self.coders[c].decode(chunk, shape)
                    continue
                ref = references.get(frame.sequence - delta, c) if references is not None else None
                if ref is None or ref.shape != shape or self.inter_coders is None:   # none, or of another size
                    lost.append(c)
                    continue
                out[c] = self.inter_coders[c].decode(chunk, ref)
            except EntropyError as e:
                raise EntropyError(f"channel {c}: {e}") from None
        frame.extra["lost_channels"] = lost
        if references is not None:
            references.store(frame.sequence, out)
        return out

    def latent(self, frame: Frame, references: ReceivedReferences | None = None) -> np.ndarray:
        """Decode the entropy-coded chunks -> float latent [1, 12, H/8, W/8] (sides rounded
        up; [1, 12, 28, 28] at 224x224), missing channels zero."""
        z = np.zeros((1, LATENT_CHANNELS, *frame.latent_shape), np.float32)
        for c, sym in self.symbols(frame, references).items():
            z[0, c] = self.quantizer.dequantize(sym[None], [c])[0]
        return z

    def reconstruct(self, latent: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
        """[1, 12, h, w] -> uint8 RGB [8h, 8w, 3], cropped to size = (width, height) if given."""
        return _crop(self.reconstruct_batch(latent)[0], size)

    def reconstruct_batch(self, latents: np.ndarray) -> np.ndarray:
        """[B,12,h,w] -> uint8 RGB [B,8h,8w,3] (one size; several cameras' frames; each picture
        is the one a run of its own gives).  On the CPU the frames run side by side, one
        single-threaded run per core on one shared model: there one run of the whole
        batch costs more per frame as the batch grows (its activations leave the cache)
        and two threads on one frame do not double its speed, so this gives 1.1-1.2x
        the frames/s (docs/results.md)."""
        x = latents.astype(np.float32)
        y = None
        lh, lw = x.shape[2:]
        if len(x) > 1 and self.threads > 1 and self._on_cpu:
            one = self._session_for(lh, lw, threads=1)
            try:
                y = np.concatenate(list(self._side_by_side().map(
                    lambda xi: one.run(None, {self.input_name: xi})[0], [x[i:i + 1] for i in range(len(x))])))
            except RuntimeError:          # the pool is gone (the interpreter is exiting): one run below
                pass
        if y is None:
            y = self._session_for(lh, lw).run(None, {self.input_name: x})[0]
        return (np.clip(y, 0.0, 1.0).transpose(0, 2, 3, 1) * 255.0 + 0.5).astype(np.uint8)

    def warm_up(self, batch: int = 1, size: tuple[int, int] = (IMAGE_SIZE, IMAGE_SIZE)) -> None:
        """Decode zeros of a picture size (width, height) once alone and once as `batch`
        frames, so the sessions, threads and memory arenas a running decoder needs exist
        before its first frame of that size (its memory is then flat from the start, and
        the first frame is not slow).  Each size is warmed once."""
        lh, lw = latent_shape(*check_size(*size))
        z = np.zeros((1, LATENT_CHANNELS, lh, lw), np.float32)
        for b in sorted({1, batch}):
            if (b, lh, lw) not in self.warm_sizes:
                self.reconstruct_batch(np.repeat(z, b, axis=0))
                self.warm_sizes.add((b, lh, lw))

    def _session_for(self, lh: int, lw: int, threads: int | None = None):
        """The session of one latent size: the same graph, with its open height and width
        fixed to this size (onnxruntime then plans the run's shapes and memory once, as
        for a model exported at that size; measured faster than one session for every
        size).  Made at the first frame of a size, kept for the last MAX_SIZED_SESSIONS
        sizes; `threads` 1: the single-threaded one of the side-by-side runs (CPU)."""
        threads = self._threads_opt if threads is None else threads
        key = (threads, int(lh), int(lw))
        sess = self._sized.get(key)
        if sess is None:
            import onnxruntime as ort
            so = _session_options(threads)
            so.add_free_dimension_override_by_name("height", int(lh))
            so.add_free_dimension_override_by_name("width", int(lw))
            providers = self._wanted if threads == self._threads_opt else ["CPUExecutionProvider"]
            sess = ort.InferenceSession(self._graph_source, so, providers=providers)
            if len(self._sized) >= MAX_SIZED_SESSIONS:
                self._sized.pop(next(iter(self._sized)))            # the oldest size
                self.warm_sizes = {w for w in self.warm_sizes if w[1:] in {k[1:] for k in self._sized}}
            self._sized[key] = sess
        return sess

    def _side_by_side(self):
        """A pool of one thread per core for the single-threaded side-by-side runs, made
        at the first batch: a one-camera decoder never pays for it."""
        if self._frame_pool is None:
            from concurrent.futures import ThreadPoolExecutor
            self._frame_pool = ThreadPoolExecutor(self.threads, thread_name_prefix="decode")
        return self._frame_pool

    def decode_batch(self, frames: list[Frame], references: list[ReceivedReferences | None] | None = None) \
            -> list[np.ndarray]:
        """Several frames (of several cameras, each with its own references) together:
        the pictures, in order; frames of one size run as one batch."""
        refs = references or [None] * len(frames)
        pics = self.reconstruct_frames([self.latent(f, r) for f, r in zip(frames, refs)],
                                       [f.coded_size for f in frames])
        return [upscale(p, f.size) for p, f in zip(pics, frames)]

    def reconstruct_frames(self, latents: list[np.ndarray], sizes: list[tuple[int, int]]) -> list[np.ndarray]:
        """[1, 12, h, w] latents of any sizes -> their pictures cropped to `sizes` (width,
        height), in order; the latents of one size run as one batch."""
        out: list[np.ndarray | None] = [None] * len(latents)
        groups: dict[tuple, list[int]] = {}
        for i, z in enumerate(latents):
            groups.setdefault(z.shape[2:], []).append(i)
        for idx in groups.values():
            pics = self.reconstruct_batch(np.concatenate([latents[i] for i in idx]))
            for i, pic in zip(idx, pics):
                out[i] = _crop(pic, sizes[i])
        return out

    def decode(self, frame: Frame, references: ReceivedReferences | None = None) -> np.ndarray:
        """One frame -> its picture, uint8 RGB [height, width, 3] of the frame's size (a
        frame coded at 1/2 or 1/4 of it is scaled back up, bicubic)."""
        return upscale(self.reconstruct(self.latent(frame, references), frame.coded_size), frame.size)


def _crop(picture: np.ndarray, size) -> np.ndarray:
    """The decoded picture (sides multiples of 8) cut to the frame's size (width, height)."""
    if size is None or picture.shape[:2] == (size[1], size[0]):
        return picture
    return np.ascontiguousarray(picture[:size[1], :size[0]])


def _any_size_graph(onnx_path: Path) -> tuple[bytes | str, str]:
    """The graph for providers other than the CPU's rewrite: the shipped one with its
    batch, height and width left open (as shipped if the onnx package is missing: then
    only 224x224 frames decode)."""
    try:
        from .channels_last import dynamic_batch
    except ModuleNotFoundError:
        return str(onnx_path), "as shipped (the onnx package is missing: 224x224 only)"
    return dynamic_batch(onnx_path.read_bytes()), "as shipped"


assert IMAGE_SIZE == 8 * LATENT_SIZE
