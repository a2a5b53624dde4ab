"""pybullet plumbing shared by the simulated generators (robot, robot-real, egocentric, broad-bullet).

One headless DIRECT connection per process, made on first use and reset for every clip, so a clip depends only on
the calls its generator makes (never on the clips made before it in the same process). Physics runs at a fixed
time step and nothing reads the wall clock. Frames come from pybullet's CPU TinyRenderer at an integer multiple of
the output size and are area-averaged down by `base.downsample`, which anti-aliases the small videos.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import cache

import numpy as np

from video_adapter.data.datagen.base import downsample, photos


@contextmanager
def native_quiet(fds: tuple[int, ...] = (1, 2)) -> Iterator[None]:
    """Send what C code writes to the process's stdout and stderr to /dev/null for the block: pybullet prints
    "pybullet build time: ..." (stderr) when imported and "argv[0]=" (stdout) when connecting, neither ours to show.
    Python exceptions still propagate (and are printed after the file descriptors are restored)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()  # what Python has buffered so far is ours: out before the redirect
        except (AttributeError, ValueError):
            pass
    try:
        fflush = ctypes.CDLL(None).fflush  # C stdio buffers: flushed inside the redirect, else they leak after it
    except (OSError, AttributeError, TypeError):  # no libc symbols to reach (Windows)
        fflush = None
    saved = [os.dup(fd) for fd in fds]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in fds:
            os.dup2(null, fd)
        yield
    finally:
        if fflush is not None:
            fflush(None)
        for fd, old in zip(fds, saved):
            os.dup2(old, fd)
            os.close(old)
        os.close(null)


with native_quiet():
    import pybullet
    import pybullet_data
    from pybullet_utils.bullet_client import BulletClient

DATA = pybullet_data.getDataPath()
TIME_STEP = 1.0 / 240.0
CONTROL_EVERY = 4  # physics steps per arm retarget
DOWN = pybullet.getQuaternionFromEuler((np.pi, 0.0, 0.0))  # end effector pointing at the table

_state: dict = {}  # this process's connection and temp dir; a forked child must not reuse its parent's


def _process() -> dict:
    pid = os.getpid()
    if _state.get("pid") != pid:
        _state.clear()
        _state.update(pid=pid, client=None, tmp=None)
    return _state


def _tmpdir() -> str:
    state = _process()
    if state["tmp"] is None:
        state["tmp"] = tempfile.mkdtemp(prefix="video_adapter_bullet_")
        atexit.register(shutil.rmtree, state["tmp"], True)
    return state["tmp"]


def new_scene(gravity: float = -9.81) -> BulletClient:
    """The process's connection, emptied: every clip starts from the same blank world."""
    state = _process()
    if state["client"] is None:
        with native_quiet():
            state["client"] = BulletClient(connection_mode=pybullet.DIRECT)
        state["client"].setAdditionalSearchPath(DATA)
    sim = state["client"]
    sim.resetSimulation()
    # deterministicOverlappingPairs sorts broadphase pairs so contacts are solved in the same order every run
    sim.setPhysicsEngineParameter(fixedTimeStep=TIME_STEP, numSolverIterations=50, deterministicOverlappingPairs=1)
    sim.setGravity(0.0, 0.0, gravity)
    return sim


@dataclass(frozen=True)
class ArmSpec:
    urdf: str          # relative to pybullet_data
    ee_link: str       # link whose origin is steered by inverse kinematics
    home: tuple        # joint angles of the movable arm joints that IK starts from (elbow up, tool down)
    visual: tuple      # (regex, replacement) turning visual mesh paths into their low-poly collision meshes
    reach: float       # comfortable horizontal reach from the base, metres


ARMS = {
    # The detailed visual meshes cost 10-20 ms a frame in TinyRenderer and are invisible at 24x40 anyway, so the
    # xarm and panda are drawn with their convex collision meshes instead (kuka's visual meshes are already cheap).
    "xarm": ArmSpec("xarm/xarm6_robot.urdf", "link6", (0.0, -0.4, -1.0, 0.0, 1.4, 0.0),
                    (r"meshes/xarm6/visual/(\w+)\.stl", r"meshes/xarm6/collision/\1_vhacd.obj"), 0.55),
    "kuka": ArmSpec("kuka_iiwa/model.urdf", "lbr_iiwa_link_7", (0.0, 0.5, 0.0, -1.6, 0.0, 1.0, 0.0), (), 0.7),
    "panda": ArmSpec("franka_panda/panda.urdf", "panda_grasptarget", (0.0, -0.3, 0.0, -2.2, 0.0, 2.0, 0.8),
                     (r"meshes/visual/(\w+)\.obj", r"meshes/collision/\1.obj"), 0.6),
}


