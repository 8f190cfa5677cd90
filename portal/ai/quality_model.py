"""The built-in image quality model: preprocessing, the network, batched prediction and heatmaps.

Imports torch: import this module only where a model runs (a worker, training, benchmarks),
never from the web process's import path. `portal.ai.registry` loads it lazily.

Input: one 1x256x256 float image in [0, 1], made from a DICOM frame by `load_frame`: stored
values → modality LUT (colour → luminance, MONOCHROME1 inverted so that bright means signal) →
bilinear resize to 256x256 (the aspect ratio is not kept) → robust normalisation (1st
percentile → 0, 99th → 1, clipped): "percentile-1-99" in the manifest.

Output: the seven probabilities of `OUTPUTS`, in that order: `quality` (overall, 1 = good,
0 = likely unusable) and one probability per artifact that the image shows it.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from pydicom.pixels import apply_color_lut, apply_modality_lut
from torch import nn

from portal.ai.artifacts import ARTIFACTS
from portal.dicom.parse import open_dataset
from portal.dicom.render import frame_array

SIZE = 256
OUTPUTS: tuple[str, ...] = ("quality", *ARTIFACTS)
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


# --- preprocessing -----------------------------------------------------------------------------

def frame_values(path: str | Path, frame: int = 0) -> np.ndarray:
    """One frame as float32 values in modality units; colour as luminance; MONOCHROME1 inverted."""
    ds = open_dataset(path)
    arr = frame_array(path, frame, ds=ds)
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if photometric == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
    if arr.ndim == 3:
        return arr[..., :3].astype(np.float32) @ _LUMA
    values = np.asarray(apply_modality_lut(arr, ds), dtype=np.float32)
    if photometric == "MONOCHROME1":
        values = values.max() + values.min() - values
    return values


def normalise(values: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """Percentile `low` → 0, `high` → 1, clipped to [0, 1]; a flat image becomes all zeros."""
    arr = np.asarray(values, dtype=np.float32)
    lo, hi = np.percentile(arr, [low, high])
    if hi - lo <= 1e-6 * max(abs(hi), 1.0):
        lo, hi = float(arr.min()), float(arr.max())
        if hi - lo <= 1e-12:
            return np.zeros_like(arr, dtype=np.float32)
    return np.clip((arr - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def resize(values: np.ndarray, size: int = SIZE) -> np.ndarray:
    """Bilinear resize to size x size (antialiased when shrinking)."""
    arr = np.asarray(values, dtype=np.float32)
    if arr.shape == (size, size):
        return arr
    pic = Image.fromarray(np.ascontiguousarray(arr), mode="F")
    return np.asarray(pic.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)


def preprocess(values: np.ndarray, size: int = SIZE, normalisation: str = "percentile-1-99") -> np.ndarray:
    """A 2D frame (any size, any units) → the model's input in [0, 1]: size x size ("percentile-1-99"), or
    (2, size, size) for "native-crop" (`portal.ai.native_input`: the whole frame and a native-resolution window)."""
    arr = np.asarray(values, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"Expected one 2D frame, got shape {arr.shape}.")
    if normalisation == "native-crop":
        from portal.ai.native_input import native_input
        return native_input(arr, size)
    return normalise(resize(arr, size))


def load_frame(path: str | Path, frame: int = 0, size: int = SIZE, normalisation: str = "percentile-1-99") -> np.ndarray:
    """Frame `frame` (0-based) of a DICOM file as the model's input."""
    return preprocess(frame_values(path, frame), size, normalisation)


# --- the network -------------------------------------------------------------------------------

