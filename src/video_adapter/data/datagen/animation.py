"""Animation-style domain dataset ("animation") for the paper's stylisation experiments (sec 4.1).

The paper adapts its broad prior to an animation style from a small set of cartoon videos, conditioning on Sobel
edges. This generator stands in for that set: toon-shaded 3D primitives (spheres, capsules, boxes) ray-cast with
numpy, lit by one light and quantised into a few flat bands, with dark outlines along silhouettes and creases, in
front of flat toon skies and grounds. Subjects: a ball bouncing, a character walking, jumping or waving, a box
spinning. Captions always say "cartoon" or "animated"; the broad corpus (`procedural.py`) never uses those words,
these templates, this palette or toon shading (`held_out`).

Frames are ray-cast at an integer multiple of the output size (about 96 render rows) with hard edges, then
area-averaged by `base.downsample`, so the flat bands stay flat and only their borders are blended.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import base

PALETTE = {  # caption colour -> toon RGB: brighter, more saturated cousins of base.COLORS
    "red": "#f0453d", "orange": "#ff9a26", "yellow": "#ffdb33", "green": "#5acc4d", "blue": "#4080f2",
    "purple": "#9e61e6", "pink": "#ff8cbf", "cyan": "#33d1e6"}
SKIN = ("#ffdcb8", "#eab486", "#b98257")
TROUSERS = ("#33407f", "#59402e", "#404047")
EYES = "#1a1a1f"
SKIES = {"day": "#8cccff", "sunset": "#ffb880", "dusk": "#b39eeb"}
GROUNDS = {"grass": "#6bbf4d", "sand": "#f5d68c", "snow": "#edf5ff"}
CLOUD, SUN = "#fafafa", "#ffe566"
BAND_EDGES, BAND_LEVELS = [0.25, 0.6], [0.6, 0.82, 1.0]  # lambert thresholds, and the brightness of each band
STYLES = ("a cartoon", "an animated")
TEMPLATES = {
    "bounce": "{style} {color} ball bounces {direction} across the {ground}",
    "walk": "{style} character in a {color} shirt walks {direction} on the {ground}",
    "jump": "{style} character in a {color} shirt jumps up and down on the {ground}",
    "wave": "{style} character in a {color} shirt waves hello",
    "spin": "{style} {color} box spins around on the {ground}",
}
DIRECTIONS = {"to the left": -1, "to the right": 1}
SHIRT, SKIN_MAT, TROUSER_MAT, EYE_MAT = 1, 2, 3, 4  # material slots of a clip's colour table (0: unused)
TORSO, HEAD, EYE, ARMS, LEGS, PROP = 1, 2, 3, 4, 6, 8  # part ids: outlines are drawn where they change


def rgb(hex_color: str) -> np.ndarray:
    return np.array([int(hex_color[i:i + 2], 16) for i in (1, 3, 5)], np.float32) / 255


def _scale(height: int) -> int:
    """Render multiple (2 to 4) that gives about 96 render rows, so thin limbs and outlines survive the average."""
    return int(min(4, max(2, -(-96 // height))))


class _Raster:
    """Orthographic ray-casting of primitives into per-frame depth, lambert, material and part buffers.

    Coordinates are render pixels: x right, y down, z towards the viewer; nearest surface wins.
    """

    def __init__(self, frames: int, h: int, w: int, light: np.ndarray):
        self.h, self.w, self.light = h, w, light
        self.depth = np.full((frames, h, w), -np.inf, np.float32)
        self.lam = np.zeros((frames, h, w), np.float32)
        self.mat = np.zeros((frames, h, w), np.uint8)
        self.part = np.zeros((frames, h, w), np.int16)

    def _window(self, x0, x1, y0, y1):
        ya, yb = max(0, int(np.floor(y0))), min(self.h, int(np.ceil(y1)) + 1)
        xa, xb = max(0, int(np.floor(x0))), min(self.w, int(np.ceil(x1)) + 1)
        if ya >= yb or xa >= xb:
            return None
        x = np.arange(xa, xb, dtype=np.float32)[None, :] + 0.5
        y = np.arange(ya, yb, dtype=np.float32)[:, None] + 0.5
        return (slice(ya, yb), slice(xa, xb)), x, y

    def _put(self, f, window, inside, depth, lam, mat, part):
        zbuf = self.depth[f][window]
        hit = inside & (depth > zbuf)
        zbuf[hit] = depth[hit]
        self.lam[f][window][hit] = np.broadcast_to(lam, hit.shape)[hit]
        self.mat[f][window][hit] = mat
        self.part[f][window][hit] = np.broadcast_to(part, hit.shape)[hit]

    def _round(self, f, window, u, v, r, z, mat, part):
        """Shared tail of spheres and capsules: a hemisphere of radius r bulging towards the viewer from (u, v)."""
        q = r * r - u * u - v * v
        bulge = np.sqrt(np.maximum(q, 0))
        lam = (u * self.light[0] + v * self.light[1] + bulge * self.light[2]) / r
        self._put(f, window, q > 0, z + bulge, lam, mat, part)

    def sphere(self, f, c, r, mat, part, squash=(1.0, 1.0)):
        sx, sy = squash
        found = self._window(c[0] - r * sx, c[0] + r * sx, c[1] - r * sy, c[1] + r * sy)
        if found:
            window, x, y = found
            self._round(f, window, (x - c[0]) / sx, (y - c[1]) / sy, r, c[2], mat, part)

    def capsule(self, f, a, b, r, mat, part):
        found = self._window(min(a[0], b[0]) - r, max(a[0], b[0]) + r, min(a[1], b[1]) - r, max(a[1], b[1]) + r)
        if found:
            window, x, y = found
            d = np.subtract(b, a)
            s = np.clip(((x - a[0]) * d[0] + (y - a[1]) * d[1]) / max(d[0] ** 2 + d[1] ** 2, 1e-9), 0, 1)
            self._round(f, window, x - (a[0] + s * d[0]), y - (a[1] + s * d[1]), r, a[2] + s * d[2], mat, part)

    def box(self, f, c, half, rot, mat, part):
        """Box with half-sizes `half` turned by `rot` (box axes -> world); each face gets its own part id (creases)."""
        reach = float(np.linalg.norm(half))
        found = self._window(c[0] - reach, c[0] + reach, c[1] - reach, c[1] + reach)
        if not found:
            return
        window, x, y = found
        # The pixel's ray, in box coordinates, is a + z * b; each slab |p_i| <= half_i bounds z from both sides.
        b = np.where(np.abs(rot[2]) < 1e-6, 1e-6, rot[2])
        a = [rot[0, i] * (x - c[0]) + rot[1, i] * (y - c[1]) - rot[2, i] * c[2] for i in range(3)]
        near = np.stack([(np.sign(b[i]) * half[i] - a[i]) / b[i] for i in range(3)])
        far = np.stack([(-np.sign(b[i]) * half[i] - a[i]) / b[i] for i in range(3)])
        face = near.argmin(0)
        depth = np.take_along_axis(near, face[None], 0)[0]
        lam = (rot * np.sign(b)).T @ self.light  # lambert of each visible face, by axis
        self._put(f, window, far.max(0) <= depth, depth, lam[face], mat, part + face)


def _outline(part: np.ndarray, depth: np.ndarray, width: int) -> np.ndarray:
    """Dark-line mask: silhouettes `width` pixels wide, inner lines (limb over body, box creases) one pixel wide.

    Lines sit on the nearer side of each change of part id; inner ones stay thin so that a figure a dozen output
    pixels tall is not all outline.
    """
    silhouette, inner = np.zeros(part.shape, bool), np.zeros(part.shape, bool)
    for axis in (1, 2):
        n = part.shape[axis]
        for here, there in ((slice(1, n), slice(0, n - 1)), (slice(0, n - 1), slice(1, n))):
            a, b = (slice(None),) * axis + (here,), (slice(None),) * axis + (there,)
            near = (part[a] != part[b]) & (depth[a] >= depth[b])
            silhouette[a] |= near & (part[b] == 0)
            inner[a] |= near & (part[b] != 0)
    for k in range(width - 1):  # widen alternately down-right and up-left, so lines stay centred
        grown = silhouette.copy()
        if k % 2 == 0:
            grown[:, 1:] |= silhouette[:, :-1]
            grown[:, :, 1:] |= silhouette[:, :, :-1]
        else:
            grown[:, :-1] |= silhouette[:, 1:]
            grown[:, :, :-1] |= silhouette[:, :, 1:]
        silhouette = grown
    return silhouette | inner


def _ellipses(h: int, w: int, cx, cy, rx, ry) -> np.ndarray:
    """[N, h, w] bool masks of N axis-aligned ellipses (render pixels)."""
    y = np.arange(h, dtype=np.float32)[None, :, None] + 0.5
    x = np.arange(w, dtype=np.float32)[None, None, :] + 0.5
    cx, cy, rx, ry = (np.asarray(v, np.float32).reshape(-1, 1, 1) for v in (cx, cy, rx, ry))
    return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 < 1


@dataclass(frozen=True)
class AnimationGenerator(base.Generator):
    kind: str = "animation"
    version: str = "1"
    templates: tuple[str, ...] = tuple(TEMPLATES.values())
    look: dict = field(default_factory=lambda: {
        "renderer": "numpy orthographic ray-casting of spheres, capsules and boxes",
        "shading": "toon: lambert quantised into flat bands", "bands": len(BAND_LEVELS), "band_edges": BAND_EDGES,
        "band_levels": BAND_LEVELS, "light": [-0.45, -0.65, 0.62],
        "outline_width": 0.025, "outline_color": "#1c1420",  # outline width as a fraction of the frame height
        "palette": dict(PALETTE), "skies": dict(SKIES), "grounds": dict(GROUNDS)})
    held_out: dict = field(default_factory=lambda: {
        "look": "toon shading: flat palette with dark outlines", "words": ["cartoon", "animated"],
        "templates": list(TEMPLATES.values()), "palette": list(PALETTE.values())})

    def clip(self, index: int, seed: int, size: tuple[int, int], frames: int) -> base.Clip:
        g = base.rng(seed, index)
        scale = _scale(size[0])
        h, w = size[0] * scale, size[1] * scale
        t = np.linspace(0, 1, frames) if frames > 1 else np.zeros(1)
        look = self.look
        motion = str(g.choice(list(TEMPLATES), p=[0.25, 0.25, 0.15, 0.15, 0.2]))
        ground, sky = str(g.choice(list(look["grounds"]))), str(g.choice(list(look["skies"])))
        clashes = {("green", "grass"), ("yellow", "sand")}  # a subject the colour of the ground would vanish
        color = str(g.choice([c for c in look["palette"] if (c, ground) not in clashes]))
        meta = {"motion": motion, "style": str(g.choice(STYLES)), "color": color, "ground": ground, "sky": sky,
                "horizon": round(float(g.uniform(0.45, 0.6)), 4), "floor": round(float(g.uniform(0.82, 0.92)), 4),
                "skin": str(g.choice(SKIN)), "trousers": str(g.choice(TROUSERS)), "render_scale": scale}
        colors = np.zeros((5, 3), np.float32)  # indexed by material slot
        colors[[SHIRT, SKIN_MAT, TROUSER_MAT, EYE_MAT]] = [rgb(look["palette"][color]), rgb(meta["skin"]),
                                                         rgb(meta["trousers"]), rgb(EYES)]
        light = np.asarray(look["light"], np.float32)
        raster = _Raster(frames, h, w, light / np.linalg.norm(light))
        shadow_x, shadow_rx = getattr(self, f"_{motion}")(g, t, raster, meta)
        video = self._background(g, t, h, w, meta, shadow_x, shadow_rx)
        solid = raster.part > 0
        band = np.digitize(raster.lam[solid], look["band_edges"])
        video[solid] = colors[raster.mat[solid]] * np.asarray(look["band_levels"], np.float32)[band][:, None]
        width = round(look["outline_width"] * h)
        if width:
            video[_outline(raster.part, raster.depth, width)] = rgb(look["outline_color"])
        video = base.downsample((np.clip(video, 0, 1) * 255 + 0.5).astype(np.uint8), size)
        return base.Clip(video, self.caption(meta), meta)

    def caption(self, meta: dict) -> str:
        return TEMPLATES[meta["motion"]].format(**meta)

    def _background(self, g, t, h, w, meta, shadow_x, shadow_rx) -> np.ndarray:
        """Flat sky over flat ground, with flat hills, clouds and sun; each frame gets the subject's flat shadow."""
        look = self.look
        sky, ground = rgb(look["skies"][meta["sky"]]), rgb(look["grounds"][meta["ground"]])
        horizon = meta["horizon"] * h
        image = np.where((np.arange(h)[:, None, None] + 0.5) < horizon, sky, ground) * np.ones((1, w, 1), np.float32)
        hills, clouds = int(g.integers(0, 3)), int(g.integers(0, 3))
        sun = bool(meta["sky"] != "dusk" and g.random() < 0.4)
        mask = _ellipses(h, w, g.uniform(0, w, hills), [horizon] * hills, g.uniform(0.15, 0.35, hills) * w,
                         g.uniform(0.08, 0.18, hills) * h).any(0)
        image[mask & (np.arange(h)[:, None] + 0.5 < horizon)] = ground * 0.85
        if sun:
            image[_ellipses(h, w, g.uniform(0.1, 0.9) * w, g.uniform(0.08, 0.18) * h, 0.07 * h, 0.07 * h)[0]] = rgb(SUN)
        for _ in range(clouds):
            r, cx, cy = g.uniform(0.04, 0.07) * h, g.uniform(0.1, 0.9) * w, g.uniform(0.08, 0.25) * h
            puffs = _ellipses(h, w, cx + np.array([-1.2, 0, 1.2]) * r, cy + np.array([0.3, 0, 0.3]) * r,
                              np.array([0.8, 1, 0.8]) * r, np.array([0.8, 1, 0.8]) * r)
            image[puffs.any(0)] = rgb(CLOUD)
        video = np.repeat(image[None], len(t), axis=0)
        floor = meta["floor"] * h
        video[_ellipses(h, w, shadow_x, [floor] * len(t), shadow_rx, shadow_rx * 0.22)] = ground * 0.72
        meta["scenery"] = {"hills": hills, "clouds": clouds, "sun": sun}
        return video

    # --- subjects: each draws every frame and returns its shadow's centres and half-widths (render pixels) -----------

    def _bounce(self, g, t, raster, meta):
        h, w = raster.h, raster.w
        direction = str(g.choice(list(DIRECTIONS)))
        r = g.uniform(0.1, 0.15) * h
        x = w / 2 + DIRECTIONS[direction] * (t - 0.5) * g.uniform(0.45, 0.7) * (w - 2 * r)
        peak = g.uniform(0.25, 0.4) * h
        height = peak * np.abs(np.sin(np.pi * (g.uniform(1.5, 2.8) * t + g.uniform(0, 0.3))))
        squash = 1 - 0.25 * np.clip(1 - height / (0.25 * r), 0, 1)  # it flattens as it lands
        floor = meta["floor"] * h
        for f in range(len(t)):
            raster.sphere(f, (x[f], floor - r * squash[f] - height[f], 0.0), r, SHIRT, PROP, (1 / squash[f], squash[f]))
        meta.update(subject="ball", direction=direction, radius=round(r / h, 4), x=_track(x / w),
                    height=_track(height / h), squash=_track(squash))
        return x, r * (1 - 0.5 * height / peak)

    def _walk(self, g, t, raster, meta):
        h, w = raster.h, raster.w
        direction = str(g.choice(list(DIRECTIONS)))
        facing = DIRECTIONS[direction]
        hc = g.uniform(0.6, 0.72) * h
        x = w / 2 + facing * (t - 0.5) * g.uniform(0.35, 0.55) * w
        swing = 0.5 * np.sin(2 * np.pi * (g.uniform(1.5, 2.5) * t + g.uniform(0, 1)))
        for f in range(len(t)):
            _character(raster, f, x[f], meta["floor"] * h, hc, facing, (swing[f], -swing[f]),
                       ((-swing[f], 0.4), (swing[f], 0.4)))
        meta.update(subject="character", direction=direction, x=_track(x / w))
        return x, np.full_like(t, 0.2 * hc)

    def _jump(self, g, t, raster, meta):
        h, w = raster.h, raster.w
        hc = g.uniform(0.55, 0.65) * h
        x = np.full_like(t, g.uniform(0.3, 0.7) * w)
        air = np.abs(np.sin(np.pi * int(g.choice([1, 2])) * t))
        height = air * g.uniform(0.15, 0.25) * h
        for f in range(len(t)):
            arm = 0.3 + 2.2 * air[f]  # arms fly up in the air
            _character(raster, f, x[f], meta["floor"] * h, hc, 0, (0.1 + 0.25 * air[f],) * 2, ((arm, 0.2),) * 2,
                       lift=height[f])
        meta.update(subject="character", x=_track(x / w), height=_track(height / h))
        return x, 0.2 * hc * (1 - 0.5 * air)

    def _wave(self, g, t, raster, meta):
        h, w = raster.h, raster.w
        hc = g.uniform(0.6, 0.72) * h
        x = np.full_like(t, g.uniform(0.3, 0.7) * w)
        bend = 0.55 * np.sin(2 * np.pi * (g.uniform(2.0, 3.5) * t + g.uniform(0, 1)))
        waving = int(g.integers(0, 2))
        for f in range(len(t)):
            arms = [(0.25, 0.1), (0.25, 0.1)]
            arms[waving] = (2.3, bend[f])  # upper arm raised, forearm swinging side to side
            _character(raster, f, x[f], meta["floor"] * h, hc, 0, (0.08, 0.08), arms)
        side = ("right", "left")[waving]  # as seen on screen
        meta.update(subject="character", x=_track(x / w), waving=side, bend=_track(bend))
        return x, np.full_like(t, 0.2 * hc)

    def _spin(self, g, t, raster, meta):
        h, w = raster.h, raster.w
        half = g.uniform(0.12, 0.17) * h
        x = np.full_like(t, g.uniform(0.3, 0.7) * w)
        tilt = -g.uniform(0.3, 0.5)  # top face turned towards the viewer
        turn = g.uniform(0, np.pi) + g.choice([-1, 1]) * g.uniform(0.6, 1.4) * np.pi * t
        tilted = np.array([[1, 0, 0], [0, np.cos(tilt), -np.sin(tilt)], [0, np.sin(tilt), np.cos(tilt)]])
        for f in range(len(t)):
            c, s = np.cos(turn[f]), np.sin(turn[f])
            rot = tilted @ np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
            raster.box(f, (x[f], meta["floor"] * h - 1.15 * half, 0.0), np.full(3, half), rot, SHIRT, PROP)
        meta.update(subject="box", x=_track(x / w), angle=_track(turn))
        return x, np.full_like(t, 1.3 * half)


