"""The numpy-only generators: the broad corpus's procedural family and the animation domain.

Determinism, sizes, captions generated from (and agreeing with) the metadata, motion that the pixels really show,
occlusion, the toon look, and that nothing of the animation domain leaks into the broad corpus.
"""

import dataclasses
import json
import re

import numpy as np
import pytest

from video_adapter.data.datagen import base
from video_adapter.data.datagen.animation import ANIMATION, PALETTE, rgb
from video_adapter.data.datagen.procedural import BROAD_PROCEDURAL, PHOTO_SUBJECTS
from video_adapter.data.dataset import ANIME_KEYWORDS

GENERATORS = [BROAD_PROCEDURAL, ANIMATION]
SIZE = (24, 40)


@pytest.fixture(scope="module")
def broad():
    return [BROAD_PROCEDURAL.clip(i, 3, SIZE, 16) for i in range(200)]


@pytest.fixture(scope="module")
def cartoons():
    return [ANIMATION.clip(i, 3, SIZE, 16) for i in range(60)]


def luminance(video: np.ndarray) -> np.ndarray:
    return video.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def template_regex(template: str) -> re.Pattern:
    return re.compile(re.sub(r"\\\{[^}]*\\\}", ".+", re.escape(template)))


@pytest.mark.parametrize("gen", GENERATORS, ids=lambda g: g.kind)
def test_clips_are_a_function_of_seed_and_index(gen):
    a = gen.clip(5, 11, SIZE, 16)
    gen.clip(7, 11, SIZE, 16)  # rendering other clips in between changes nothing
    b = gen.clip(5, 11, SIZE, 16)
    assert a.video.tobytes() == b.video.tobytes() and a.meta == b.meta and a.caption == b.caption
    for other in (gen.clip(6, 11, SIZE, 16), gen.clip(5, 12, SIZE, 16)):
        assert not np.array_equal(a.video, other.video) and a.meta != other.meta


@pytest.mark.parametrize("gen", GENERATORS, ids=lambda g: g.kind)
@pytest.mark.parametrize("size", [(24, 40), (48, 80), (32, 32)])
@pytest.mark.parametrize("frames", [1, 5, 16])
def test_shape_dtype_and_serialisable_meta(gen, size, frames):
    for index in range(2):
        clip = gen.clip(index, 0, size, frames)
        assert clip.video.shape == (frames, *size, 3) and clip.video.dtype == np.uint8
        assert clip.video.std() > 5  # a picture, not a blank
        assert gen.caption(json.loads(json.dumps(clip.meta))) == clip.caption


@pytest.mark.slow
def test_captions_come_from_meta(broad, cartoons):
    for gen, clips in ((BROAD_PROCEDURAL, broad), (ANIMATION, cartoons)):
        assert len({c.caption for c in clips}) > 0.8 * len(clips)
        for clip in clips:
            assert clip.caption == gen.caption(clip.meta)
            assert any(template_regex(t).search(clip.caption) for t in gen.templates), clip.caption


@pytest.mark.slow
def test_broad_captions_name_what_meta_holds(broad):
    scenes = {c.meta["scene"] for c in broad}
    assert scenes == {"shapes", "occlusion", "swap", "camera"}
    for clip in broad:
        meta, caption = clip.meta, clip.caption
        if meta["scene"] == "camera":
            assert PHOTO_SUBJECTS[meta["photo"]] in caption and meta.get("direction", "") in caption
            continue
        for obj in meta["objects"]:
            assert f"{obj['color']} {obj['shape']}" in caption and obj.get("direction", "") in caption
        if meta["scene"] == "occlusion":
            occ = meta["occluder"]
            assert f"behind {occ['noun']}" in caption and f"{occ['color']} {occ['shape']}" in caption
        bg = meta["background"]
        words = [PHOTO_SUBJECTS.get(bg.get("photo"), ""), bg.get("color", ""), bg.get("color2", "")]
        assert all(w in caption for w in words)


