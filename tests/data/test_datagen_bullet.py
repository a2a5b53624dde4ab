"""The pybullet generators (robot, robot-real, egocentric, broad-bullet): deterministic in any order and process,
well-formed videos, captions made from metadata that name what is in the scene, motion that really happens as
captioned, a real-camera look for robot-real, and a broad family that never shows a domain."""

import dataclasses
import hashlib
import json
import re
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("pybullet")

from scipy.ndimage import sobel

from video_adapter.data.datagen.base import COLORS
from video_adapter.data.datagen.broad_bullet import BROAD_BULLET, SCENARIOS
from video_adapter.data.datagen.broad_bullet import TEMPLATES as BROAD_TEMPLATES
from video_adapter.data.datagen.egocentric import EGOCENTRIC
from video_adapter.data.datagen.robot import ROBOT, ROBOT_REAL

GENERATORS = [ROBOT, ROBOT_REAL, EGOCENTRIC, BROAD_BULLET]
DOMAINS = [ROBOT, ROBOT_REAL, EGOCENTRIC]
KINDS = [g.kind for g in GENERATORS]


def template_regex(template: str) -> re.Pattern:
    return re.compile(re.sub(r"\\\{[^}]*\\\}", ".+", re.escape(template)))


def ground_dir(camera: dict, name: str) -> np.ndarray:
    """The camera-terms direction `name` as a unit vector on the ground, from the camera recorded in meta."""
    forward = np.subtract(camera["target"], camera["eye"])
    right = np.cross(forward, camera["up"])
    away = forward * [1, 1, 0]
    right, away = right * [1, 1, 0] / np.linalg.norm(right[:2]), away / np.linalg.norm(away[:2])
    return {"left": -right, "right": right, "forward": away, "backward": -away}[name]


def heading(camera: dict) -> float:
    return float(np.arctan2(camera["target"][1] - camera["eye"][1], camera["target"][0] - camera["eye"][0]))


def wrap(angle: float) -> float:
    return float(np.angle(np.exp(1j * angle)))


@pytest.mark.parametrize("gen", GENERATORS, ids=KINDS)
def test_same_seed_and_index_give_the_same_clip_in_any_order(gen):
    a = gen.clip(3, 11, (24, 40), 6)
    other = gen.clip(4, 11, (24, 40), 6)  # whatever another clip leaves behind must not reach the next one
    b = gen.clip(3, 11, (24, 40), 6)
    assert np.array_equal(a.video, b.video) and a.meta == b.meta and a.caption == b.caption
    assert not np.array_equal(a.video, other.video)
    assert not np.array_equal(a.video, gen.clip(3, 12, (24, 40), 6).video)


