"""Synthetic galaxies rendered as SDSS-like colour images (for :mod:`galaxyzoo_cli.data.synthetic`).

The model: analytic profiles (Sersic bulge, exponential disk, spiral arms, bar, odd features, all
softened by the seeing) summed in linear flux per colour, asinh-stretched (Lupton et al. 2004), plus
sky, correlated sky noise and neighbouring objects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from galaxyzoo_cli.core.settings import REFERENCE_SIDE

KINDS = ("smooth", "disk", "edge_on", "star")
BULGE_SHAPES = ("rounded", "boxy", "none")
ODD_FEATURES = ("ring", "lens", "disturbed", "irregular", "other", "merger", "dust_lane")
_LOW = REFERENCE_SIDE // 2
"""Render side: galaxies are smooth, so rendering at half resolution and upsampling loses nothing
visible, quarters the cost, and gives the sky noise the blotchy, correlated look of SDSS JPEGs."""

_SCALE = REFERENCE_SIDE / _LOW
# Pixel centres of the render grid, in pixels of the 424 frame measured from the image centre.
_GRID = (np.arange(_LOW, dtype=np.float32) + 0.5) * _SCALE - REFERENCE_SIDE / 2
_Y, _X = np.meshgrid(_GRID, _GRID, indexing="ij")

_PSF = 1.6
"""Seeing core (424-frame px): analytic profiles are softened by it, point sources are this wide."""

# Colours as linear (R, G, B) weights, G = 1: old stellar populations (bulges, ellipticals) are
# yellow-red; disks are whiter; spiral arms, rings and star-forming clumps are blue.
_RED = np.array([1.45, 1.0, 0.56], dtype=np.float32)
_DISK = np.array([1.22, 1.0, 0.76], dtype=np.float32)
_BLUE = np.array([0.85, 1.0, 1.20], dtype=np.float32)
_SKY = np.array([2.8, 2.8, 0.4], dtype=np.float32)
# Sky noise: a part per channel plus their mean added to all three (mostly luminance noise).
_SKY_NOISE_GREY = 7.5
_SKY_NOISE_COLOUR = 3.0
_STRETCH = 0.04
"""Softening of the asinh stretch (relative to the central flux): SDSS colour images are
asinh-stretched, which keeps bright centres below saturation while showing the faint outer disk."""


@dataclass(frozen=True)
class GalaxyParams:
    """The physical description of one synthetic galaxy (sizes in pixels of the 424 frame).

    ``kind`` is the true morphology: ``"smooth"`` (elliptical), ``"disk"`` (face-on to inclined
    disk), ``"edge_on"`` (disk seen edge-on) or ``"star"`` (not a galaxy: a star, or with a small
    ``axis_ratio`` an artefact such as a satellite trail).
    ``featured`` in [0, 1] is how clearly disk structure shows; it sets the contrast of arms,
    clumps and the outer disk in the image and the share of volunteers who answer "features".
    """

    kind: str
    featured: float
    radius: float
    """Scale of the light profile: the disk scale length or the bulge's effective radius."""
    brightness: float
    """Central peak, counts of 255 in the brightest channel."""
    axis_ratio: float
    """Apparent minor/major axis ratio of the main body (roundness; inclination for disks)."""
    angle: float
    """Position angle of the major axis, radians; labels do not depend on it."""
    bulge: float
    """Bulge-to-total light ratio in [0, 1]."""
    bulge_shape: str
    """For edge-on disks: one of :data:`BULGE_SHAPES`; ``"rounded"`` otherwise."""
    bar: float
    """Bar strength in [0, 1]; 0: no bar."""
    arms: int
    """Number of spiral arms (0: none; 5 stands for more than four)."""
    pitch: float
    """Arm pitch angle in degrees: tight < 15 <= medium < 25 <= loose."""
    odd: str
    """One of :data:`ODD_FEATURES`, or ``""`` for none."""
    odd_strength: float
    """How visible the odd feature is, in [0, 1]."""
    odd_angle: float
    """Direction (radians) of a companion, arc or disturbance."""
    neighbours: int
    """Small unrelated stars and galaxies in the field."""
    colour: float
    """In [0, 1], blue to red: a star's colour; for galaxies, a small shift of all their colours."""


