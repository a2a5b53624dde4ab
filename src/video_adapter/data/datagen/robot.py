"""The robot domains: an xArm pushing and touching coloured blocks on a table, seen by a fixed camera.

`RobotGenerator` (kind "robot") mimics the paper's Bridge data and simulated Language-Table domain: one arm, one
camera framing, short language-described manipulation clips. `RobotRealGenerator` (kind "robot-real") mimics the
real Language-Table videos: the same arm, tasks and captions, but photo-textured surfaces, warm shadowed light,
another fixed camera and a sensor that blurs, adds noise and a colour cast. The two are unpaired, but their scene
geometry and motion agree, so their Sobel edge maps look alike while their pixels do not.

The xArm, these captions and these looks are exactly what the broad corpus must never contain (`held_out`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from video_adapter.data.datagen import bullet
from video_adapter.data.datagen.base import COLORS, Clip, Generator, rng

PUSH_TEMPLATES = ("push the {color} block {direction}", "slide the {color} block {direction}",
                  "move the {color} block {direction}")
REACH_TEMPLATES = ("reach for the {color} block", "touch the {color} block", "move the arm to the {color} block")
TEMPLATES = PUSH_TEMPLATES + REACH_TEMPLATES
DIRECTIONS = ("left", "right", "forward", "backward")  # in camera terms: forward is away from the camera
BLOCK_COLORS = tuple(c for c in COLORS if c != "white")  # white would vanish against the white arm
HALF = 0.035         # block half size: a 6 cm cube is ~3 px wide at 24x40 with the framing below
PUSH = 0.13          # metres the tool sweeps past the block's start (it travels ~PUSH + 7 cm)
HOME = (0.28, 0.0, 0.22)  # where the tool starts each clip: above the near edge of the workspace
SECONDS = 2.0        # clip duration whatever the frame count, so motion per frame scales with 1/frames
ARM_SHADES = ((0.9, 0.9, 0.9), (0.35, 0.35, 0.38))  # a real xArm is white with dark joints, not rainbow-coloured

ROBOT_CAMERA = bullet.Camera(eye=(1.1, 0.0, 1.05), target=(0.25, 0.0, 0.1), fov=45.0)
ROBOT_LIGHT = bullet.Light(direction=(0.4, -0.5, 1.0), ambient=0.65, diffuse=0.35, specular=0.05, shadow=False)
REAL_CAMERA = bullet.Camera(eye=(1.12, 0.16, 1.12), target=(0.26, 0.02, 0.08), fov=43.0)
REAL_LIGHT = bullet.Light(direction=(-0.6, 0.8, 1.2), color=(1.0, 0.9, 0.75), ambient=0.5, diffuse=0.55,
                          specular=0.15, shadow=True)


@dataclass(frozen=True)
class Surface:
    """How the table top and the floor beneath it look."""
    table_rgb: tuple = (0.62, 0.55, 0.45)
    floor_rgb: tuple = (0.3, 0.3, 0.32)
    table_photo: str | None = None  # a base.photos() name whose detail is laid over table_rgb
    floor_photo: str | None = None
    contrast: float = 0.5           # how much of the photo's detail shows


@dataclass(frozen=True)
class Sensor:
    """Post-processing at the output size: what a cheap real camera adds to a clean render."""
    blur: float = 0.0                   # gaussian sigma in output pixels
    noise: float = 0.0                  # gaussian noise std, uint8 units, fresh per frame
    cast: tuple = (1.0, 1.0, 1.0)       # per-channel gain (white balance)
    cast_jitter: float = 0.0            # per-clip random change of each gain


ROBOT_SURFACE = Surface()
REAL_SURFACE = Surface(table_rgb=(0.8, 0.76, 0.68), floor_rgb=(0.4, 0.4, 0.42), table_photo="moon",
                       floor_photo="gravel")
REAL_SENSOR = Sensor(blur=0.6, noise=4.0, cast=(1.06, 1.0, 0.88), cast_jitter=0.03)


@dataclass(frozen=True)
class RobotGenerator(Generator):
    """Bridge / simulated Language-Table analog: an xArm pushes or touches one of 2-4 blocks."""

    kind: str = "robot"
    version: str = "1"
    templates: tuple[str, ...] = TEMPLATES
    camera: bullet.Camera = ROBOT_CAMERA
    light: bullet.Light = ROBOT_LIGHT
    surface: Surface = ROBOT_SURFACE
    sensor: Sensor = Sensor()
    scale: int = 2  # render at 2x the output size, then area-average down
    # which of the clip's random streams lays out the scene: robot-real draws from another one than robot, so the
    # same (seed, index) gives unrelated scenes and the two datasets stay unpaired, as in the paper
    stream: int = 0

    def __post_init__(self):
        # look and held_out are always read off this instance's camera, light, surface and sensor, so they
        # cannot drift from what it renders (dataclasses.replace included)
        look = {"renderer": "pybullet ER_TINY_RENDERER", "render_scale": self.scale, "camera": self.camera.as_dict(),
                "light": self.light.as_dict(), "surface": asdict(self.surface), "sensor": asdict(self.sensor),
                "arm": "xarm drawn with its collision meshes, links white and dark grey", "block_half_size": HALF}
        c, t = self.camera, self.surface
        table = f"'{t.table_photo}' photo table" if t.table_photo else f"flat {t.table_rgb} table"
        sensor = "" if self.sensor == Sensor() else (f"; sensor blur {self.sensor.blur:g} px, noise "
                                                     f"{self.sensor.noise:g}, colour cast {self.sensor.cast}")
        shadows = "with" if self.light.shadow else "without"
        held_out = {"arm": "xarm", "templates": list(TEMPLATES),
                    "look": f"fixed camera eye {c.eye} -> target {c.target}, fov {c.fov:g}, over a {table} under "
                            f"light {self.light.color} {shadows} shadows{sensor}"}
        object.__setattr__(self, "look", look)
        object.__setattr__(self, "held_out", held_out)

    def caption(self, meta: dict) -> str:
        return self.templates[meta["template"]].format(**meta)

    def clip(self, index: int, seed: int, size: tuple[int, int], frames: int) -> Clip:
        r = rng(seed, index) if self.stream == 0 else rng(seed, index).spawn(self.stream)[-1]
        task = "push" if r.random() < 0.7 else "reach"
        names = [str(c) for c in r.choice(BLOCK_COLORS, size=int(r.integers(2, 5)), replace=False)]
        direction = str(r.choice(DIRECTIONS)) if task == "push" else None
        step = self._direction(direction) if direction else None
        starts = self._layout(r, len(names), step)
        templates = PUSH_TEMPLATES if task == "push" else REACH_TEMPLATES
        template = TEMPLATES.index(templates[int(r.integers(len(templates)))])
        cast = np.asarray(self.sensor.cast) * (1 + self.sensor.cast_jitter * r.uniform(-1, 1, 3))

        sim = bullet.new_scene()
        self._stage(sim)
        arm = bullet.Arm(sim, "xarm", (0.0, 0.0, 0.0))
        for link in range(-1, sim.getNumJoints(arm.body)):
            bullet.paint(sim, arm.body, ARM_SHADES[(link + 1) % 2], link)
        blocks = [bullet.box(sim, (HALF,) * 3, (x, y, HALF), COLORS[c], mass=0.2, yaw=float(r.uniform(-0.3, 0.3)),
                             friction=0.5) for c, (x, y) in zip(names, starts)]
        target = np.array([*starts[0], HALF])
        path = (bullet.push_path(HOME, target, step, HALF + 0.05, PUSH) if task == "push" else
                bullet.reach_path(HOME, target + [0, 0, HALF]))
        arm.place(path(0.0))
        steps = max(1, round(SECONDS / bullet.TIME_STEP / frames))
        shots = bullet.follow(sim, arm, path, frames, steps,
                              lambda _: bullet.render(sim, self.camera, self.light, size, self.scale))
        video = self._sense(bullet.video(shots, size), r, cast)

        ends = [bullet.position(sim, b) for b in blocks]
        moved = np.subtract(ends[0], [*starts[0], HALF])
        meta = {
            "task": task, "color": names[0], "direction": direction, "template": template, "arm": "xarm",
            "blocks": [{"color": c, "start": [round(float(x), 4), round(float(y), 4), HALF], "end": e}
                       for c, (x, y), e in zip(names, starts, ends)],
            # the target's travel in camera terms, so a caption's direction can be checked against the physics
            "moved_right": round(float(moved @ self.camera.right()), 4),
            "moved_away": round(float(moved @ self.camera.away()), 4),
            "camera": self.camera.as_dict(), "cast": [round(float(c), 4) for c in cast],
        }
        return Clip(video, self.caption(meta), meta)

    def _direction(self, name: str) -> np.ndarray:
        right, away = self.camera.right(), self.camera.away()
        return {"left": -right, "right": right, "forward": away, "backward": -away}[name]

    def _layout(self, r: np.random.Generator, n: int, step) -> list[tuple[float, float]]:
        """Block positions in reach, apart, and (for a push) none in the target's way; the target comes first."""
        while True:
            xy = np.column_stack([r.uniform(0.3, 0.5, n), r.uniform(-0.2, 0.2, n)])
            if step is not None:
                # the block slides on a little after the tool stops: clear the way for PUSH + 8 cm
                end = xy[0] + (PUSH + 0.08) * step[:2]
                behind = xy[0] - 0.1 * step[:2]  # where the arm comes down before pushing
                if not (0.25 < np.hypot(*end) < 0.62 and 0.25 < np.hypot(*behind) < 0.6):
                    continue
                corridor = [behind + k * (end - behind) for k in np.linspace(0, 1, 8)]
                if n > 1 and any(np.min(np.hypot(*(xy[1:] - c).T)) < 0.1 for c in corridor):
                    continue
            if n == 1 or min(np.hypot(*(xy[i] - xy[j])) for i in range(n) for j in range(i)) > 0.09:
                return [(float(x), float(y)) for x, y in xy]

    def _stage(self, sim) -> None:
        s = self.surface
        tex = {k: None if name is None else bullet.texture(sim, name, s.contrast, rgb)
               for k, name, rgb in (("table", s.table_photo, s.table_rgb), ("floor", s.floor_photo, s.floor_rgb))}
        bullet.box(sim, (0.8, 1.2, 0.02), (0.25, 0.0, -0.02), s.table_rgb if tex["table"] is None else (1, 1, 1),
                   texture=tex["table"])
        bullet.box(sim, (4.0, 4.0, 0.02), (0.0, 0.0, -0.75), s.floor_rgb if tex["floor"] is None else (1, 1, 1),
                   texture=tex["floor"])

    def _sense(self, video: np.ndarray, r: np.random.Generator, cast: np.ndarray) -> np.ndarray:
        s = self.sensor
        if s == Sensor():
            return video
        out = video.astype(np.float32) * cast
        if s.blur:
            out = gaussian_filter(out, sigma=(0, s.blur, s.blur, 0))
        out += r.normal(0.0, s.noise, out.shape).astype(np.float32)
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class RobotRealGenerator(RobotGenerator):
    """Real Language-Table analog: same arm, tasks and captions; photo textures, warm shadows, another camera,
    and sensor blur, noise and colour cast."""

    kind: str = "robot-real"
    camera: bullet.Camera = REAL_CAMERA
    light: bullet.Light = REAL_LIGHT
    surface: Surface = REAL_SURFACE
    sensor: Sensor = REAL_SENSOR
    stream: int = 1


ROBOT = RobotGenerator()
ROBOT_REAL = RobotRealGenerator()