@pytest.mark.slow
def test_a_fresh_process_makes_the_same_clip():
    code = ("import hashlib; from video_adapter.data.datagen.robot import ROBOT_REAL as g; "
            "print(hashlib.sha1(g.clip(2, 5, (24, 40), 4).video.tobytes()).hexdigest())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[-1] == hashlib.sha1(ROBOT_REAL.clip(2, 5, (24, 40), 4).video.tobytes()).hexdigest()


def test_pybullet_prints_nothing_of_its_own(capfd):
    # a fresh process: this one imported pybullet and connected long ago, where capfd could not see it
    code = ("print('ours', flush=True); from video_adapter.data.datagen.robot import ROBOT; "
            "ROBOT.clip(0, 0, (24, 40), 2); print('still ours')")
    subprocess.run([sys.executable, "-c", code], check=True)  # inherits fds 1 and 2, which capfd captures
    out, err = capfd.readouterr()
    assert "pybullet build time" not in out + err and "argv[0]=" not in out + err
    assert out.split() == ["ours", "still", "ours"]


@pytest.mark.parametrize("gen", GENERATORS, ids=KINDS)
@pytest.mark.parametrize("size,frames", [((24, 40), 16), ((48, 80), 3), ((24, 40), 5)])
def test_video_is_uint8_frames_by_size_and_moves(gen, size, frames):
    video = gen.clip(1, 0, size, frames).video
    assert video.dtype == np.uint8 and video.shape == (frames, *size, 3)
    assert video.std() > 5  # a scene, not a blank frame
    assert np.abs(video[-1].astype(int) - video[0].astype(int)).mean() > 0.5  # something moved


@pytest.mark.parametrize("gen", GENERATORS, ids=KINDS)
def test_caption_is_made_from_meta_and_names_what_is_in_the_scene(gen):
    for i in range(8):
        clip = gen.clip(i, 1, (12, 20), 3)
        meta = json.loads(json.dumps(clip.meta))  # JSON-serialisable, and the round trip loses nothing
        assert clip.caption == gen.caption(meta)
        assert any(template_regex(t).fullmatch(clip.caption) for t in gen.templates)
        assert meta["color"] in COLORS and f"{meta['color']} " in clip.caption
        if gen in (ROBOT, ROBOT_REAL):
            colors = [b["color"] for b in meta["blocks"]]
            assert 2 <= len(colors) <= 4 and colors[0] == meta["color"] and len(set(colors)) == len(colors)
        elif gen is EGOCENTRIC:
            named = meta["objects"][0]
            assert (named["name"], named["color"]) == (meta["object"], meta["color"])
            assert f"{meta['color']} {meta['object']}" in clip.caption
            assert [o["color"] for o in meta["objects"]].count(meta["color"]) == 1  # the caption is unambiguous
        else:
            assert meta["object"] in clip.caption or meta["scenario"] == "roll"


@pytest.mark.parametrize("gen", GENERATORS, ids=KINDS)
def test_look_and_held_out_are_json_and_say_what_is_held_out(gen):
    json.dumps(gen.look)
    json.dumps(gen.held_out)
    if gen in DOMAINS:
        assert gen.held_out["templates"] == list(gen.templates) and gen.held_out["look"]
    if gen in (ROBOT, ROBOT_REAL):
        assert gen.held_out["arm"] == "xarm"


def test_robot_push_moves_the_named_block_the_stated_way_and_reach_moves_nothing():
    seen = set()
    for i in range(40):
        meta = ROBOT.clip(i, 2, (12, 20), 4).meta
        moved = [np.subtract(b["end"][:2], b["start"][:2]) for b in meta["blocks"]]
        if meta["task"] == "push":
            way = ground_dir(meta["camera"], meta["direction"])[:2]
            assert moved[0] @ way > 0.1, meta  # pushed at least 10 cm the stated way
            assert abs(moved[0] @ [-way[1], way[0]]) < 0.05, meta  # and not much sideways
        assert all(np.linalg.norm(m) < 0.01 for m in moved[meta["task"] == "push":]), meta  # the rest stay put
        seen.add(meta["direction"])
        if len(seen) == 5:
            break
    assert seen == {"left", "right", "forward", "backward", None}


def test_robot_real_looks_like_a_camera_and_keeps_the_edges():
    sim, real = ROBOT.clip(0, 3, (24, 40), 4), ROBOT_REAL.clip(0, 3, (24, 40), 4)
    assert sim.meta["blocks"] != real.meta["blocks"]  # unpaired: the same (seed, index) is another scene
    sim, real = sim.video, real.video
    # a clean render repeats its still background exactly from frame to frame; a noisy sensor never does
    still = [(np.abs(v[1].astype(int) - v[0].astype(int)).max(-1) == 0).mean() for v in (sim, real)]
    assert still[0] > 0.5 and still[1] < 0.1
    assert np.abs(sim.mean((0, 1, 2)) - real.mean((0, 1, 2))).max() > 10  # another light, table and colour cast

    def edges(video):
        gray = video.astype(float).mean(-1)
        return np.hypot(sobel(gray, axis=1), sobel(gray, axis=2)).ravel()

    # the same scene through both looks: the Sobel edges (what an edge-conditioned adapter sees) agree
    paired = dataclasses.replace(ROBOT_REAL, stream=ROBOT.stream)
    corr = [np.corrcoef(edges(ROBOT.clip(i, 3, (24, 40), 4).video), edges(paired.clip(i, 3, (24, 40), 4).video))[0, 1]
            for i in range(2)]
    assert min(corr) > 0.4, corr


def test_egocentric_camera_does_what_the_caption_says():
    seen = set()
    for i in range(30):
        meta = EGOCENTRIC.clip(i, 4, (12, 20), 3).meta
        start, end = meta["camera_start"], meta["camera_end"]
        target = np.array(meta["objects"][0]["xy"])
        bearing = float(np.arctan2(*(target - end["eye"][:2])[::-1]))
        assert abs(wrap(heading(end) - bearing)) < 0.2, meta  # every motion ends facing the named object
        if meta["motion"] == "turn":
            turn = wrap(heading(end) - heading(start))
            assert (turn if meta["direction"] == "left" else -turn) > 0.7, meta  # left turns raise the heading
        elif meta["motion"] == "walk":
            distance = [np.linalg.norm(target - np.array(c["eye"][:2])) for c in (start, end)]
            assert distance[1] < distance[0] - 0.8, meta
        else:
            assert end["target"][2] - end["eye"][2] < start["target"][2] - start["eye"][2] - 0.4, meta
        seen.add((meta["motion"], meta["direction"]))
    assert seen == {("turn", "left"), ("turn", "right"), ("walk", None), ("look down", None)}


@pytest.mark.slow
def test_broad_bullet_never_shows_a_domain():
    domain_templates = {t for g in DOMAINS for t in g.templates}
    patterns = [template_regex(t) for t in domain_templates]
    assert not set(BROAD_TEMPLATES) & domain_templates
    held_photos = {ROBOT_REAL.surface.table_photo, ROBOT_REAL.surface.floor_photo, EGOCENTRIC.held_out["floor_photo"]}
    scenarios = set()
    for i in range(50):
        clip = BROAD_BULLET.clip(i, 9, (8, 8), 2)
        meta = clip.meta
        assert "xarm" not in json.dumps(meta).lower() and meta.get("arm") in (None, "kuka", "franka")
        assert not any(p.fullmatch(clip.caption) for p in patterns), clip.caption
        assert meta["ground_photo"] not in held_photos
        eye = np.array(meta["camera"]["eye"])
        assert all(np.linalg.norm(eye - g.camera.eye) > 0.3 for g in (ROBOT, ROBOT_REAL))
        scenarios.add(meta["scenario"])
    assert scenarios == set(SCENARIOS)