@cache
def _lowpoly_urdf(name: str, pid: int) -> str:
    spec = ARMS[name]
    src = os.path.join(DATA, spec.urdf)
    if not spec.visual:
        return src
    with open(src) as f:
        text = re.sub(spec.visual[0], spec.visual[1], f.read())
    # the rewritten file lives in a temp dir, so package:// paths must point back into pybullet_data
    text = text.replace("package://", os.path.dirname(src) + "/")
    out = os.path.join(_tmpdir(), f"{name}.urdf")
    with open(out, "w") as f:
        f.write(text)
    return out


class Arm:
    """A fixed-base arm whose end effector follows Cartesian targets through IK and position-controlled motors."""

    def __init__(self, sim: BulletClient, name: str, base: tuple, yaw: float = 0.0):
        spec = ARMS[name]
        self.sim, self.spec = sim, spec
        self.body = sim.loadURDF(_lowpoly_urdf(name, os.getpid()), base, sim.getQuaternionFromEuler((0, 0, yaw)),
                                 useFixedBase=True)
        infos = [sim.getJointInfo(self.body, j) for j in range(sim.getNumJoints(self.body))]
        self.joints = [i[0] for i in infos if i[2] != pybullet.JOINT_FIXED]
        self.ee = next(i[0] for i in infos if i[12].decode() == spec.ee_link)
        for joint, angle in zip(self.joints, spec.home):
            sim.resetJointState(self.body, joint, angle)

    def solve(self, target, orientation=DOWN) -> list[float]:
        return list(self.sim.calculateInverseKinematics(self.body, self.ee, list(map(float, target)), orientation,
                                                        maxNumIterations=60, residualThreshold=1e-4))

    def place(self, target, orientation=DOWN) -> None:
        """Teleport to a pose before the clip starts (a few IK passes, since each starts from the current pose)."""
        for _ in range(4):
            for joint, angle in zip(self.joints, self.solve(target, orientation)):
                self.sim.resetJointState(self.body, joint, angle)

    def drive(self, target, orientation=DOWN, force: float = 300.0) -> None:
        self.sim.setJointMotorControlArray(self.body, self.joints, pybullet.POSITION_CONTROL,
                                           targetPositions=self.solve(target, orientation),
                                           forces=[force] * len(self.joints))


def follow(sim: BulletClient, arm: Arm | None, path, frames: int, steps_per_frame: int, draw) -> list[np.ndarray]:
    """Step the world, steering `arm` along `path(t)` (t in [0, 1]); `draw(frame)` renders before each stretch."""
    out = []
    total = frames * steps_per_frame
    for frame in range(frames):
        out.append(draw(frame))
        for step in range(steps_per_frame):
            k = frame * steps_per_frame + step
            # IK is most of a step's cost: retarget the motors at 60 Hz, aiming at where the path will be next
            if arm is not None and k % CONTROL_EVERY == 0:
                arm.drive(path(min(k + CONTROL_EVERY, total) / total))
            sim.stepSimulation()
    return out


def smooth(t: float) -> float:
    """Ease-in-out on [0, 1]: motions start and stop without a jump."""
    t = min(max(t, 0.0), 1.0)
    return t * t * (3.0 - 2.0 * t)


def piecewise(keys):
    """[(time, position), ...] -> t -> position, easing between consecutive keys."""
    times = [k[0] for k in keys]

    def at(t: float) -> np.ndarray:
        i = min(max(int(np.searchsorted(times, t, side="right")) - 1, 0), len(keys) - 2)
        (t0, a), (t1, b) = keys[i], keys[i + 1]
        return np.asarray(a) + smooth((t - t0) / (t1 - t0)) * (np.asarray(b) - np.asarray(a))

    return at