def _track(values) -> list[float]:
    return [round(float(v), 4) for v in values]


def _character(raster, f, x, floor, hc, facing, legs, arms, lift=0.0):
    """A chunky toon figure with feet on `floor`; facing 0 looks at the viewer, +-1 walks right/left in profile.

    legs: two angles from straight down; arms: two (shoulder, elbow) angles from straight down. Angles open
    forwards in profile and outwards facing the viewer.
    """
    side = facing != 0
    leg, upper, fore = 0.32 * hc, 0.17 * hc, 0.16 * hc
    hip = floor - lift - leg * np.cos(max(abs(legs[0]), abs(legs[1])))  # spread legs lower the hips: feet stay down
    feet = hip + leg  # heights below are measured up from here (rows grow downwards)
    for k, (phi, sign) in enumerate(zip(legs, (1, -1))):
        start = (x, hip, sign * 0.06 * hc) if side else (x + sign * 0.07 * hc, hip, 0.0)
        step = (facing * np.sin(phi), np.cos(phi), 0.0) if side else (sign * np.sin(phi), np.cos(phi), 0.0)
        raster.capsule(f, start, np.add(start, np.multiply(step, leg)), 0.075 * hc, TROUSER_MAT, LEGS + k)
    raster.capsule(f, (x, feet - 0.4 * hc, 0.0), (x, feet - 0.56 * hc, 0.0), 0.15 * hc, SHIRT, TORSO)
    for k, ((alpha, beta), sign) in enumerate(zip(arms, (1, -1))):
        shoulder = (x, feet - 0.62 * hc, sign * 0.17 * hc) if side else (x + sign * 0.17 * hc, feet - 0.62 * hc, 0.0)
        out = facing if side else sign
        elbow = np.add(shoulder, (out * upper * np.sin(alpha), upper * np.cos(alpha), 0.0))
        hand = elbow + (out * fore * np.sin(alpha + beta), fore * np.cos(alpha + beta), 0.0)
        raster.capsule(f, shoulder, elbow, 0.06 * hc, SHIRT, ARMS + k)
        raster.capsule(f, elbow, hand, 0.055 * hc, SKIN_MAT, ARMS + k)
    head = np.array([x + 0.02 * hc * facing, feet - 0.86 * hc, 0.0])
    raster.sphere(f, head, 0.19 * hc, SKIN_MAT, HEAD)
    eyes = [(0.13 * facing, 0.03, 0.13)] if side else [(0.07, 0.03, 0.17), (-0.07, 0.03, 0.17)]
    for ex, ey, ez in eyes:
        raster.sphere(f, head + np.array([ex, -ey, ez]) * hc, 0.03 * hc, EYE_MAT, EYE)


ANIMATION = AnimationGenerator()