def _ellipse_radius(u: np.ndarray, v: np.ndarray, q: float, power: float = 2.0) -> np.ndarray:
    """Elliptical radius, softened by the PSF; ``power`` > 2 gives boxy isophotes."""
    if power == 2.0:
        return np.sqrt(u * u + (v / q) ** 2 + _PSF**2)
    return (np.abs(u) ** power + np.abs(v / q) ** power + _PSF**power) ** (1.0 / power)


def _sersic(r: np.ndarray, r_eff: float, n: float) -> np.ndarray:
    """Sersic profile normalised to 1 at r = 0 (b_n from the usual approximation)."""
    b = 2.0 * n - 1.0 / 3.0
    return np.exp(-b * (r / r_eff) ** (1.0 / n))


def _tint(colour: np.ndarray, shift: float) -> np.ndarray:
    """``colour`` made redder (shift > 0.5) or bluer (shift < 0.5) by up to about 10%."""
    return colour * (1.0 + np.float32(0.2 * (shift - 0.5)) * np.array([1, 0, -1], np.float32))


def _components(
    p: GalaxyParams, u: np.ndarray, v: np.ndarray, rng: np.random.Generator
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The galaxy's light as (flux map, colour) pairs, in the frame of its major axis (u, v).

    ``rng`` places the star-forming clumps of disks."""
    comps: list[tuple[np.ndarray, np.ndarray]] = []
    q = p.axis_ratio
    if p.kind == "star":
        if p.axis_ratio < 0.5:  # a satellite trail through the frame
            trail = np.exp(-0.5 * (v / _PSF) ** 2 - 0.5 * (u / 150.0) ** 2)
            return [(trail, _tint(_DISK, p.colour))]
        r = np.sqrt(u * u + v * v)
        core = np.exp(-0.5 * (r / (1.3 * _PSF)) ** 2) + 0.04 * np.exp(-r / 6.0)
        return [(core, _BLUE + (_RED - _BLUE) * np.float32(p.colour))]
    if p.kind == "edge_on":
        r_disk = np.sqrt(u * u + (v / q) ** 2 + _PSF**2)
        disk = np.exp(-r_disk / p.radius) * (1.0 - p.bulge)
        if p.odd == "dust_lane":
            # A dark lane along the mid-plane, as in dusty edge-on disks.
            disk *= 1.0 - 0.8 * p.odd_strength * np.exp(-0.5 * (v / (0.35 * q * p.radius)) ** 2)
        comps.append((disk, _DISK))
        if p.bulge > 0:
            power = 4.0 if p.bulge_shape == "boxy" else 2.0
            rb = _ellipse_radius(u, v, 0.75 if p.bulge_shape == "boxy" else 0.85, power)
            comps.append((p.bulge * _sersic(rb, 0.55 * p.radius, 2.0), _RED))
        return comps
    # Smooth and disk galaxies: a bulge (elliptical body) plus a disk carrying the structure.
    r = _ellipse_radius(u, v, q)
    if p.bulge > 0:
        r_bulge = _ellipse_radius(u, v, q if p.kind == "smooth" else max(q, 0.8))
        r_eff = p.radius * (1.2 if p.kind == "smooth" else 0.45)
        comps.append((p.bulge * _sersic(r_bulge, r_eff, 2.0), _RED))
    disk = (1.0 - p.bulge) * np.exp(-r / p.radius)
    # Face-on polar coordinates of the disk plane, for arms and clumps.
    theta = np.arctan2(v / q, u)
    if p.arms:
        # Logarithmic spiral: phase = m (theta - ln(r) / tan(pitch)); sharpened to narrow arms.
        m = p.arms + (1 if p.arms == 5 else 0)
        phase = m * (theta - np.log(r / p.radius) / math.tan(math.radians(p.pitch)))
        wave = (0.5 + 0.5 * np.cos(phase)) ** 2
        # Arms fade in the centre (where the bulge dominates) and with the disk.
        amp = 1.6 * p.featured * (1.0 - np.exp(-((r / (1.2 * p.radius)) ** 2)))
        comps.append((disk * (1.0 - 0.5 * p.featured), _DISK))
        comps.append((disk * amp * wave, _BLUE))
    else:
        comps.append((disk, _DISK))
    if p.kind == "disk":
        # Patchy star formation (HII regions) in the disk, whose contrast follows `featured`.
        clumps = np.zeros_like(u)
        for _ in range(2 + int(8 * p.featured)):
            rc, tc = rng.uniform(0.7, 2.8) * p.radius, rng.uniform(0.0, 2 * math.pi)
            du, dv = u - rc * math.cos(tc), v - q * rc * math.sin(tc)
            width = rng.uniform(0.25, 0.5) * p.radius
            clumps += math.exp(-rc / p.radius) * np.exp(-0.5 * (du * du + dv * dv) / width**2)
        comps.append((0.9 * p.featured * (1.0 - p.bulge) * clumps, _BLUE))
    if p.bar > 0:
        rb = np.sqrt((u / (2.2 * p.radius)) ** 2 + (v / (0.45 * p.radius)) ** 2 + 0.01)
        comps.append((0.45 * p.bar * np.exp(-(rb**4)), _DISK))
    return comps


def _odd_components(
    p: GalaxyParams, u: np.ndarray, v: np.ndarray, rng: np.random.Generator
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Light of the odd feature, if any (dust lanes are handled with the disk).

    ``rng`` places the clumps of irregular and disturbed galaxies."""
    s, a = p.odd_strength, p.odd_angle
    q = max(p.axis_ratio, 0.3)
    if p.odd == "ring":
        r = np.sqrt(u * u + (v / q) ** 2)
        return [(0.25 * s * np.exp(-0.5 * ((r - 2.4 * p.radius) / (0.45 * p.radius)) ** 2), _BLUE)]
    if p.odd == "lens":
        # A thin arc around the galaxy, like a gravitationally lensed background source.
        r = np.sqrt(u * u + v * v)
        theta = np.arctan2(v, u)
        arc = np.exp(-0.5 * ((r - 4.0 * p.radius) / 2.0) ** 2)
        return [(0.4 * s * arc * np.exp(-8.0 * (1.0 - np.cos(theta - a))), _BLUE)]
    if p.odd in ("disturbed", "irregular", "other"):
        # Off-centre light: a broad lopsided plume (disturbed), scattered star-forming clumps
        # (irregular) or one compact odd knot (other).
        n, width, amp = {
            "disturbed": (1, (1.2, 1.8), 0.3),
            "irregular": (int(rng.integers(3, 7)), (0.2, 0.45), 0.35),
            "other": (1, (0.15, 0.25), 0.6),
        }[p.odd]
        light = np.zeros_like(u)
        for _ in range(n):
            ang = a + rng.normal(0.0, 1.2 if n > 1 else 0.2)
            dist = p.radius * rng.uniform(0.8, 2.4)
            du, dv = u - dist * math.cos(ang), v - dist * math.sin(ang)
            w = rng.uniform(*width) * p.radius
            light += rng.uniform(0.5, 1.0) * np.exp(-0.5 * (du * du + dv * dv) / w**2)
        return [(amp * s * light, _BLUE)]
    if p.odd == "merger":
        # A companion of similar size and colour, close enough to touch, plus a faint bridge.
        dist = 4.0 * p.radius
        du, dv = u - dist * math.cos(a), v - dist * math.sin(a)
        comp = np.exp(-np.sqrt(du * du + dv * dv + _PSF**2) / (0.7 * p.radius))
        along = np.clip((u * math.cos(a) + v * math.sin(a)) / dist, 0.0, 1.0)
        across = -u * math.sin(a) + v * math.cos(a)
        bridge = np.exp(-0.5 * (across / (0.6 * p.radius)) ** 2) * along * (1.0 - along) * 4.0
        return [(0.8 * s * comp, _RED), (0.08 * s * bridge, _DISK)]
    return []


def _add_neighbours(img: np.ndarray, n: int, rng: np.random.Generator) -> None:
    """Stamp ``n`` small stars and distant galaxies onto ``img`` ((3, H, W) counts) in place."""
    for _ in range(n):
        # Keep neighbours off the central galaxy: the target is the one in the middle.
        while True:
            cx, cy = rng.uniform(4, _LOW - 4, size=2)
            if math.hypot(cx - _LOW / 2, cy - _LOW / 2) > 22:
                break
        is_star = rng.random() < 0.6
        sigma = (0.55 if is_star else rng.uniform(0.8, 2.5)) * rng.uniform(0.9, 1.4)
        peak = float(np.exp(rng.uniform(math.log(8.0), math.log(160.0 if is_star else 70.0))))
        colour = rng.choice([_RED, _DISK, _BLUE]) if is_star else _RED
        half = int(4 * sigma) + 1
        x0, x1 = max(int(cx) - half, 0), min(int(cx) + half + 1, _LOW)
        y0, y1 = max(int(cy) - half, 0), min(int(cy) + half + 1, _LOW)
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        e = 1.0 if is_star else rng.uniform(0.4, 1.0)
        d2 = (xx + 0.5 - cx) ** 2 + ((yy + 0.5 - cy) / e) ** 2
        img[:, y0:y1, x0:x1] += peak * np.exp(-0.5 * d2 / sigma**2) * colour[:, None, None]


def render(params: GalaxyParams, rng: np.random.Generator) -> np.ndarray:
    """Render ``params`` as an SDSS-like image: (424, 424, 3) uint8 RGB, galaxy at the centre.

    The model: analytic profiles (Sersic bulge, exponential disk, spiral arms, bar, odd features,
    all softened by the seeing) summed in linear flux per colour, asinh-stretched so the central
    peak is ``params.brightness``, plus sky, correlated sky noise and neighbouring objects drawn
    from ``rng``. Rendered at half resolution and upsampled bilinearly.
    """
    return np.asarray(render_image(params, rng))


def render_image(params: GalaxyParams, rng: np.random.Generator) -> Image.Image:
    """:func:`render` as a PIL image (what the JPEG encoder takes, without a copy)."""
    # Small centring error, as in the Kaggle cut-outs.
    dx, dy = rng.normal(0.0, 0.8, size=2)
    c, s = math.cos(params.angle), math.sin(params.angle)
    x, y = _X - np.float32(dx), _Y - np.float32(dy)
    u, v = x * c + y * s, -x * s + y * c
    comps = _components(params, u, v, rng) + _odd_components(params, u, v, rng)
    # Linear flux per channel, channel-first (plain loops: a BLAS product would spawn threads).
    flux = np.zeros((3, _LOW, _LOW), dtype=np.float32)
    for light, colour in comps:
        if params.kind != "star":
            colour = _tint(colour, params.colour)
        for channel in range(3):
            flux[channel] += colour[channel] * light
    grey = flux.sum(axis=0)
    centre = float(grey.max())
    # asinh stretch of the total light, colours kept (Lupton et al. 2004).
    scale = np.arcsinh(grey / (_STRETCH * centre)) / np.maximum(grey, 1e-12)
    img = flux * scale
    img *= np.float32(params.brightness / float(img.max()))
    _add_neighbours(img, params.neighbours, rng)
    img += _SKY[:, None, None]
    noise = rng.standard_normal((3, _LOW, _LOW), dtype=np.float32)
    img += noise * _SKY_NOISE_COLOUR
    img += noise.mean(axis=0) * _SKY_NOISE_GREY
    np.clip(img + 0.5, 0, 255, out=img)
    small = Image.fromarray(img.astype(np.uint8).transpose(1, 2, 0), "RGB")
    return small.resize((REFERENCE_SIDE, REFERENCE_SIDE), Image.Resampling.BILINEAR)