def _block(cin: int, cout: int, stride: int = 1, kernel: int = 3, padding: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class QualityNet(nn.Module):
    """A small two-branch CNN (~0.6 M parameters, ~100 M multiply-adds at 256x256).

    Image branch: a 4x4/4 "patchify" stem keeps every pixel's fine texture (noise, ringing,
    stripes) in 32 channels at 64x64, then stages of two 3x3 convolutions halve the size to 32,
    16 (the Grad-CAM layer) and 8. K-space branch: the log-magnitude of the image's centred 2D
    Fourier transform, where a spike is a bright point, truncation a hard-edged box, noise a
    raised floor and ghosting a line pattern, through four strided convolutions (optionally
    with the image's autocorrelation as a second channel). Coarse branch: the 16x16 average
    layout of intensity (shading, fold-over at the edges). Global average and max pooling of the
    branches feed a small head with, per artifact, a presence and a severity logit; quality is
    prod(1 - presence x severity).

    `features(x)` (16x16 maps) and `head(x, f)` are exported so that Grad-CAM works on the
    TorchScript file too.
    """

    def __init__(self, outputs: Sequence[str] = OUTPUTS, width: int = 32, kspace: bool = True,
                 autocorr: bool = False, coarse: bool = True):
        super().__init__()
        w = width
        self.output_names = list(outputs)  # a list of str: TorchScript keeps it in the file
        self.use_kspace = kspace
        self.use_autocorr = autocorr
        self.use_coarse = coarse
        self.stem = _block(1, w, stride=4, kernel=4, padding=0)
        self.stage1 = nn.Sequential(_block(w, w * 3 // 2, 2), _block(w * 3 // 2, w * 3 // 2))
        self.stage2 = nn.Sequential(_block(w * 3 // 2, w * 3, 2), _block(w * 3, w * 3))
        self.stage3 = nn.Sequential(_block(w * 3, w * 4, 2), _block(w * 4, w * 4))
        kw = w // 2
        self.kspace = nn.Sequential(_block(2 if autocorr else 1, kw, stride=4, kernel=4, padding=0),
                                    _block(kw, kw * 2, 2), _block(kw * 2, kw * 4, 2), _block(kw * 4, kw * 4, 2))
        self.coarse = nn.Sequential(nn.Linear(256, 64), nn.ReLU(inplace=True))
        features = w * 8 + (kw * 8 if kspace else 0) + (64 if coarse else 0)
        self.fc = nn.Sequential(nn.Linear(features, 128), nn.ReLU(inplace=True), nn.Dropout(0.2),
                                nn.Linear(128, 2 * (len(self.output_names) - 1)))

    @torch.jit.export
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 256, 256) in [0, 1] → (B, C, 16, 16) image feature maps."""
        return self.stage2(self.stage1(self.stem((x - 0.5) * 4.0)))

    @torch.jit.export
    def kspace_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 256, 256) → pooled features of the log-magnitude spectrum."""
        x = x.float()
        k = torch.fft.fft2(x)
        mag = torch.fft.fftshift(torch.log1p(torch.abs(k)), dim=(-2, -1))
        mag = (mag - mag.mean(dim=(2, 3), keepdim=True)) / (mag.std(dim=(2, 3), keepdim=True) + 1e-6)
        if self.use_autocorr:
            # The autocorrelation (inverse transform of the power spectrum) of the zero-mean
            # image: ghosts and fold-over show as secondary peaks at their shift.
            k0 = torch.fft.fft2(x - x.mean(dim=(2, 3), keepdim=True))
            ac = torch.fft.fftshift(torch.fft.ifft2(k0.real ** 2 + k0.imag ** 2).real, dim=(-2, -1))
            ac = ac / (ac.amax(dim=(2, 3), keepdim=True) + 1e-6)
            mag = torch.cat([mag, ac * 4.0], dim=1)
        f = self.kspace(mag)
        return torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)

    @torch.jit.export
    def raw(self, x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        """Image feature maps `f` of input `x` → (B, 2 * artifacts) logits: presence, then severity."""
        f = self.stage3(f)
        pooled = torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)
        if self.use_kspace:
            pooled = torch.cat([pooled, self.kspace_features(x)], dim=1)
        if self.use_coarse:  # the layout of intensity at 16x16: shading, fold-over at the edges
            coarse = F.adaptive_avg_pool2d((x - 0.5) * 4.0, 16).flatten(1)
            pooled = torch.cat([pooled, self.coarse(coarse)], dim=1)
        return self.fc(pooled)

    @torch.jit.export
    def scores(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw logits → (B, 1 + artifacts): quality = prod(1 - p(artifact) * severity(artifact)),
        then the probability of each artifact."""
        n = raw.shape[1] // 2
        presence = torch.sigmoid(raw[:, :n])
        severity = torch.sigmoid(raw[:, n:])
        quality = torch.prod(1.0 - presence * severity, dim=1, keepdim=True)
        return torch.cat([quality, presence], dim=1)

    @torch.jit.export
    def head(self, x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        """Image feature maps `f` of input `x` → the outputs (B, len(output_names))."""
        return self.scores(self.raw(x, f))

    @torch.jit.export
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Training's view: the raw presence and severity logits."""
        return self.raw(x, self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 256, 256) in [0, 1] → (B, 7): quality, then the probability of each artifact."""
        return self.head(x, self.features(x))


def build_model(**kwargs) -> QualityNet:
    return QualityNet(**kwargs)


def to_torchscript(model: nn.Module) -> torch.jit.ScriptModule:
    """The model as TorchScript on the CPU, in eval mode, with `features`/`head` kept for heatmaps."""
    with warnings.catch_warnings():  # torch 2.13 calls TorchScript deprecated; it is the format we ship
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.script(model.cpu().eval())


# --- devices, prediction, heatmaps -------------------------------------------------------------

def pick_device(prefer: str | None = None) -> torch.device:
    """CUDA when available, else the CPU; `prefer` or LIGHTBOX_AI_DEVICE ("cpu", "cuda") overrides."""
    choice = (prefer or os.environ.get("LIGHTBOX_AI_DEVICE") or "").strip().lower()
    if choice == "cpu":
        return torch.device("cpu")
    if choice.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"Device {choice!r} was asked for, but CUDA is not available here.")
        return torch.device(choice)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def as_batch(images: np.ndarray | Sequence[np.ndarray] | torch.Tensor, channels: int = 1) -> torch.Tensor:
    """One image (H, W), a stack (N, H, W) or (N, 1, H, W), or a list of (H, W) → float (N, 1, H, W); with
    `channels` C > 1: one (C, H, W), a stack (N, C, H, W) or a list of (C, H, W) → (N, C, H, W)."""
    if isinstance(images, torch.Tensor):
        t = images.float()
    else:
        if isinstance(images, list | tuple):
            images = np.stack([np.asarray(i, dtype=np.float32) for i in images]) if len(images) else np.zeros((0, SIZE, SIZE), np.float32)
        t = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    if channels == 1 and t.ndim == 2:
        t = t[None, None]
    elif t.ndim == 3:
        t = t[:, None] if channels == 1 else t[None]
    if t.ndim != 4 or t.shape[1] != channels:
        shapes = "(H, W), (N, H, W) or (N, 1, H, W)" if channels == 1 else f"({channels}, H, W) or (N, {channels}, H, W)"
        raise ValueError(f"Expected images shaped {shapes}; got {tuple(t.shape)}.")
    if t.shape[-2:] != (SIZE, SIZE):
        raise ValueError(f"The model takes {SIZE}x{SIZE} inputs; got {tuple(t.shape[-2:])}: use preprocess() first.")
    return t


def predict(model: nn.Module, images, *, names: Sequence[str] | None = None,
            batch_size: int = 16, channels: int = 1) -> list[dict[str, float]]:
    """Scores for each image, in order: `[{"quality": 0.93, "noise": 0.02, ...}, ...]`.

    `images` are preprocessed 256x256 inputs (see `as_batch`). Runs in batches of `batch_size`
    on the model's device.
    """
    names = list(names or getattr(model, "output_names", OUTPUTS))
    batch = as_batch(images, channels)
    device = model_device(model)
    out: list[dict[str, float]] = []
    with torch.no_grad():  # not inference_mode: TorchScript modules may then refuse the inputs
        for start in range(0, batch.shape[0], batch_size):
            probs = model(batch[start:start + batch_size].to(device)).float().cpu().numpy()
            if probs.shape[1] != len(names):
                raise ValueError(f"The model gives {probs.shape[1]} outputs but {len(names)} names were given.")
            out.extend({n: float(v) for n, v in zip(names, row)} for row in probs)
    return out


def heatmap(model: nn.Module, x, target: str | None = None) -> np.ndarray:
    """Grad-CAM of one input: a 256x256 float32 map in [0, 1] of where the evidence lies.

    `target` is an output name: an artifact explains where that artifact shows; "quality" (the
    default) explains what lowers the quality score.
    """
    names = list(getattr(model, "output_names", OUTPUTS))
    target = target or "quality"
    if target not in names:
        raise ValueError(f"Unknown output {target!r}; the model gives {', '.join(names)}.")
    index = names.index(target)
    t = as_batch(x)[:1].to(model_device(model))
    with torch.inference_mode(False), torch.enable_grad():
        feats = model.features(t).detach().clone().requires_grad_(True)
        value = model.head(t, feats)[0, index]
        score = -value if target == "quality" else value
        (grad,) = torch.autograd.grad(score, feats)
        weights = grad.mean(dim=(2, 3), keepdim=True)
        cam = torch.relu((weights * feats).sum(dim=1, keepdim=True))
        cam = F.interpolate(cam, size=(SIZE, SIZE), mode="bilinear", align_corners=False)[0, 0]
    cam = cam.detach().float().cpu().numpy()
    peak = float(cam.max())
    return (cam / peak).astype(np.float32) if peak > 1e-12 else np.zeros((SIZE, SIZE), np.float32)


def occlusion_heatmap(model: nn.Module, x, index: int = 0, *, lower_is_worse: bool = True,
                      patch: int = 32, stride: int = 16, channels: int = 1) -> np.ndarray:
    """Occlusion sensitivity for models without `features`/`head`: how much greying out each
    patch improves output `index` (the evidence of a problem there). 256x256 float32 in [0, 1].
    Only channel 0 (the whole frame) is occluded: the others are not laid out like the frame. A
    multi-channel model (native-crop, whose statistics cost more) gets 64-pixel patches."""
    t = as_batch(x, channels)[:1].to(model_device(model))
    if channels > 1:
        patch, stride = 64, 32
    size = t.shape[-1]
    fill = float(t[:, :1].mean())
    boxes = [(r, c) for r in range(0, size - patch + 1, stride) for c in range(0, size - patch + 1, stride)]
    with torch.no_grad():
        base = float(model(t)[0, index])
        values = []
        for start in range(0, len(boxes), 32):
            chunk = boxes[start:start + 32]
            batch = t.repeat(len(chunk), 1, 1, 1)
            for k, (r, c) in enumerate(chunk):
                batch[k, :1, r:r + patch, c:c + patch] = fill
            values.extend(model(batch)[:, index].float().cpu().tolist())
    heat = np.zeros((size, size), np.float64)
    count = np.zeros((size, size), np.float64)
    for (r, c), v in zip(boxes, values):
        gain = (v - base) if lower_is_worse else (base - v)  # occluding the problem improves the score
        heat[r:r + patch, c:c + patch] += max(gain, 0.0)
        count[r:r + patch, c:c + patch] += 1
    heat /= np.maximum(count, 1)
    peak = heat.max()
    return (heat / peak).astype(np.float32) if peak > 1e-12 else np.zeros((size, size), np.float32)
