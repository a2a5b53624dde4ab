"""The simulated part of the broad pretraining corpus: varied physics clips from pybullet, none of the domains.

`BroadBulletGenerator` (kind "broad-bullet") stands in for the paper's internet-scale pretraining videos where they
concern robots and everyday physics: kuka and panda arms reaching for and pushing objects, objects falling onto
the ground or a table, balls rolling, under random cameras, random lights and photo-textured grounds, with the
1000 random meshes of pybullet_data for shape diversity. It is built to leave the domains unseen: never the xArm,
never a robot / robot-real / egocentric caption template, never a domain floor photo (so never a domain floor +
light combination) and never a camera near a domain camera.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

import numpy as np

from video_adapter.data.datagen import bullet
from video_adapter.data.datagen.base import COLORS, Clip, Generator, photos, rng
from video_adapter.data.datagen.egocentric import EGOCENTRIC
from video_adapter.data.datagen.robot import ROBOT, ROBOT_REAL

SCENARIOS = {  # {article} is "a" or "an", whichever the colour word takes
    "reach": ("a robot arm reaches toward the {color} {object}", "a {arm} arm reaching for {article} {color} {object}"),
    "push": ("a robot arm pushes the {color} {object} across the {surface}",
             "a {arm} arm shoves {article} {color} {object} along the {surface}"),
    "fall": ("{article} {color} {object} falls onto the {surface}",
             "{article} {color} {object} drops and lands on the {surface}"),
    "roll": ("{article} {color} ball rolls across the {surface}", "{article} {color} ball rolling over the {surface}"),
}
TEMPLATES = tuple(t for group in SCENARIOS.values() for t in group)
ARMS = ("kuka", "panda")  # the xArm is the robot domains' arm, so it never appears here
ARM_NAMES = {"kuka": "kuka", "panda": "franka"}
HELD_OUT_PHOTOS = {ROBOT_REAL.surface.table_photo, ROBOT_REAL.surface.floor_photo, EGOCENTRIC.held_out["floor_photo"]}
# photos a caption can name (gravel and brick are domain surfaces, so held out), with the range of mean colours
# that keeps them looking like what they are called
NAMED_SURFACES = {"grass": ((0.25, 0.4, 0.15), (0.45, 0.6, 0.3))}
GENERIC_SURFACES = ("ground", "floor", "carpet")
RANDOM_MESHES = 1000  # pybullet_data/random_urdfs/000 ... 999
DOMAIN_CAMERAS = (ROBOT.camera, ROBOT_REAL.camera)
SECONDS = 2.0


@dataclass(frozen=True)
class BroadBulletGenerator(Generator):
    """Broad-corpus physics clips: arms (kuka, panda), falling and rolling objects, random looks."""

    kind: str = "broad-bullet"
    version: str = "1"
    templates: tuple[str, ...] = TEMPLATES
    scale: int = 2
    look: dict = field(default_factory=lambda: {
        "renderer": "pybullet ER_TINY_RENDERER", "render_scale": 2, "camera": "random orbit, slow drift",
        "light": "random direction, colour, coefficients and shadows",
        "ground_photos": f"base.photos() but {sorted(HELD_OUT_PHOTOS)}",
        "objects": sorted(bullet.OBJECTS) + [f"random_urdfs x{RANDOM_MESHES}"], "arms": list(ARMS)})
    held_out: dict = field(default_factory=dict)  # the broad corpus holds nothing out of itself

    def caption(self, meta: dict) -> str:
        return self.templates[meta["template"]].format(**meta)

    def clip(self, index: int, seed: int, size: tuple[int, int], frames: int) -> Clip:
        r = rng(seed, index)
        scenario = str(r.choice(list(SCENARIOS)))
        photo = str(r.choice(ground_photos()))
        low, high = NAMED_SURFACES.get(photo, ((0.25,) * 3, (0.8,) * 3))
        tint = tuple(float(v) for v in r.uniform(low, high))
        surface = photo if photo in NAMED_SURFACES else str(r.choice(GENERIC_SURFACES))
        light = bullet.Light(direction=tuple(float(v) for v in (*r.uniform(-1, 1, 2), r.uniform(0.4, 1.5))),
                             color=tuple(float(v) for v in r.uniform(0.75, 1.0, 3)), ambient=float(r.uniform(0.4, 0.7)),
                             diffuse=float(r.uniform(0.25, 0.6)), specular=float(r.uniform(0.0, 0.3)),
                             shadow=bool(r.random() < 0.5))
        color = str(r.choice(list(COLORS)))
        obj, urdf, obj_scale = self._object(r, scenario)

        sim = bullet.new_scene()
        bullet.ground(sim, bullet.texture(sim, photo, float(r.uniform(0.15, 0.5)), tint), float(r.uniform(0.5, 2.0)))
        meta = {"scenario": scenario, "color": color, "article": "an" if color[0] in "aeiou" else "a", "object": obj,
                "surface": surface, "ground_photo": photo, "light": light.as_dict()}
        arm, path, body, focus, reach = self._setup(sim, r, scenario, urdf, obj_scale, color, meta)
        camera, drift = self._camera(r, focus, reach)
        steps = max(1, round(SECONDS / bullet.TIME_STEP / frames))
        shots = bullet.follow(sim, arm, path, frames, steps, lambda f: bullet.render(
            sim, _orbit(camera, focus, drift * f / max(frames - 1, 1)), light, size, self.scale))
        meta["end"] = bullet.position(sim, body)
        meta["camera"] = camera.as_dict()
        meta["camera_drift"] = round(drift, 4)
        group = SCENARIOS[scenario]
        meta["template"] = TEMPLATES.index(group[int(r.integers(len(group)))])
        return Clip(bullet.video(shots, size), self.caption(meta), meta)

    @staticmethod
    def _object(r: np.random.Generator, scenario: str) -> tuple[str, str, float]:
        """(caption noun, urdf, scale): a named everyday object or one of the random meshes ("shape")."""
        if scenario == "roll":
            return "ball", "", 1.0
        if r.random() < 0.5:
            name = str(r.choice(sorted(bullet.OBJECTS)))
            return name, *bullet.OBJECTS[name]
        k = int(r.integers(RANDOM_MESHES))
        return "shape", f"random_urdfs/{k:03d}/{k:03d}.urdf", 1.0

    @staticmethod
    def _setup(sim, r, scenario, urdf, obj_scale, color, meta):
        """Build the scenario's bodies; returns (arm or None, arm path, watched body, camera focus, scene size)."""
        rgb = COLORS[color]
        if scenario == "roll":
            radius = float(r.uniform(0.04, 0.1))
            heading = float(r.uniform(-np.pi, np.pi))
            speed = float(r.uniform(0.4, 1.0))
            start = -0.5 * speed * np.array([np.cos(heading), np.sin(heading)])  # roll through the middle
            body = bullet.sphere(sim, radius, (*start, radius), rgb)
            v = speed * np.array([np.cos(heading), np.sin(heading), 0.0])
            sim.resetBaseVelocity(body, v, np.cross([0, 0, 1], v) / radius)  # rolling, not sliding
            meta.update(start=[round(float(x), 4) for x in (*start, radius)], radius=round(radius, 4))
            return None, None, body, (0.0, 0.0, radius), 0.8
        if scenario == "fall":
            scale = obj_scale * float(r.uniform(1.5, 3.0))
            height = float(r.uniform(0.3, 0.9))
            top = 0.0
            if r.random() < 0.3:  # onto a (textured wooden) table instead of the ground
                top = sim.getAABB(sim.loadURDF("table/table.urdf", useFixedBase=True))[1][2]
                meta["surface"] = "table"
            body = bullet.load(sim, urdf, (0.0, 0.0), floor=top, yaw=float(r.uniform(-np.pi, np.pi)), scale=scale,
                               rgb=rgb, lift=height)
            tilt = sim.getQuaternionFromEuler(tuple(float(a) for a in r.uniform(-np.pi, np.pi, 3)))
            sim.resetBasePositionAndOrientation(body, sim.getBasePositionAndOrientation(body)[0], tilt)
            meta.update(start=bullet.position(sim, body), drop_height=round(height, 4))
            return None, None, body, (0.0, 0.0, top + 0.25), 0.7
        name = str(r.choice(ARMS))
        arm = bullet.Arm(sim, name, (0.0, 0.0, 0.0), yaw=float(r.uniform(-np.pi, np.pi)))
        bearing = float(r.uniform(-np.pi, np.pi))
        dist = arm.spec.reach * float(r.uniform(0.65, 0.85))
        xy = dist * np.array([np.cos(bearing), np.sin(bearing)])
        body = bullet.load(sim, urdf, tuple(xy), yaw=float(r.uniform(-np.pi, np.pi)), scale=obj_scale * 1.2, rgb=rgb)
        low, high = np.asarray(sim.getAABB(body))
        home = np.array([*(0.5 * xy), 0.35])
        if scenario == "reach":
            path = bullet.reach_path(home, (*xy, high[2]))
        else:
            side = float(r.choice([-1.0, 1.0]))  # sweep sideways, around the base, so the arm stays in reach
            step = side * np.array([-np.sin(bearing), np.cos(bearing)])
            path = bullet.push_path(home, (*xy, (low[2] + high[2]) / 2), step, 0.5 * np.max(high - low) + 0.06,
                                    0.15)
        arm.place(path(0.0))
        meta.update(arm=ARM_NAMES[name], start=bullet.position(sim, body))
        return arm, path, body, (*(0.6 * xy), 0.2), 1.2

    @staticmethod
    def _camera(r, focus, reach) -> tuple[bullet.Camera, float]:
        """A random orbit camera around `focus` and its drift (radians of orbit over the clip: broad videos pan),
        redrawn while its path passes near a domain's fixed camera."""
        while True:
            azimuth, elevation = r.uniform(-np.pi, np.pi), r.uniform(0.25, 1.0)
            distance = reach * r.uniform(0.8, 1.5)
            eye = np.asarray(focus) + distance * np.array([np.cos(azimuth) * np.cos(elevation),
                                                           np.sin(azimuth) * np.cos(elevation), np.sin(elevation)])
            camera = bullet.Camera(tuple(map(float, eye)), tuple(map(float, focus)), float(r.uniform(30, 55)))
            drift = float(r.uniform(-0.3, 0.3))
            eyes = [_orbit(camera, focus, drift * k).eye for k in np.linspace(0, 1, 5)]
            if all(np.linalg.norm(np.subtract(e, c.eye)) > 0.3 for e in eyes for c in DOMAIN_CAMERAS):
                return camera, drift


@cache
def ground_photos() -> tuple[str, ...]:
    """Every bundled photo but the domains' surfaces (looked up lazily: loading the photos takes a second)."""
    return tuple(sorted(n for n in photos() if n not in HELD_OUT_PHOTOS))


def _orbit(camera: bullet.Camera, focus, angle: float) -> bullet.Camera:
    """`camera` turned by `angle` about the vertical axis through `focus`."""
    c, s = np.cos(angle), np.sin(angle)
    rel = np.subtract(camera.eye, focus)
    eye = np.asarray(focus) + [c * rel[0] - s * rel[1], s * rel[0] + c * rel[1], rel[2]]
    return bullet.Camera(tuple(map(float, eye)), camera.target, camera.fov)


BROAD_BULLET = BroadBulletGenerator()
