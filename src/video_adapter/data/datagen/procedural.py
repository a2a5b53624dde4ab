"""Broad pretraining corpus, procedural family ("broad-procedural").

Mimics the broad web text-video data that the paper's pretrained prior learns from (sec 3, 4): many unrelated
subjects and motions, each described in plain language. Scenes: smoothly shaded shapes that move, bounce, orbit,
grow, shrink, spin, fade, fall under gravity, swap places or pass behind an occluder and reappear, over plain,
gradient or real-photo backgrounds; and camera pans and zooms over the real photos of `base.photos()`.

Shapes are signed-distance fields with a one-pixel soft edge, rendered at twice the output size and area-averaged
(`base.downsample`), so sub-pixel motion stays smooth at 24x40. They are shaded with a smooth gradient and never
outlined: the toon look (quantised bands, dark outlines) and the words "cartoon"/"animated" belong to the held-out
animation domain (`animation.py`) and never appear here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from skimage.transform import resize

from . import base

SCALE = 2  # render at SCALE x the output size; the soft SDF edge does the rest of the anti-aliasing
SHAPES = ("circle", "square", "triangle", "star", "ring", "hexagon", "diamond", "cross")
REACH = 1.3  # every shape lies within REACH * its size of its centre, however it is turned
INSCRIBED = {"square": 0.85, "circle": 1.0, "hexagon": 0.9}  # radius of the largest circle inside, per unit size
ROUND = ("circle", "ring")  # spinning them would be invisible, so "spins" never picks them
# base.photos() -> what captions call them. Not brick, gravel or moon: they are the domains' floor and table
# textures (egocentric, robot-real), which the broad corpus never shows.
PHOTO_SUBJECTS = {
    "astronaut": "an astronaut", "chelsea": "a cat", "coffee": "a cup of coffee", "rocket": "a rocket",
    "cat": "a cat", "immunohistochemistry": "stained cells", "hubble_deep_field": "distant galaxies",
    "colorwheel": "a colour wheel", "grass": "grass", "camera": "a man with a camera", "coins": "old coins",
    "china": "a temple", "flower": "a flower",
}
MOTIONS = {  # what one shape does in a "shapes" scene -> its clause
    "move": "{noun} moves {direction}", "bounce": "{noun} bounces around", "orbit": "{noun} moves in a circle",
    "grow": "{noun} grows", "shrink": "{noun} shrinks", "spin": "{noun} spins {direction}",
    "fade_in": "{noun} fades in", "fade_out": "{noun} fades out", "fall": "{noun} falls and bounces",
}
OCCLUSION = "{noun} moves {direction} behind {occluder} and reappears"
SWAP = "{first} and {second} swap places"
BACKGROUNDS = {"plain": "on a plain {color} background", "gradient": "on a gradient from {color} to {color2}",
               "photo": "over a photo of {subject}"}
CAMERA = {"pan": "the camera pans {direction} across a photo of {subject}",
          "zoom_in": "the camera zooms in on {subject}", "zoom_out": "the camera zooms out from {subject}"}
SCENES = {"shapes": 0.4, "occlusion": 0.2, "swap": 0.1, "camera": 0.3}
STEP = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}  # image rows grow downwards


def _noun(color: str, shape: str, adjective: str = "") -> str:
    words = " ".join(w for w in (adjective, color, shape) if w)
    return f"{'an' if words[0] in 'aeiou' else 'a'} {words}"


def _smooth(t: np.ndarray, start: float = 0.0, end: float = 1.0) -> np.ndarray:
    u = np.clip((t - start) / (end - start), 0, 1)
    return u * u * (3 - 2 * u)


def _star(u, v, r, n, m):
    """Signed distance to an n-gon (m=2) or n-pointed star (2 < m <= n) of circumradius r, vertex up (Quilez)."""
    an, en = np.pi / n, np.pi / m
    bn = np.mod(np.arctan2(u, -v), 2 * an) - an
    length = np.hypot(u, v)
    px = length * np.cos(bn) - r * np.cos(an)
    py = length * np.abs(np.sin(bn)) - r * np.sin(an)
    k = np.clip(-(px * np.cos(en) + py * np.sin(en)), 0, r * np.sin(an) / np.sin(en))
    px, py = px + np.cos(en) * k, py + np.sin(en) * k
    return np.hypot(px, py) * np.sign(px)


def _box(u, v, hu, hv):
    qu, qv = np.abs(u) - hu, np.abs(v) - hv
    return np.hypot(np.maximum(qu, 0), np.maximum(qv, 0)) + np.minimum(np.maximum(qu, qv), 0)


def _sdf(shape: str, u, v, r):
    if shape == "circle":
        return np.hypot(u, v) - r
    if shape == "ring":
        return np.abs(np.hypot(u, v) - 0.75 * r) - 0.25 * r
    if shape == "bar_v":  # occluding bars span the frame
        return np.abs(u) - r
    if shape == "bar_h":
        return np.abs(v) - r
    if shape == "cross":
        return np.minimum(_box(u, v, r, 0.33 * r), _box(u, v, 0.33 * r, r))
    if shape == "square":
        return _box(u, v, 0.85 * r, 0.85 * r)
    if shape == "star":
        return _star(u, v, 1.25 * r, 5, 3.2)
    sides, stretch = {"triangle": (3, 1.3), "hexagon": (6, 1.05), "diamond": (4, 1.2)}[shape]
    return _star(u, v, stretch * r, sides, 2)


def _draw(canvas: np.ndarray, obj: dict) -> tuple[tuple[slice, slice], np.ndarray]:
    """Composite one shape (tracks in [F] arrays) into canvas [F, H, W, 3]; returns its window and coverage."""
    _, h, w, _ = canvas.shape
    cx, cy, r = obj["x"][:, None, None] * w, obj["y"][:, None, None] * h, obj["size"][:, None, None] * h
    reach = np.inf if obj["shape"].startswith("bar") else REACH * r.max() + 2
    y0, y1 = int(max(0, np.floor(cy.min() - reach))), int(min(h, np.ceil(cy.max() + reach)))
    x0, x1 = int(max(0, np.floor(cx.min() - reach))), int(min(w, np.ceil(cx.max() + reach)))
    window = (slice(y0, max(y0, y1)), slice(x0, max(x0, x1)))
    dx = np.arange(x0, max(x0, x1), dtype=np.float32)[None, None, :] + 0.5 - cx
    dy = np.arange(y0, max(y0, y1), dtype=np.float32)[None, :, None] + 0.5 - cy
    cos, sin = np.cos(obj["angle"])[:, None, None], np.sin(obj["angle"])[:, None, None]
    u, v = cos * dx + sin * dy, cos * dy - sin * dx  # the shape's own frame: positive angles turn it clockwise
    cover = np.clip(0.5 - _sdf(obj["shape"], u, v, r), 0, 1) * obj["alpha"][:, None, None]
    # A smooth light-to-dark ramp across the shape, so it reads as lit and its rotation shows; never banded, because
    # toon shading is held out.
    gu, gv = obj["light"]
    shade = np.clip(1 + obj["contrast"] * (u * gu + v * gv) / r, 0.5, 1.5)[..., None] * obj["rgb"]
    region = canvas[:, window[0], window[1]]
    region += (np.clip(shade, 0, 1) - region) * cover[..., None]
    return window, cover


@lru_cache(maxsize=64)
def _photo(name: str, height: int) -> np.ndarray:
    """Photo `name` as float32 [height, w, 3] in [0, 1], resized once so crops need no further detail."""
    photo = base.photos()[name]
    width = round(height * photo.shape[1] / photo.shape[0])
    return resize(photo, (height, width), anti_aliasing=True, preserve_range=True).astype(np.float32) / 255


def _weights(start: np.ndarray, length: np.ndarray, n: int, src: int) -> np.ndarray:
    """[F] windows on a source axis -> [F, n, src] tent-filter weights, widened when minifying (anti-aliased)."""
    start, length = start.astype(np.float32), length.astype(np.float32)
    centres = start[:, None] + (np.arange(n, dtype=np.float32) + 0.5) * (length[:, None] / n)
    half = np.maximum(1.0, length / n)[:, None, None]
    w = np.clip(1 - np.abs(np.arange(src, dtype=np.float32) + 0.5 - centres[..., None]) / half, 0, None)
    return (w / w.sum(-1, keepdims=True)).astype(np.float32)


def _view(name: str, views: np.ndarray, h: int, w: int) -> np.ndarray:
    """Photo seen through per-frame windows views [F, 4] = (x0, y0, width, height) as fractions -> [F, h, w, 3]."""
    photo = _photo(name, 2 * h)  # twice the render height: the closest zoom still needs no upsampling at output size
    ph, pw, _ = photo.shape
    rows = _weights(views[:, 1] * ph, views[:, 3] * ph, h, ph)
    cols = _weights(views[:, 0] * pw, views[:, 2] * pw, w, pw)
    out = np.empty((len(views), h, w, 3), np.float32)
    for f, (row, col) in enumerate(zip(rows, cols)):
        # Only the photo under the window matters: cropping to it first makes the products several times cheaper.
        # einsum rather than BLAS: these small products run single-threaded, so parallel workers never oversubscribe.
        ys, xs = np.flatnonzero(row.any(0)), np.flatnonzero(col.any(0))
        (y0, y1), (x0, x1) = (ys[0], ys[-1] + 1), (xs[0], xs[-1] + 1)
        tall = np.einsum("hy,yk->hk", row[:, y0:y1], photo[y0:y1, x0:x1].reshape(y1 - y0, -1))
        tall = tall.reshape(h, x1 - x0, 3).transpose(1, 0, 2).reshape(x1 - x0, h * 3)
        out[f] = np.einsum("wx,xk->wk", col[:, x0:x1], tall).reshape(w, h, 3).transpose(1, 0, 2)
    return out


def _track(values, digits: int = 4) -> list[float]:
    return [round(float(v), digits) for v in values]


@dataclass(frozen=True)
class ProceduralGenerator(base.Generator):
    kind: str = "broad-procedural"
    version: str = "1"
    templates: tuple[str, ...] = (*MOTIONS.values(), OCCLUSION, SWAP, *BACKGROUNDS.values(), *CAMERA.values())
    look: dict = field(default_factory=lambda: {
        "renderer": "numpy signed-distance shapes and photo resampling", "supersample": SCALE,
        "shading": "smooth gradient, no outlines", "shapes": list(SHAPES), "colors": list(base.COLORS),
        "backgrounds": list(BACKGROUNDS), "photos": list(PHOTO_SUBJECTS)})
    held_out: dict = field(default_factory=dict)

    def clip(self, index: int, seed: int, size: tuple[int, int], frames: int) -> base.Clip:
        g = base.rng(seed, index)
        h, w = size[0] * SCALE, size[1] * SCALE
        t = np.linspace(0, 1, frames) if frames > 1 else np.zeros(1)
        scene = str(g.choice(list(SCENES), p=list(SCENES.values())))
        if scene == "camera":
            canvas, meta = self._camera(g, t, h, w)
        else:
            canvas, meta = self._shapes(g, t, h, w, scene)
        video = base.downsample((np.clip(canvas, 0, 1) * 255 + 0.5).astype(np.uint8), size)
        return base.Clip(video, self.caption(meta), meta)

    def caption(self, meta: dict) -> str:
        if meta["scene"] == "camera":
            return CAMERA[meta["motion"]].format(**meta)
        objs = meta["objects"]
        if meta["scene"] == "occlusion":
            text = OCCLUSION.format(**objs[0], occluder=meta["occluder"]["noun"])
        elif meta["scene"] == "swap":
            text = SWAP.format(first=objs[0]["noun"], second=objs[1]["noun"])
        else:
            clauses = [MOTIONS[o["motion"]].format(**o) for o in objs]
            text = " and ".join([", ".join(clauses[:-1]), clauses[-1]] if len(clauses) > 2 else clauses)
        return f"{text} {BACKGROUNDS[meta['background']['kind']].format(**meta['background'])}"

    # --- camera scenes ---------------------------------------------------------------------------------------------

    def _camera(self, g, t, h, w):
        name = str(g.choice(list(PHOTO_SUBJECTS)))
        ph, pw, _ = base.photos()[name].shape
        aspect = (w / h) * (ph / pw)  # window width / height in photo fractions that keeps pixels square
        fit = min(1.0, 1 / aspect)    # widest window of that shape inside the photo
        motion = str(g.choice(list(CAMERA), p=[0.5, 0.25, 0.25]))
        meta = {"scene": "camera", "motion": motion, "photo": name, "subject": PHOTO_SUBJECTS[name]}
        if motion == "pan":
            direction = str(g.choice(list(STEP)))
            meta["direction"] = direction
            horizontal = direction in ("left", "right")
            vw = fit * g.uniform(0.5, 0.7)  # a smaller window than fits leaves room to travel either way
            vws, vhs = np.full_like(t, vw), np.full_like(t, vw * aspect)
            step = STEP[direction][0 if horizontal else 1]
            room = 1 - (vws if horizontal else vhs)
            along = room / 2 + step * g.uniform(0.6, 1.0) * room * (t - 0.5)
            across = np.full_like(t, g.uniform(0, 1) * (1 - (vhs[0] if horizontal else vws[0])))
            x0, y0 = (along, across) if horizontal else (across, along)
        else:
            zoom = g.uniform(1.6, 2.6)
            scale = zoom ** -(t if motion == "zoom_in" else 1 - t)  # geometric, so the zoom speed looks constant
            vws, vhs = fit * scale, fit * scale * aspect
            near = fit / zoom  # the closest window stays inside the photo around a random point of interest
            cx, cy = g.uniform(near / 2, 1 - near / 2), g.uniform(near * aspect / 2, 1 - near * aspect / 2)
            # Centre and size are both affine in `scale`, so every window between the widest (centred) and the
            # closest one stays inside the photo too.
            k = (1 - scale) / (1 - 1 / zoom)
            x0, y0 = 0.5 + (cx - 0.5) * k - vws / 2, 0.5 + (cy - 0.5) * k - vhs / 2
        views = np.stack([x0, y0, vws, vhs], axis=1)
        meta["view"] = [_track(v) for v in views]
        return _view(name, views, h, w), meta

    # --- shape scenes ----------------------------------------------------------------------------------------------

    def _background(self, g, t, h, w):
        kind = str(g.choice(list(BACKGROUNDS), p=[0.3, 0.3, 0.4]))
        names = list(base.COLORS)
        if kind == "photo":
            name = str(g.choice(list(PHOTO_SUBJECTS)))
            ph, pw, _ = base.photos()[name].shape
            aspect = (w / h) * (ph / pw)
            vw = min(1.0, 1 / aspect) * g.uniform(0.6, 1.0)
            view = np.array([[g.uniform(0, 1 - vw), g.uniform(0, 1 - vw * aspect), vw, vw * aspect]])
            image = _view(name, view, h, w)
            bg = {"kind": kind, "photo": name, "subject": PHOTO_SUBJECTS[name], "view": _track(view[0])}
        elif kind == "plain":
            color = str(g.choice(names))
            image = np.broadcast_to(np.array(base.COLORS[color], np.float32), (1, h, w, 3))
            bg = {"kind": kind, "color": color}
        else:
            c1, c2 = (str(c) for c in g.choice(names, 2, replace=False))
            vertical = bool(g.random() < 0.5)
            ramp = np.linspace(0, 1, h if vertical else w, dtype=np.float32)
            ramp = ramp[:, None, None] if vertical else ramp[None, :, None]
            image = (np.array(base.COLORS[c1], np.float32) * (1 - ramp) + np.array(base.COLORS[c2], np.float32) * ramp)
            image = np.broadcast_to(image, (1, h, w, 3))
            bg = {"kind": kind, "color": c1, "color2": c2, "vertical": vertical}
        return np.repeat(image, len(t), axis=0).astype(np.float32), bg

    def _shape(self, g, t, color: str, shape: str, size: float, x, y) -> dict:
        theta = g.uniform(0, 2 * np.pi)
        tilt = 0.0 if shape == "triangle" else g.uniform(-0.3, 0.3)  # triangles start point-up
        return {"shape": shape, "color": color, "noun": _noun(color, shape), "rgb": np.array(base.COLORS[color]),
                "x": np.broadcast_to(x, t.shape).astype(float), "y": np.broadcast_to(y, t.shape).astype(float),
                "size": np.full_like(t, size), "angle": np.full_like(t, tilt),
                "alpha": np.ones_like(t), "light": (np.cos(theta), np.sin(theta)), "contrast": g.uniform(0.1, 0.25)}

    def _shapes(self, g, t, h, w, scene: str):
        n = {"occlusion": 2, "swap": 2}.get(scene, int(g.choice([1, 2, 3], p=[0.5, 0.35, 0.15])))
        canvas, bg = self._background(g, t, h, w)
        # Shapes stand out from what they move over (a black bar on a night sky would make the caption a lie): the
        # colours on average over 0.35 (RGB distance) from the background's pixels, or else the n farthest.
        others = [c for c in base.COLORS if c not in (bg.get("color"), bg.get("color2"))]
        rgbs = np.array([base.COLORS[c] for c in others], np.float32)
        contrast = np.linalg.norm(canvas[0, ::4, ::4, None] - rgbs, axis=-1).mean((0, 1))
        keep = np.argsort(-contrast, kind="stable")[: max(n, int((contrast > 0.35).sum()))]
        colors = [str(c) for c in g.choice([others[i] for i in keep], n, replace=False)]
        shapes = [str(s) for s in g.choice(SHAPES, n)]
        meta = {"scene": scene, "background": bg}
        if scene == "occlusion":
            obj, occluder = self._occluded(g, t, h, w, colors[0], shapes[0], colors[1], meta)
            window, cover = _draw(canvas, obj)
            blocker_window, blocker = _draw(canvas, occluder)
            blocking = np.zeros(canvas.shape[:3], np.float32)
            blocking[:, blocker_window[0], blocker_window[1]] = blocker
            # What share of the shape shows in each frame, measured on the render rather than predicted.
            seen = (cover * (1 - blocking[:, window[0], window[1]])).sum((1, 2))
            obj["visible"] = seen / np.maximum(cover.sum((1, 2)), 1e-6)
            objs = [obj]
        else:
            if scene == "swap":
                objs = self._swap(g, t, colors, shapes)
            else:
                objs = [self._motion(g, t, h, w, c, s, k, n) for k, (c, s) in enumerate(zip(colors, shapes))]
            for obj in objs:
                _draw(canvas, obj)
        meta["objects"] = [{k: (_track(v) if isinstance(v, np.ndarray) and v.shape == t.shape else v)
                            for k, v in o.items() if k not in ("rgb", "light", "contrast")} for o in objs]
        return canvas, meta

    def _motion(self, g, t, h, w, color, shape, slot, n) -> dict:
        motions = [m for m in MOTIONS if not (m == "spin" and shape in ROUND)]
        motion = str(g.choice(motions))
        size = g.uniform(0.14, 0.26) if n == 1 else g.uniform(0.11, 0.2)
        rx, ry = size * h / w, size  # radius as fractions of width and height
        # Each shape keeps to its own column, so several shapes rarely cover one another.
        lo, hi = slot / n + rx, (slot + 1) / n - rx
        x, y = g.uniform(lo, max(lo, hi)), g.uniform(ry + 0.05, 0.95 - ry)
        obj = self._shape(g, t, color, shape, size, x, y)
        obj["motion"] = motion
        if motion == "move":
            direction = str(g.choice(list(STEP)))
            sx, sy = STEP[direction]
            span = g.uniform(0.5, 0.85)
            if sx:
                obj["x"] = 0.5 + sx * span * (0.5 - rx) * (2 * t - 1)
            else:
                obj["y"] = 0.5 + sy * span * (0.5 - ry) * (2 * t - 1)
            obj["direction"] = direction
        elif motion == "bounce":
            angle = g.uniform(0, 2 * np.pi)
            speed = g.uniform(1.4, 2.2)
            obj["x"] = _fold(x + speed * np.cos(angle) * t, rx, 1 - rx)
            obj["y"] = _fold(y + speed * np.sin(angle) * t, ry, 1 - ry)
        elif motion == "orbit":
            radius = g.uniform(0.18, 0.3)
            cx, cy = np.clip(x, radius * h / w + rx, 1 - radius * h / w - rx), np.clip(y, radius + ry, 1 - radius - ry)
            turn = g.uniform(0, 2 * np.pi) + g.choice([-1, 1]) * g.uniform(1.3, 2.0) * np.pi * t
            obj["x"], obj["y"] = cx + radius * h / w * np.cos(turn), cy + radius * np.sin(turn)
        elif motion in ("grow", "shrink"):
            small = g.uniform(0.07, 0.11)
            ramp = small * (g.uniform(2.2, 3.0) ** (t if motion == "grow" else 1 - t))
            obj["size"] = ramp
            obj["y"] = np.full_like(t, np.clip(y, ramp.max() + 0.02, 0.98 - ramp.max()))
        elif motion == "spin":
            clockwise = bool(g.random() < 0.5)
            obj["angle"] = obj["angle"] + (1 if clockwise else -1) * g.uniform(0.6, 1.5) * np.pi * t
            obj["direction"] = "clockwise" if clockwise else "counterclockwise"
        elif motion in ("fade_in", "fade_out"):
            start = g.uniform(0.05, 0.4)
            ramp = _smooth(t, start, start + g.uniform(0.3, 0.55))
            obj["alpha"] = ramp if motion == "fade_in" else 1 - ramp
        else:  # fall: dropped from the top, bouncing on the floor with energy lost at each bounce
            obj["y"] = _fall(t, ry + 0.02, 1 - ry, g.uniform(0.3, 0.5), g.uniform(0.45, 0.65))
        return obj

    def _swap(self, g, t, colors, shapes) -> list[dict]:
        size = g.uniform(0.12, 0.2)
        half, cy = g.uniform(0.2, 0.35), g.uniform(0.4, 0.6)
        lift = g.uniform(size + 0.08, 0.35)  # one passes over, one under: they never touch
        turn = np.pi * _smooth(t, g.uniform(0, 0.2), g.uniform(0.8, 1.0))
        objs = []
        for k, sign in enumerate((-1, 1)):
            obj = self._shape(g, t, colors[k], shapes[k], size, 0, 0)
            obj["x"] = 0.5 + sign * half * np.cos(turn)
            obj["y"] = cy + sign * lift * np.sin(turn)
            obj["motion"] = "swap"
            objs.append(obj)
        return objs

    def _occluded(self, g, t, h, w, color, shape, occ_color, meta) -> tuple[dict, dict]:
        direction = str(g.choice(list(STEP), p=[0.35, 0.35, 0.15, 0.15]))
        horizontal = direction in ("left", "right")
        axis = w if horizontal else h  # render pixels along the path
        size = g.uniform(0.1, 0.15) if horizontal else g.uniform(0.08, 0.1)  # short paths need small shapes to clear
        obj = self._shape(g, t, color, shape, size, g.uniform(0.3, 0.7), g.uniform(0.3, 0.7))
        obj["motion"], obj["direction"] = "occluded", direction
        reach = REACH * size * h
        centre = g.uniform(0.45, 0.55)
        travel = 0.96 - 2 * reach / axis  # the shape starts and ends whole inside the frame
        obj["x" if horizontal else "y"] = centre + STEP[direction][0 if horizontal else 1] * travel * (t - 0.5)
        # The occluder hides the whole shape for a share `hidden` of the clip: its half-width is the shape's reach
        # plus half of that share of the path.
        half = reach + g.uniform(0.12, 0.2) * travel * axis / 2
        occ_shape = "bar" if g.random() < 0.6 else str(g.choice(list(INSCRIBED)))
        if occ_shape == "bar":
            occluder = self._shape(g, t, occ_color, "bar_v" if horizontal else "bar_h", half / h, 0, 0)
            occluder["light"] = (1.0, 0.0) if horizontal else (0.0, 1.0)  # shaded across the bar: it has no ends
        else:
            occluder = self._shape(g, t, occ_color, occ_shape, half / INSCRIBED[occ_shape] / h, 0, 0)
        occluder["angle"] = np.zeros_like(t)
        occluder["x"] = np.full_like(t, centre if horizontal else obj["x"][0])
        occluder["y"] = np.full_like(t, obj["y"][0] if horizontal else centre)
        meta["occluder"] = {"shape": occ_shape, "color": occ_color, "size": round(float(occluder["size"][0]), 4),
                            "noun": _noun(occ_color, occ_shape, "" if occ_shape == "bar" else "large"),
                            "x": round(float(occluder["x"][0]), 4), "y": round(float(occluder["y"][0]), 4)}
        return obj, occluder


def _fold(x, lo, hi):
    """Positions reflected into [lo, hi]: straight-line motion bouncing off the frame edges."""
    span = hi - lo
    u = np.mod(x - lo, 2 * span)
    return lo + span - np.abs(u - span)


def _fall(t, top, floor, first_hit, restitution):
    """Height under gravity from rest at `top`: lands on `floor` at `first_hit`, each bounce `restitution` as fast."""
    gravity = 2 * (floor - top) / first_hit ** 2
    fine = np.linspace(0, 1, 801)
    y, v, out = top, 0.0, np.empty_like(fine)
    for i, dt in enumerate(np.diff(fine, prepend=0.0)):
        v += gravity * dt
        y += v * dt
        if y > floor:
            y, v = floor, -abs(v) * restitution
        out[i] = y
    return np.interp(t, fine, out)


BROAD_PROCEDURAL = ProceduralGenerator()
