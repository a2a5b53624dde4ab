"""The egocentric domain: a head-mounted camera turns, walks and looks down in a room of everyday objects.

`EgocentricGenerator` (kind "egocentric") mimics the paper's Ego4D data: first-person video whose motion is the
wearer's own (turning the head, walking up to something, glancing down at it), captioned by what the wearer does
with respect to one named object. The floor photo texture under warm indoor light, the head-height camera and these
captions are held out of the broad corpus.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from video_adapter.data.datagen import bullet
from video_adapter.data.datagen.base import COLORS, Clip, Generator, rng

TURN_TEMPLATES = ("turn {direction} toward the {color} {object}",
                  "turn to the {direction} to face the {color} {object}")
WALK_TEMPLATES = ("walk toward the {color} {object}", "walk up to the {color} {object}")
DOWN_TEMPLATES = ("look down at the {color} {object}", "glance down at the {color} {object}")
TEMPLATES = TURN_TEMPLATES + WALK_TEMPLATES + DOWN_TEMPLATES
MOTIONS = {"turn": TURN_TEMPLATES, "walk": WALK_TEMPLATES, "look down": DOWN_TEMPLATES}

EYE_HEIGHT = 1.3     # metres; objects are scaled up (OBJECT_SCALE) so they read at 24x40 from head height
OBJECT_SCALE = 4.5   # pybullet_data objects are ~10 cm: make them ~45 cm, the size of a bin or a stool
ROOM = 3.5           # half width of the square room
FOV = 65.0           # wide, as head-mounted cameras are
FLOOR_PHOTO = "brick"  # reads as a plank floor once tinted
FLOOR_RGB = (0.55, 0.38, 0.24)
FLOOR_CONTRAST = 0.45
FLOOR_TILE = 1.6       # metres of floor per copy of the photo
WALL_RGBS = ((0.85, 0.82, 0.74), (0.72, 0.78, 0.8), (0.82, 0.75, 0.72), (0.76, 0.8, 0.7))
LIGHT = bullet.Light(direction=(0.3, 0.5, 1.0), color=(1.0, 0.84, 0.62), ambient=0.55, diffuse=0.5,
                     specular=0.1, shadow=True)
OBJECT_COLORS = tuple(c for c in COLORS if c not in ("white", "black"))  # white/black would read as wall/shadow


@dataclass(frozen=True)
class EgocentricGenerator(Generator):
    """Ego4D analog: first-person turns, walks and downward glances at one named object among 4-6."""

    kind: str = "egocentric"
    version: str = "1"
    templates: tuple[str, ...] = TEMPLATES
    scale: int = 2
    look: dict = field(default_factory=lambda: {
        "renderer": "pybullet ER_TINY_RENDERER", "render_scale": 2, "camera": "head-mounted",
        "eye_height": EYE_HEIGHT, "fov": FOV,
        "floor": {"photo": FLOOR_PHOTO, "mean_rgb": FLOOR_RGB, "contrast": FLOOR_CONTRAST, "tile_m": FLOOR_TILE},
        "walls": WALL_RGBS, "room_half_width": ROOM, "light": LIGHT.as_dict(), "object_scale": OBJECT_SCALE,
        "objects": sorted(bullet.OBJECTS)})
    held_out: dict = field(default_factory=lambda: {
        "templates": list(TEMPLATES),
        "look": f"head-height ({EYE_HEIGHT} m) first-person camera, fov {FOV:g}, over the '{FLOOR_PHOTO}' photo "
                f"floor tinted brown under warm indoor light {LIGHT.color}",
        "floor_photo": FLOOR_PHOTO})

    def caption(self, meta: dict) -> str:
        return self.templates[meta["template"]].format(**meta)

    def clip(self, index: int, seed: int, size: tuple[int, int], frames: int) -> Clip:
        r = rng(seed, index)
        motion = str(r.choice(list(MOTIONS)))
        n = int(r.integers(4, 7))
        kinds = [str(k) for k in r.choice(sorted(bullet.OBJECTS), size=n)]
        colors = [str(c) for c in r.choice(OBJECT_COLORS, size=n, replace=False)]  # so the caption is unambiguous
        direction = str(r.choice(["left", "right"])) if motion == "turn" else None
        while True:  # until the target stands inside the room
            start = r.uniform(-1.0, 1.0, 2)
            yaw0 = float(r.uniform(-np.pi, np.pi))
            if motion == "turn":
                bearing = float(r.uniform(0.9, 1.4)) * (1 if direction == "left" else -1)  # yaw grows leftwards
                distance = float(r.uniform(1.6, 2.4))
            elif motion == "walk":
                bearing, distance = float(r.uniform(-0.15, 0.15)), float(r.uniform(2.2, 2.8))
            else:
                bearing, distance = float(r.uniform(-0.1, 0.1)), float(r.uniform(0.9, 1.1))
            target = start + distance * np.array([np.cos(yaw0 + bearing), np.sin(yaw0 + bearing)])
            if np.all(np.abs(target) < ROOM - 0.6):
                break
        spots = self._layout(r, target, start, n - 1)
        yaws = r.uniform(-np.pi, np.pi, n)
        path = self._path(motion, start, yaw0, bearing, target)
        wall = WALL_RGBS[int(r.integers(len(WALL_RGBS)))]
        templates = MOTIONS[motion]
        template = TEMPLATES.index(templates[int(r.integers(len(templates)))])

        sim = bullet.new_scene()
        self._room(sim, wall)
        for name, color, (x, y), yaw in zip(kinds, colors, [tuple(target)] + spots, yaws):
            urdf, scale = bullet.OBJECTS[name]
            bullet.load(sim, urdf, (x, y), yaw=float(yaw), scale=scale * OBJECT_SCALE, rgb=COLORS[color], fixed=True)
        cams = [path(f / max(frames - 1, 1)) for f in range(frames)]
        video = bullet.video([bullet.render(sim, c, LIGHT, size, self.scale) for c in cams], size)

        meta = {  # objects[0] is the one the caption names
            "motion": motion, "direction": direction, "object": kinds[0], "color": colors[0], "template": template,
            "objects": [{"name": k, "color": c, "xy": [round(float(x), 4), round(float(y), 4)]}
                        for k, c, (x, y) in zip(kinds, colors, [tuple(target)] + spots)],
            "camera_start": cams[0].as_dict(), "camera_end": cams[-1].as_dict(), "wall_rgb": list(wall),
        }
        return Clip(video, self.caption(meta), meta)

    @staticmethod
    def _layout(r: np.random.Generator, target: np.ndarray, start: np.ndarray, n: int) -> list[tuple[float, float]]:
        """Distractors inside the room, clear of the target, of each other and of the wearer's path."""
        spots, placed = [], [target]
        while len(spots) < n:
            xy = r.uniform(-ROOM + 0.5, ROOM - 0.5, 2)
            walk = [start + k * (target - start) for k in np.linspace(0, 0.8, 5)]
            if min(np.hypot(*(xy - q)) for q in placed + walk) > 0.7:
                spots.append((float(xy[0]), float(xy[1])))
                placed.append(xy)
        return spots

    @staticmethod
    def _path(motion: str, start: np.ndarray, yaw0: float, bearing: float, target: np.ndarray):
        """t in [0, 1] -> head camera; every motion eases in and out like a person's."""
        pitch0 = -0.45 if motion != "look down" else -0.2

        def at(t: float) -> bullet.Camera:
            s = bullet.smooth(t)
            xy, yaw, pitch = start, yaw0 + s * bearing, pitch0
            if motion == "walk":
                xy = start + s * 0.6 * (target - start)
            elif motion == "look down":
                pitch = pitch0 + s * (-1.05 - pitch0)
            bob = 0.02 * np.sin(2 * np.pi * 2 * s) if motion == "walk" else 0.0  # two steps' worth of head bob
            return bullet.head_camera((xy[0], xy[1], EYE_HEIGHT + bob), yaw, pitch, FOV)

        return at

    @staticmethod
    def _room(sim, wall_rgb) -> None:
        bullet.ground(sim, bullet.texture(sim, FLOOR_PHOTO, FLOOR_CONTRAST, FLOOR_RGB), FLOOR_TILE)
        for x, y in ((ROOM, 0), (-ROOM, 0), (0, ROOM), (0, -ROOM)):
            bullet.box(sim, (0.05 if x else ROOM, 0.05 if y else ROOM, 1.3), (x, y, 1.3), wall_rgb)


EGOCENTRIC = EgocentricGenerator()