@pytest.mark.slow
def test_broad_shapes_have_the_named_colour_where_meta_puts_them(broad):
    checked = 0
    for clip in broad:
        meta = clip.meta
        if meta["scene"] != "shapes" or len(meta["objects"]) != 1 or meta["background"]["kind"] != "plain":
            continue
        obj = meta["objects"][0]
        video = clip.video.astype(np.float32)
        bg = np.array(base.COLORS[meta["background"]["color"]]) * 255
        for f in range(len(video)):
            if obj["alpha"][f] < 1 or obj["shape"] == "ring" and obj["size"][f] < 0.1:
                continue
            mask = np.abs(video[f] - bg).sum(-1) > 60
            ys, xs = np.nonzero(mask)
            # The shape's pixels are centred where meta says (it is symmetric about its centre) ...
            assert abs(xs.mean() + 0.5 - obj["x"][f] * SIZE[1]) < 1.5, (clip.caption, f)
            assert abs(ys.mean() + 0.5 - obj["y"][f] * SIZE[0]) < 1.5, (clip.caption, f)
            # ... and its centre pixel is the named colour (the shading ramp is 1 at the centre).
            if obj["shape"] != "ring":
                centre = video[f, int(obj["y"][f] * SIZE[0]), int(obj["x"][f] * SIZE[1])]
                assert np.abs(centre - np.array(base.COLORS[obj["color"]]) * 255).max() < 40, (clip.caption, f)
            checked += 1
    assert checked > 40


def change(video: np.ndarray) -> int:
    """Largest change of any pixel from the first frame (a cube turned by 90 degrees can end as it began)."""
    return int(np.abs(video.astype(np.int16) - video[:1].astype(np.int16)).max())


def monotone(values, sign):
    steps = np.diff(values) * sign
    return bool((steps > 0).all())


@pytest.mark.slow
def test_motion_is_real_and_matches_the_caption(broad, cartoons):
    moved = {"left": 0, "right": 0, "up": 0, "down": 0, "pan": 0, "zoom": 0}
    for clip in broad:
        assert change(clip.video) > 30, clip.caption
        meta = clip.meta
        if meta["scene"] == "camera":
            view = np.array(meta["view"])
            if meta["motion"] == "pan":
                sign = {"left": -1, "right": 1, "up": -1, "down": 1}[meta["direction"]]
                assert monotone(view[:, 0 if meta["direction"] in ("left", "right") else 1], sign), clip.caption
                moved["pan"] += 1
            else:
                assert monotone(view[:, 2], -1 if meta["motion"] == "zoom_in" else 1), clip.caption
                assert (view[:, :2] >= -1e-4).all() and (view[:, :2] + view[:, 2:] <= 1 + 1e-4).all()
                moved["zoom"] += 1
            continue
        for obj in meta["objects"]:
            if obj["motion"] in ("move", "occluded"):
                axis, sign = {"left": ("x", -1), "right": ("x", 1), "up": ("y", -1), "down": ("y", 1)}[obj["direction"]]
                assert monotone(obj[axis], sign), clip.caption
                moved[obj["direction"]] += 1
    assert min(moved.values()) > 0, moved
    for clip in cartoons:
        assert change(clip.video) > 30, clip.caption
        meta = clip.meta
        if meta["motion"] in ("walk", "bounce"):
            assert monotone(meta["x"], 1 if meta["direction"] == "to the right" else -1), clip.caption
        if meta["motion"] in ("jump", "bounce"):
            assert max(meta["height"]) > 0.1  # it leaves the ground
    assert {c.meta["motion"] for c in cartoons} == {"bounce", "walk", "jump", "wave", "spin"}


def test_occluded_shapes_disappear_and_reappear():
    clips = [c for c in (BROAD_PROCEDURAL.clip(i, 4, SIZE, 16) for i in range(80)) if c.meta["scene"] == "occlusion"]
    assert len(clips) >= 8
    for clip in clips:
        visible = clip.meta["objects"][0]["visible"]
        assert visible[0] > 0.95 and visible[-1] > 0.95, (clip.caption, visible)
        assert min(visible[2:-2]) < 0.02, (clip.caption, visible)
        hidden = int(np.argmin(visible))
        # while hidden, the moving shape's colour is nowhere in the frame (unless the background has it)
        if clip.meta["background"]["kind"] == "plain":
            color = np.array(base.COLORS[clip.meta["objects"][0]["color"]]) * 255
            assert np.abs(clip.video[hidden].astype(np.float32) - color).sum(-1).min() > 30, clip.caption


def distinct_colours(video: np.ndarray) -> float:
    return float(np.mean([len(np.unique(frame.reshape(-1, 3), axis=0)) for frame in video]))