def push_path(home, centre, step, reach_back: float, distance: float):
    """End-effector path pushing an object at `centre` along the ground direction `step`: hover behind it, come
    down level with its centre, sweep `distance` past the centre, lift away."""
    centre, step = np.asarray(centre, float), np.array([step[0], step[1], 0.0])
    hover = centre - reach_back * step + [0, 0, 0.12]
    low = hover - [0, 0, 0.12]
    # sweep `reach_back` further than `distance`: the object only starts moving once the tool reaches it
    done = low + (distance + reach_back) * step
    # lift well clear at the end: a tool left low hides the pushed object behind the arm from a frontal camera
    return piecewise([(0.0, home), (0.3, hover), (0.42, low), (0.85, done), (1.0, done + [0, 0, 0.2])])


def reach_path(home, top):
    """End-effector path over the point `top`, down onto it, a short hold, then a slight lift."""
    top = np.asarray(top, float)
    above, touch = top + [0, 0, 0.12], top + [0, 0, 0.01]
    return piecewise([(0.0, home), (0.45, above), (0.7, touch), (0.85, touch), (1.0, touch + [0, 0, 0.05])])


def box(sim: BulletClient, half: tuple, pos: tuple, rgb=(1, 1, 1), mass: float = 0.0, yaw: float = 0.0,
        texture: int | None = None, friction: float = 0.6) -> int:
    """A box body (a block when it has mass, a table top, floor or wall when it has none)."""
    col = sim.createCollisionShape(pybullet.GEOM_BOX, halfExtents=half)
    vis = sim.createVisualShape(pybullet.GEOM_BOX, halfExtents=half, rgbaColor=(*rgb, 1.0))
    body = sim.createMultiBody(mass, col, vis, pos, sim.getQuaternionFromEuler((0, 0, yaw)))
    sim.changeDynamics(body, -1, lateralFriction=friction)
    if texture is not None:
        sim.changeVisualShape(body, -1, textureUniqueId=texture)
    return body


def ground(sim: BulletClient, texture: int, tile: float) -> int:
    """A static ground plane (15 x 15 tiles of `tile` metres, centred on the origin) repeating `texture`."""
    # plane.urdf's UVs repeat its texture 15 times over 30 m; scaling the plane scales the tiles
    body = sim.loadURDF("plane.urdf", globalScaling=tile / 2.0, useFixedBase=True)
    sim.changeVisualShape(body, -1, textureUniqueId=texture, rgbaColor=(1, 1, 1, 1))
    return body


def sphere(sim: BulletClient, radius: float, pos: tuple, rgb, mass: float = 0.1) -> int:
    col = sim.createCollisionShape(pybullet.GEOM_SPHERE, radius=radius)
    vis = sim.createVisualShape(pybullet.GEOM_SPHERE, radius=radius, rgbaColor=(*rgb, 1.0))
    body = sim.createMultiBody(mass, col, vis, pos)
    sim.changeDynamics(body, -1, rollingFriction=0.001, spinningFriction=0.001)
    return body


# Everyday objects from pybullet_data that can be painted any colour, as (urdf, scale making them ~10 cm across).
OBJECTS = {
    "mug": ("objects/mug.urdf", 1.0), "duck": ("duck_vhacd.urdf", 1.3), "teddy bear": ("teddy_vhacd.urdf", 1.5),
    "lego brick": ("lego/lego.urdf", 3.0), "ball": ("sphere2.urdf", 0.1), "cube": ("cube_small.urdf", 2.0),
}


def load(sim: BulletClient, urdf: str, xy: tuple, floor: float = 0.0, yaw: float = 0.0, scale: float = 1.0,
         rgb=None, fixed: bool = False, lift: float = 0.0) -> int:
    """A pybullet_data object centred over `xy` with its lowest point `lift` above the height `floor` (mesh
    origins are anywhere, so the bounding box decides); `rgb` repaints it, dropping any texture that would tint it."""
    orn = sim.getQuaternionFromEuler((0, 0, yaw))
    body = sim.loadURDF(urdf, (xy[0], xy[1], floor + 1.0), orn, globalScaling=scale, useFixedBase=fixed)
    low, high = np.asarray(sim.getAABB(body))
    shift = np.array([xy[0] - (low[0] + high[0]) / 2, xy[1] - (low[1] + high[1]) / 2, floor + lift - low[2]])
    sim.resetBasePositionAndOrientation(body, np.asarray(sim.getBasePositionAndOrientation(body)[0]) + shift, orn)
    if rgb is not None:
        paint(sim, body, rgb)
    return body


def paint(sim: BulletClient, body: int, rgb, link: int = -1) -> None:
    sim.changeVisualShape(body, link, textureUniqueId=-1, rgbaColor=(*rgb, 1.0))


