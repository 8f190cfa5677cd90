"""lightbox-quality 1.2.0's network: measured image statistics → a small MLP. Imports torch.

Input: (N, 2, 256, 256) from `portal.ai.native_input` (channel 0 the whole frame at 256x256, channel 1 a window at
the native matrix). Instead of a CNN learning texture from few images on two CPU cores, the module computes
statistics that physics says each artifact family changes, then a two-layer MLP reads them:

- noise: robust (quantile) levels of a Laplacian residual (Immerkaer's estimator) and of the darkest pixels, at
  native resolution and at 256;
- blur, ringing, truncation: the Hann-windowed power spectrum in radial bands and along each axis (the larger and
  the smaller of the two axis profiles, so that a 90° turn changes nothing), and gradient quantiles;
- spikes: how far the brightest points of the log spectrum stand above their neighbourhood;
- ghosts and aliasing: the autocorrelation of the image and of its edges along each axis (replicas at FOV/n);
- shading: the spread of the local mean of the foreground on an 8x8 grid; fold-over: the brightness of the borders.

Outputs: quality, then the probability of each artifact. 1.2.0: quality = 1 - p(severe), from a dedicated head
trained on "an artifact of severity ≥ 0.7" (`severe_heads=6`: the largest of six per-family heads). 1.3.0
(`calibrated=True`): quality says how unusual the most unusual artifact output is for a *clean* image, from a table
of the outputs of clean training views scored out of fold (buffer `clean_logits`): 1 + log10(p) / 4, p the share
of clean views scoring at least as high (0.5: 1 in 100). 1.4.0 (`physics_stats=True`) appends 31 statistics
(`physics_features`: log-intensity shading fits and histogram sharpening, fold-over seams, k-space line roughness)
and reads the severe head's logit against the clean table as a seventh row. Everything is TorchScript-able;
`forward(x) -> (N, 7)`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from portal.ai.artifacts import ARTIFACTS

SIZE = 256
OUTPUTS: tuple[str, ...] = ("quality", *ARTIFACTS)
RADIAL_BINS = 16
AXIS_BINS = 12


def _radius(size: int) -> torch.Tensor:
    f = torch.arange(size, dtype=torch.float32) - size // 2
    return torch.sqrt(f[:, None] ** 2 + f[None, :] ** 2) / (size // 2)


class FeatureNet(nn.Module):
    def __init__(self, outputs: Sequence[str] = OUTPUTS, hidden: int = 64, n_features: int = 0,
                 dropout: float = 0.3, severe_heads: int = 1, extra_stats: bool = False, calibrated: bool = False,
                 physics_stats: bool = False):
        super().__init__()
        self.output_names = list(outputs)
        self.n_artifacts = len(self.output_names) - 1
        self.severe_heads = severe_heads  # 1: one "severe" logit (1.2.0); n_artifacts: one per family (1.3.0)
        self.extra_stats = extra_stats  # 1.3.0's statistics after 1.2.0's (which stay the first columns, unchanged)
        # 1.4.0's statistics after 1.3.0's (which stay the first columns): shading, fold-over seams, k-space lines
        self.physics_stats = physics_stats and extra_stats
        # 1.3.0's quality: how unusual the most unusual artifact output is *for a clean image* (see `scores`)
        self.calibrated = calibrated
        self.register_buffer("clean_logits", torch.zeros(self.n_artifacts, 1))
        self.radial_bins = RADIAL_BINS
        self.axis_bins = AXIS_BINS
        self.size = SIZE
        r = _radius(SIZE)
        self.register_buffer("radius", r)
        bins = torch.clamp((r * RADIAL_BINS).long(), max=RADIAL_BINS)  # RADIAL_BINS = the corners, dropped
        self.register_buffer("radial_index", bins.flatten())
        hann = torch.hann_window(SIZE, periodic=False)
        self.register_buffer("window", hann[:, None] * hann[None, :])
        g = (torch.arange(8, dtype=torch.float32) + 0.5) / 4.0 - 1.0
        gy, gx = torch.meshgrid(g, g, indexing="ij")
        gy, gx = gy.flatten(), gx.flatten()
        self.register_buffer("poly", torch.stack([torch.ones_like(gx), gx, gy, gx * gx, gx * gy, gy * gy,
                                                  gx ** 3, gy ** 3, gx * gx * gy, gx * gy * gy], 1))
        g4 = (torch.arange(4, dtype=torch.float32) + 0.5) / 2.0 - 1.0
        hy, hx = torch.meshgrid(g4, g4, indexing="ij")
        hy, hx = hy.flatten(), hx.flatten()
        self.register_buffer("poly4", torch.stack([torch.ones_like(hx), hx, hy, hx * hx, hx * hy, hy * hy], 1))
        g64 = (torch.arange(64, dtype=torch.float32) + 0.5) / 32.0 - 1.0
        py, px = torch.meshgrid(g64, g64, indexing="ij")
        py, px = py.flatten(), px.flatten()
        self.register_buffer("poly64", torch.stack([torch.ones_like(px), px, py, px * px, px * py, py * py], 1))
        lap = torch.tensor([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])
        self.register_buffer("laplacian", lap[None, None])
        n = n_features or self.feature_count()
        self.register_buffer("mean", torch.zeros(n))
        self.register_buffer("std", torch.ones(n))
        n_art = self.n_artifacts
        self.mlp = nn.Sequential(nn.Linear(n, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, hidden),
                                 nn.ReLU(), nn.Linear(hidden, n_art + severe_heads))

    def feature_count(self) -> int:
        with torch.no_grad():
            return int(self.features_raw(torch.rand(2, 2, SIZE, SIZE)).shape[1])

    # --- statistics -------------------------------------------------------------------------------

    def _noise(self, img: torch.Tensor) -> torch.Tensor:
        """(B, H, W) → quantiles of |Laplacian residual| (log), and of the darkest pixels' residual."""
        # every 2nd pixel each way: quantiles of 16k values are as good and 4x cheaper
        res = F.conv2d(img[:, None], self.laplacian).abs()[:, 0, ::2, ::2].flatten(1) * (math.sqrt(math.pi / 2) / 6.0)
        q = torch.quantile(res, torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9], device=img.device), dim=1).T
        flat = img[:, 1:-1:2, 1:-1:2].flatten(1)
        dark = flat <= torch.quantile(flat, 0.2, dim=1, keepdim=True)
        dark_res = (res * dark).sum(1) / dark.sum(1).clamp(min=1)
        return torch.log(torch.cat([q, dark_res[:, None]], dim=1) + 1e-4)

    def _gradients(self, img: torch.Tensor) -> torch.Tensor:
        gx = (img[:, ::2, 1:] - img[:, ::2, :-1]).abs()[:, :, ::2].flatten(1)
        gy = (img[:, 1:, ::2] - img[:, :-1, ::2]).abs()[:, ::2].flatten(1)
        qs = torch.tensor([0.5, 0.9, 0.99], device=img.device)
        a, b = torch.quantile(gx, qs, dim=1).T, torch.quantile(gy, qs, dim=1).T
        return torch.log(torch.cat([torch.maximum(a, b), torch.minimum(a, b)], dim=1) + 1e-4)

    def _spectrum(self, img: torch.Tensor) -> torch.Tensor:
        """Radial and per-axis log power (relative to the total), and spike peaks of the log spectrum."""
        b = img.shape[0]
        z = (img - img.mean(dim=(1, 2), keepdim=True)) * self.window
        p = torch.fft.fftshift(torch.fft.fft2(z).abs() ** 2, dim=(-2, -1))
        total = p.flatten(1).sum(1, keepdim=True) + 1e-8
        nb = self.radial_bins
        radial = torch.zeros(b, nb + 1, device=img.device).index_add_(1, self.radial_index, p.flatten(1))[:, :nb]
        counts = torch.bincount(self.radial_index, minlength=nb + 1)[:nb].float()
        radial = torch.log(radial / counts / total + 1e-12)
        slope = radial[:, 1:] - radial[:, :-1]
        half = self.size // 2
        py = p.sum(2)[:, half:]  # power by |ky| (one side), summed over kx
        px = p.sum(1)[:, half:]
        edges = torch.linspace(0, float(half), self.axis_bins + 1).long()
        ys: list[torch.Tensor] = []
        xs: list[torch.Tensor] = []
        for i in range(self.axis_bins):
            ys.append(py[:, int(edges[i]):int(edges[i + 1])].mean(1))
            xs.append(px[:, int(edges[i]):int(edges[i + 1])].mean(1))
        ay = torch.log(torch.stack(ys, 1) / total + 1e-12)
        ax = torch.log(torch.stack(xs, 1) / total + 1e-12)
        logp = torch.log(p + 1e-10)
        local = F.avg_pool2d(logp[:, None], 9, stride=1, padding=4, count_include_pad=False)[:, 0]
        excess = (logp - local) * (self.radius > 0.06).float()
        top = torch.topk(excess.flatten(1), 8, dim=1).values
        return torch.cat([radial, slope, torch.maximum(ay, ax), torch.minimum(ay, ax), (ay - ax).abs(),
                          top[:, :1], top.mean(1, keepdim=True), top[:, 7:8]], dim=1)

    def _autocorr(self, img: torch.Tensor) -> torch.Tensor:
        """Secondary peaks of the autocorrelation along each axis: ghosts and replicas."""
        z = img - img.mean(dim=(1, 2), keepdim=True)
        k = torch.fft.fft2(z)
        ac = torch.fft.ifft2(k.real ** 2 + k.imag ** 2).real
        ac = ac / (ac[:, :1, :1] + 1e-8)
        a0 = ac[:, :, 0]  # shifts along rows
        a1 = ac[:, 0, :]
        feats: list[torch.Tensor] = []
        for lo, hi in [(4, 16), (16, 48), (48, 129)]:
            m0, m1 = a0[:, lo:hi].amax(1), a1[:, lo:hi].amax(1)
            feats += [torch.maximum(m0, m1), torch.minimum(m0, m1)]
        # 2-D: the strongest off-centre peak
        mask = torch.ones_like(ac[0])
        mask[:8, :8] = 0
        mask[:8, -8:] = 0
        mask[-8:, :8] = 0
        mask[-8:, -8:] = 0
        feats.append((ac * mask).flatten(1).amax(1))
        return torch.stack(feats, 1)

    def _layout(self, img: torch.Tensor) -> torch.Tensor:
        """Shading (the spread of the foreground's local mean) and the brightness of the borders."""
        fg = (img > 0.1).float()
        s = F.avg_pool2d((img * fg)[:, None], 32)[:, 0].flatten(1)
        c = F.avg_pool2d(fg[:, None], 32)[:, 0].flatten(1)
        local = s / c.clamp(min=1e-3)
        ok = c > 0.3
        big = torch.full_like(local, 1e3)
        lmax = torch.where(ok, local, -big).amax(1)
        lmin = torch.where(ok, local, big).amin(1)
        has = ok.any(1)
        ratio = torch.where(has, torch.log((lmax + 1e-3) / (lmin + 1e-3).clamp(min=1e-3)), torch.zeros_like(lmax))
        cnt = ok.float().sum(1).clamp(min=1)
        mu = (local * ok).sum(1) / cnt
        sd = torch.sqrt((((local - mu[:, None]) ** 2) * ok).sum(1) / cnt)
        # a smooth (cubic) trend of the log local mean over the 8x8 grid, weighted by foreground: its range
        # is the shading a bias field adds; the residual is anatomy
        w = ok.float() * c
        loglocal = torch.log(local.clamp(min=1e-3))
        a = self.poly[None] * w[:, :, None]
        ata = torch.matmul(self.poly.T[None], a) + 1e-2 * torch.eye(self.poly.shape[1], device=img.device)[None]
        atb = torch.matmul(a.transpose(1, 2), loglocal[:, :, None])
        beta = torch.linalg.solve(ata, atb)
        trend = torch.matmul(self.poly[None], beta)[:, :, 0]
        trend_in = torch.where(ok, trend, torch.zeros_like(trend))
        t_range = torch.where(ok, trend, -big).amax(1) - torch.where(ok, trend, big).amin(1)
        t_range = torch.where(has, t_range, torch.zeros_like(t_range))
        resid = torch.sqrt((((loglocal - trend_in) ** 2) * ok).sum(1) / cnt)
        lin = torch.sqrt(beta[:, 1, 0] ** 2 + beta[:, 2, 0] ** 2)
        mean = img.mean(dim=(1, 2)) + 1e-3
        band = 8
        sides = torch.stack([img[:, :band].mean(dim=(1, 2)), img[:, -band:].mean(dim=(1, 2)),
                             img[:, :, :band].mean(dim=(1, 2)), img[:, :, -band:].mean(dim=(1, 2))], 1) / mean[:, None]
        sides = torch.sort(sides, dim=1).values
        dark = (img < 0.05).float().mean(dim=(1, 2))
        qs = torch.quantile(img[:, ::2, ::2].flatten(1), torch.tensor([0.05, 0.25, 0.5, 0.75, 0.95], device=img.device), dim=1).T
        return torch.cat([ratio[:, None], (sd / (mu + 1e-3))[:, None], t_range[:, None], resid[:, None],
                          lin[:, None], sides, dark[:, None], qs, fg.mean(dim=(1, 2))[:, None]], 1)

    def _trend(self, values: torch.Tensor, weight: torch.Tensor, poly: torch.Tensor) -> torch.Tensor:
        """A weighted smooth (polynomial) fit of `values` (B, cells) on the grid: its range over the weighted cells,
        the residual spread around it, and the size of its linear part."""
        ok = weight > 0
        a = poly[None] * weight[:, :, None]
        ata = torch.matmul(poly.T[None], a) + 1e-2 * torch.eye(poly.shape[1], device=values.device)[None]
        beta = torch.linalg.solve(ata, torch.matmul(a.transpose(1, 2), values[:, :, None]))
        trend = torch.matmul(poly[None], beta)[:, :, 0]
        big = torch.full_like(trend, 1e3)
        has = ok.any(1)
        t_range = torch.where(has, torch.where(ok, trend, -big).amax(1) - torch.where(ok, trend, big).amin(1),
                              torch.zeros_like(trend[:, 0]))
        cnt = ok.float().sum(1).clamp(min=1)
        resid = torch.sqrt((((values - trend) ** 2) * ok).sum(1) / cnt)
        lin = torch.sqrt(beta[:, 1, 0] ** 2 + beta[:, 2, 0] ** 2)
        return torch.stack([t_range, resid, lin], 1)

    def _extra(self, img: torch.Tensor) -> torch.Tensor:
        """1.3.0's statistics, rotation- and flip-invariant: shading of the *brightest* tissue of each cell (a bias
        field scales it; the mix of tissues in a cell barely moves it) on 8x8 and 4x4 grids, and the structure
        left in the smoothed background (ghosts and fold-over put signal there; noise averages out)."""
        fg = (img > 0.1).float()
        smooth = F.avg_pool2d(img[:, None], 4)  # (B, 1, 64, 64)
        parts: list[torch.Tensor] = []
        for cell, poly in ((8, self.poly), (16, self.poly4)):
            hi = F.max_pool2d(smooth, cell)[:, 0].flatten(1)
            c = F.avg_pool2d(fg[:, None], cell * 4)[:, 0].flatten(1)
            w = torch.where(c > 0.3, c, torch.zeros_like(c))
            loghi = torch.log(hi + 0.02)
            parts.append(self._trend(loghi, w, poly))
            big = torch.full_like(loghi, 1e3)
            spread = torch.where(w > 0, loghi, -big).amax(1) - torch.where(w > 0, loghi, big).amin(1)
            parts.append(torch.where((w > 0).any(1), spread, torch.zeros_like(spread))[:, None])
        flat = smooth.flatten(1)
        dark = flat <= torch.quantile(flat, 0.25, dim=1, keepdim=True)
        cnt = dark.float().sum(1).clamp(min=1)
        mu = (flat * dark).sum(1) / cnt
        sd = torch.sqrt((((flat - mu[:, None]) ** 2) * dark).sum(1) / cnt)
        fine = img.flatten(1)
        fdark = fine <= torch.quantile(fine[:, ::4], 0.25, dim=1, keepdim=True)
        fcnt = fdark.float().sum(1).clamp(min=1)
        fmu = (fine * fdark).sum(1) / fcnt
        fsd = torch.sqrt((((fine - fmu[:, None]) ** 2) * fdark).sum(1) / fcnt)
        parts.append(torch.stack([torch.log(mu + 1e-3), torch.log(sd + 1e-4), torch.log(sd + 1e-4) - torch.log(fsd + 1e-4)], 1))
        return torch.cat(parts, 1)

    def _entropy(self, values: torch.Tensor, weight: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
        """Entropy (nats) of the weighted histogram (32 bins over [lo, hi] per row) of `values` (B, P)."""
        bins = 32
        idx = ((values - lo[:, None]) / (hi - lo).clamp(min=1e-3)[:, None] * bins).floor().clamp(0, bins - 1).long()
        h = torch.zeros(values.shape[0], bins, device=values.device).scatter_add_(1, idx, weight)
        p = h / h.sum(1, keepdim=True).clamp(min=1e-6)
        return -(p * torch.log(p.clamp(min=1e-9))).sum(1)

    def _shading(self, img: torch.Tensor) -> torch.Tensor:
        """1.4.0: what any smooth multiplicative field does, whatever made it. log(image) = log(tissue) + log(field):
        a low-order (linear, quadratic) fit of the log intensity of the foreground pixels (64x64) over the frame,
        its range and the share of the variance it explains, and (as N3/N4 correct shading) how much sharper the
        foreground's histogram gets once that trend is removed (a field smears each tissue's peak); and the ratio of
        the bright tissue (75th percentile of the foreground) between opposite halves of the frame, along the axes
        and the diagonals, sorted (a turn or flip changes nothing)."""
        s = F.avg_pool2d(img[:, None], 4)[:, 0].flatten(1)  # (B, 4096)
        q = torch.quantile(s, torch.tensor([0.9], device=img.device), dim=1)[0]
        fg = (s > torch.clamp(0.15 * q, min=0.04)[:, None]).float()
        n_fg = fg.sum(1).clamp(min=1.0)
        logs = torch.log(s + 0.02)
        mu = (logs * fg).sum(1) / n_fg
        var = (((logs - mu[:, None]) ** 2) * fg).sum(1) / n_fg
        big = torch.full_like(logs, 1e3)
        lo = torch.where(fg > 0, logs, big).amin(1)
        hi = torch.where(fg > 0, logs, -big).amax(1)
        h0 = self._entropy(logs, fg, lo, hi)
        feats: list[torch.Tensor] = [h0]
        for terms in (3, 6):
            poly = self.poly64[:, :terms]
            a = poly[None] * fg[:, :, None]
            ata = torch.matmul(poly.T[None], a) + 1e-3 * torch.eye(terms, device=img.device)[None]
            beta = torch.linalg.solve(ata, torch.matmul(a.transpose(1, 2), logs[:, :, None]))
            trend = torch.matmul(poly[None], beta)[:, :, 0]
            t_fg = torch.where(fg > 0, trend, torch.zeros_like(trend))
            t_range = torch.where(fg > 0, trend, -big).amax(1) - torch.where(fg > 0, trend, big).amin(1)
            resid = logs - trend
            r_var = (((resid - ((resid * fg).sum(1) / n_fg)[:, None]) ** 2) * fg).sum(1) / n_fg
            corrected = logs - (t_fg - (t_fg * fg).sum(1, keepdim=True) / n_fg[:, None])
            h1 = self._entropy(corrected, fg, lo, hi)
            feats += [t_range.clamp(0.0, 10.0), 1.0 - r_var / var.clamp(min=1e-6), h0 - h1]
        # bright tissue of opposite halves: rows, columns, the two diagonals
        yy = self.poly64[:, 2]
        xx = self.poly64[:, 1]
        ratios: list[torch.Tensor] = []
        for d in (yy, xx, xx + yy, xx - yy):
            side_a = (fg * (d[None] < 0).float()) > 0
            side_b = (fg * (d[None] > 0).float()) > 0
            va = torch.where(side_a, s, torch.full_like(s, float("nan")))
            vb = torch.where(side_b, s, torch.full_like(s, float("nan")))
            qa = torch.nanquantile(va, 0.75, dim=1)
            qb = torch.nanquantile(vb, 0.75, dim=1)
            r = torch.abs(torch.log((qa + 0.02) / (qb + 0.02)))
            ratios.append(torch.nan_to_num(r, nan=0.0))
        rs = torch.sort(torch.stack(ratios, 1), dim=1).values
        return torch.cat([torch.stack(feats, 1), rs], 1)

    def _seams(self, img: torch.Tensor) -> torch.Tensor:
        """1.4.0: fold-over. What lies beyond the field of view lands on the opposite side, so an aliased frame is
        continuous *across* its edges (the last rows lead into the first ones), where a cut-off clean frame jumps.
        Per axis: the signal at the two edges, the jump across the seam against the change just inside, and the
        correlation of the two edge profiles; the two axes sorted by the jump ratio (a turn changes nothing)."""
        per_axis: list[torch.Tensor] = []
        for t in (img, img.transpose(1, 2)):
            a = t[:, :3].mean(1)
            b = t[:, -3:].mean(1)
            a_in = t[:, 3:6].mean(1)
            b_in = t[:, -6:-3].mean(1)
            energy = 0.5 * (a + b).mean(1)
            seam = (a - b).abs().mean(1)
            inner = 0.5 * ((a - a_in).abs().mean(1) + (b - b_in).abs().mean(1))
            za = a - a.mean(1, keepdim=True)
            zb = b - b.mean(1, keepdim=True)
            corr = (za * zb).sum(1) / torch.sqrt((za ** 2).sum(1) * (zb ** 2).sum(1) + 1e-8)
            per_axis.append(torch.stack([torch.log(energy + 1e-3), torch.log((seam + 1e-3) / (inner + 1e-3)),
                                         torch.log(seam + 1e-3), corr], 1))
        first, second = per_axis[0], per_axis[1]
        swap = (first[:, 1] > second[:, 1])[:, None]
        return torch.cat([torch.where(swap, second, first), torch.where(swap, first, second)], 1)

    def _lines(self, img: torch.Tensor) -> torch.Tensor:
        """1.4.0: motion and line-wise errors break the smoothness of k-space from one phase-encode line to the
        next, along one axis only. The roughness (mean |second difference|) of log |k| and of the log energy of
        each line, along each axis at mid/high frequencies; the larger and the smaller axis, and their log ratio."""
        z = (img - img.mean(dim=(1, 2), keepdim=True)) * self.window
        logk = torch.log(torch.fft.fftshift(torch.fft.fft2(z).abs(), dim=(-2, -1)) + 1e-6)
        ring = ((self.radius > 0.1) & (self.radius < 0.8)).float()
        d_y = (logk[:, 2:] - 2 * logk[:, 1:-1] + logk[:, :-2]).abs()
        d_x = (logk[:, :, 2:] - 2 * logk[:, :, 1:-1] + logk[:, :, :-2]).abs()
        ry = (d_y * ring[1:-1]).sum((1, 2)) / ring[1:-1].sum()
        rx = (d_x * ring[:, 1:-1]).sum((1, 2)) / ring[:, 1:-1].sum()
        energy = torch.exp(2 * logk)
        half = self.size // 2
        ly = torch.log(energy.sum(2) + 1e-8)[:, half + 3:]
        lx = torch.log(energy.sum(1) + 1e-8)[:, half + 3:]
        ey = (ly[:, 2:] - 2 * ly[:, 1:-1] + ly[:, :-2]).abs().mean(1)
        ex = (lx[:, 2:] - 2 * lx[:, 1:-1] + lx[:, :-2]).abs().mean(1)
        return torch.stack([torch.maximum(ry, rx), torch.minimum(ry, rx), torch.log(torch.maximum(ry, rx) / torch.minimum(ry, rx)),
                            torch.maximum(ey, ex), torch.minimum(ey, ex), torch.log((torch.maximum(ey, ex) + 1e-4) / (torch.minimum(ey, ex) + 1e-4))], 1)

    def physics_features(self, x: torch.Tensor) -> torch.Tensor:
        """1.4.0's statistics alone, (B, 2, 256, 256) → (B, 31)."""
        x = x.float()
        whole, crop = x[:, 0], x[:, 1]
        f = torch.cat([self._shading(whole), self._seams(whole), self._lines(whole), self._lines(crop)], 1)
        return torch.nan_to_num(f, nan=0.0, posinf=30.0, neginf=-30.0)

    def features_raw(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 2, 256, 256) → (B, F) statistics, before standardisation."""
        x = x.float()
        whole, crop = x[:, 0], x[:, 1]
        edges = torch.sqrt(F.avg_pool2d(((whole[:, 1:, 1:] - whole[:, :-1, 1:]) ** 2
                                         + (whole[:, 1:, 1:] - whole[:, 1:, :-1]) ** 2)[:, None], 1)[:, 0] + 1e-8)
        edges = F.pad(edges, (0, 1, 0, 1))
        parts = [self._noise(crop), self._noise(whole), self._gradients(crop), self._gradients(whole),
                 self._spectrum(crop), self._spectrum(whole), self._autocorr(whole), self._autocorr(edges),
                 self._layout(whole)]
        if self.extra_stats:
            parts.append(self._extra(whole))
        if self.physics_stats:
            parts.append(self.physics_features(x))
        f = torch.cat(parts, dim=1)
        return torch.nan_to_num(f, nan=0.0, posinf=30.0, neginf=-30.0)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 2, 256, 256) → (B, artifacts + severe heads) logits: each artifact's presence, then "severe" (one
        logit, or one per family)."""
        f = (self.features_raw(x) - self.mean) / self.std
        return self.mlp(f.clamp(-10.0, 10.0))

    @torch.jit.export
    def from_features(self, f: torch.Tensor) -> torch.Tensor:
        """Standardised features → logits (training works on precomputed features)."""
        return self.mlp(f.clamp(-10.0, 10.0))

    @torch.jit.export
    def scores(self, raw: torch.Tensor) -> torch.Tensor:
        n = self.n_artifacts
        presence = torch.sigmoid(raw[:, :n])
        if self.calibrated:
            # For each output, the share of clean views (training sources, each scored by a model trained without
            # it) that scored at or above this one; quality maps the smallest share, a p-value, to [0, 1] on a log
            # scale: 1 = as clean as a typical clean image, 0.5 = rarer than 1 in 100 clean images, 0 = 1 in 10^4.
            # The count of clean views at or below is interpolated linearly between neighbouring table entries, so
            # that quality has a gradient (fine-tuning from reviewers' labels trains through it).
            table = self.clean_logits
            k = table.shape[1]
            # the table's rows: the n presence logits (1.3.0), or (1.4.0) those and the severe heads' logits after
            x = raw[:, :table.shape[0]].T.contiguous()  # (rows, B)
            counts = torch.searchsorted(table, x, right=True)
            lo = torch.gather(table, 1, torch.clamp(counts - 1, min=0))
            hi = torch.gather(table, 1, torch.clamp(counts, max=k - 1))
            frac = torch.clamp((x - lo) / torch.clamp(hi - lo, min=1e-6), 0.0, 1.0)
            inside = (counts > 0) & (counts < k)
            rank = counts.float() + torch.where(inside, frac, torch.zeros_like(frac))
            share = 1.0 - rank / float(k + 1)
            # beyond the most extreme clean view, the share keeps falling (by e per unit of logit), so that a worse
            # image still scores lower
            share = share * torch.exp(-torch.clamp(x - table[:, -1:], min=0.0))
            p_value = share.amin(dim=0)[:, None]
            quality = torch.clamp(1.0 + torch.log10(p_value + 1e-4) / 4.0, 0.0, 1.0)
        else:
            quality = 1.0 - torch.sigmoid(raw[:, n:]).amax(dim=1, keepdim=True)  # the most likely severe family
        return torch.cat([quality, presence], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 2, 256, 256) in [0, 1] → (B, 7): quality, then the probability of each artifact."""
        return self.scores(self.logits(x))