@pytest.mark.slow
def test_animation_look_is_flat_with_dark_outlines(broad, cartoons):
    photo = [c.video for c in broad if c.meta["scene"] == "camera"]
    toon = np.mean([distinct_colours(c.video) for c in cartoons])
    assert toon < 0.5 * np.mean([distinct_colours(v) for v in photo])
    # Flat bands: a handful of colours cover most of each frame.
    for clip in cartoons[:20]:
        _, counts = np.unique(clip.video[0].reshape(-1, 3), axis=0, return_counts=True)
        assert np.sort(counts)[-8:].sum() > 0.6 * counts.sum()
    # Outlines: the same clips drawn without them are lighter wherever they differ, and only near the subject.
    bare = dataclasses.replace(ANIMATION, look={**ANIMATION.look, "outline_width": 0})
    for index in range(6):
        lined, plain = ANIMATION.clip(index, 3, (48, 80), 8).video, bare.clip(index, 3, (48, 80), 8).video
        changed = np.abs(lined.astype(int) - plain.astype(int)).sum(-1) > 6
        assert changed.mean() > 0.01
        assert (luminance(lined)[changed] < luminance(plain)[changed]).mean() > 0.95
        assert np.percentile(luminance(lined)[changed], 10) < 90


def test_animation_ball_is_banded_in_its_palette_colour():
    size, flat = (48, 80), []
    for index in range(40):
        clip = ANIMATION.clip(index, 5, size, 8)
        meta = clip.meta
        if meta["motion"] != "bounce":
            continue
        colour = rgb(PALETTE[meta["color"]]) * 255
        r = meta["radius"] * size[0]
        yy, xx = np.mgrid[: size[0], : size[1]] + 0.5
        for f in range(len(clip.video)):
            cy = (meta["floor"] - meta["height"][f]) * size[0] - r * meta["squash"][f]
            inside = np.hypot(xx - meta["x"][f] * size[1], (yy - cy) / meta["squash"][f]) < 0.7 * r
            pixels = clip.video[f][inside].astype(np.float32)
            # the lit band is the named colour itself ...
            assert np.abs(pixels - colour).max(-1).min() < 8, (clip.caption, f)
            # ... and the shading is a few flat bands, not a smooth ramp
            _, counts = np.unique(pixels, axis=0, return_counts=True)
            flat.append(np.sort(counts)[-3:].sum() / len(pixels))  # share of the three commonest colours
            assert flat[-1] > 0.6, (clip.caption, f, len(counts))
    assert len(flat) >= 16 and np.mean(flat) > 0.75  # (about 0.8 with 3 bands, 0.64 with 9, 0.15 smooth)


@pytest.mark.slow
def test_broad_corpus_never_holds_the_animation_domain(broad, cartoons):
    held = ANIMATION.held_out
    assert set(held) >= {"look", "templates", "palette", "words"}
    patterns = [template_regex(t) for t in held["templates"]]
    words = set(held["words"]) | set(ANIME_KEYWORDS) | {"toon"}
    for clip in broad:
        text = f"{clip.caption} {json.dumps(clip.meta)}".lower()
        assert not any(w in text for w in words), clip.caption
        assert not any(p.fullmatch(clip.caption) for p in patterns), clip.caption
    assert not set(BROAD_PROCEDURAL.templates) & set(ANIMATION.templates)
    assert "toon" not in json.dumps(BROAD_PROCEDURAL.look).lower()
    broad_rgb = {tuple(round(v * 255) for v in c) for c in base.COLORS.values()}
    assert not broad_rgb & {tuple(np.round(rgb(h) * 255).astype(int)) for h in held["palette"]}
    for clip in cartoons:  # and every animation caption says what it is
        assert any(w in clip.caption.split() for w in held["words"]), clip.caption


def test_broad_photos_are_real_and_not_the_domains_surfaces():
    assert set(PHOTO_SUBJECTS) <= set(base.photos())
    pytest.importorskip("pybullet")
    from video_adapter.data.datagen import generator

    real = generator("robot-real")
    surfaces = {real.surface.table_photo, real.surface.floor_photo, generator("egocentric").held_out["floor_photo"]}
    assert not surfaces & set(PHOTO_SUBJECTS)