def position(sim: BulletClient, body: int) -> list[float]:
    return [round(float(v), 4) for v in sim.getBasePositionAndOrientation(body)[0]]


@cache
def _texture_png(name: str, contrast: float, tint: tuple, pid: int) -> str:
    from PIL import Image

    image = photos()[name].astype(np.float32)
    # the surface's mean colour is `tint`; the photo only adds its detail, scaled by `contrast`
    image = 255.0 * np.asarray(tint, np.float32) + contrast * (image - image.mean(axis=(0, 1)))
    path = os.path.join(_tmpdir(), f"{name}_{contrast:g}_{'_'.join(f'{t:g}' for t in tint)}.png")
    # 256 px is plenty for surfaces that cover at most a few hundred output pixels, and loads fast
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).resize((256, 256), Image.BILINEAR).save(path)
    return path


def texture(sim: BulletClient, name: str, contrast: float = 1.0, tint: tuple = (0.5, 0.5, 0.5)) -> int:
    """A photo from base.photos() as a texture id for this clip (resetSimulation drops textures; the PNG stays)."""
    return sim.loadTexture(_texture_png(name, float(contrast), tuple(map(float, tint)), os.getpid()))


@dataclass(frozen=True)
class Camera:
    eye: tuple
    target: tuple
    fov: float = 45.0  # vertical, degrees
    up: tuple = (0.0, 0.0, 1.0)
    near: float = 0.05
    far: float = 12.0

    def right(self) -> np.ndarray:
        """Unit vector pointing to the image's right, projected onto the ground plane."""
        forward = np.subtract(self.target, self.eye)
        right = np.cross(forward, self.up)
        right[2] = 0.0
        return right / np.linalg.norm(right)

    def away(self) -> np.ndarray:
        """Unit vector on the ground pointing away from the camera (towards the top of a downward view)."""
        forward = np.subtract(self.target, self.eye).astype(float)
        forward[2] = 0.0
        return forward / np.linalg.norm(forward)

    def as_dict(self) -> dict:
        return {k: [round(float(x), 4) for x in v] if isinstance(v, tuple) else round(float(v), 4)
                for k, v in asdict(self).items()}


def head_camera(eye, yaw: float, pitch: float, fov: float = 60.0) -> Camera:
    """A camera at `eye` looking along heading `yaw` (radians, 0 = +x, left is positive) tilted by `pitch`."""
    direction = np.array([np.cos(yaw) * np.cos(pitch), np.sin(yaw) * np.cos(pitch), np.sin(pitch)])
    return Camera(tuple(map(float, eye)), tuple(map(float, np.asarray(eye) + direction)), fov)


@dataclass(frozen=True)
class Light:
    direction: tuple = (0.5, -0.6, 1.0)  # towards the light
    color: tuple = (1.0, 1.0, 1.0)
    ambient: float = 0.6
    diffuse: float = 0.35
    specular: float = 0.05
    shadow: bool = False

    def as_dict(self) -> dict:
        return {k: [round(float(x), 4) for x in v] if isinstance(v, tuple) else
                (v if isinstance(v, bool) else round(float(v), 4)) for k, v in asdict(self).items()}


def render(sim: BulletClient, camera: Camera, light: Light, size: tuple[int, int], scale: int = 2) -> np.ndarray:
    """One RGB frame, uint8 [H*scale, W*scale, 3], from the CPU TinyRenderer (no GPU or display needed)."""
    height, width = size[0] * scale, size[1] * scale
    view = sim.computeViewMatrix(camera.eye, camera.target, camera.up)
    proj = sim.computeProjectionMatrixFOV(camera.fov, width / height, camera.near, camera.far)
    image = sim.getCameraImage(width, height, view, proj, renderer=pybullet.ER_TINY_RENDERER,
                               lightDirection=light.direction, lightColor=light.color,
                               lightAmbientCoeff=light.ambient, lightDiffuseCoeff=light.diffuse,
                               lightSpecularCoeff=light.specular, shadow=int(light.shadow),
                               flags=pybullet.ER_NO_SEGMENTATION_MASK)[2]
    return np.asarray(image, dtype=np.uint8).reshape(height, width, 4)[..., :3]


def video(frames: list[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """Frames rendered at a multiple of `size` -> uint8 [F, H, W, 3] at `size`."""
    return downsample(np.stack(frames), size)
