"""The README's screenshot of `video-adapter app`: the page in headless Chromium after one press of Generate.

    video-adapter serve-prior checkpoints/prior --token-file prior.token &      # the prior, behind its API
    python scripts/app_screenshot.py --adapter checkpoints/adapters/robot/small-s/checkpoint \
        --prior http://127.0.0.1:8765 --prior-token-file prior.token --data outputs/robot-data --out docs/app.png

It also holds the page driver that tests/interfaces/test_app.py uses: opening the page, picking from a dropdown,
moving a slider by the keyboard, pressing Generate and fetching the videos shown.
"""

import argparse
import shutil
import socket
import sys
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

STATUS = "#status [data-testid=markdown]"  # the status line itself, not the progress shown over it


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def served_page(studio, browser_path: str):
    """The studio's page on a free loopback port, opened in headless Chromium: yields (page, base URL)."""
    from playwright.sync_api import sync_playwright

    from video_adapter.interfaces.app import build_page

    port = free_port()
    app = build_page(studio).queue()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, allowed_paths=[str(studio.root)])
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=browser_path, headless=True, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/")
            yield page, f"http://127.0.0.1:{port}"
            browser.close()
    finally:
        app.close()


def pick(page, elem_id: str, option: str) -> None:
    """Open a dropdown and click one of its entries, as a user does."""
    page.locator(f"#{elem_id} input").click()
    page.get_by_role("option", name=option, exact=True).click()


def move_slider(page, elem_id: str, presses: int) -> str:
    """Move a slider `presses` steps by the arrow keys (negative: left); returns the value it shows."""
    slider = page.locator(f"#{elem_id} input[type=range]")
    slider.focus()
    for _ in range(abs(presses)):
        slider.press("ArrowRight" if presses > 0 else "ArrowLeft")
    return page.locator(f"#{elem_id} input[type=number]").input_value()


def status(page) -> str:
    return page.locator(STATUS).inner_text().strip()


def press_generate(page, previous: str | None, timeout_s: float = 600) -> str:
    """Generate, and wait until the status line is a new result or error; returns it."""
    page.locator("#generate").click()
    page.wait_for_function("([sel, prev]) => { const s = document.querySelector(sel); const t = s ? s.innerText.trim()"
                           " : ''; return /^(Sampled in|Error:)/.test(t) && t !== prev }", arg=[STATUS, previous or ""],
                           timeout=timeout_s * 1000)
    return status(page)


def shown_videos(page, base: str, folder: Path, tag: str, names) -> dict[str, Path]:
    """Each named video (`#video-NAME`) once it is loaded and looping, fetched from the page's own URL."""
    import httpx

    out = {}
    for name in names:
        video = page.locator(f"#video-{name} video")
        video.wait_for(state="visible", timeout=120_000)
        page.wait_for_function("v => v.readyState >= 2 && v.videoWidth > 0 && v.loop", arg=video.element_handle(),
                               timeout=60_000)
        src = video.get_attribute("src")
        out[name] = folder / f"{tag}-{name}.mp4"
        out[name].write_bytes(httpx.get(src if src.startswith("http") else base + src, timeout=30).content)
    return out


def main() -> None:
    from video_adapter.generation.generate import COMPARE_ROWS
    from video_adapter.interfaces.app import AppConfig, Studio

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", required=True)
    parser.add_argument("--prior", required=True, help="a model directory or http://HOST:PORT")
    parser.add_argument("--prior-token-file", default="")
    parser.add_argument("--data", required=True, help="test clips; the --clip-th one is picked")
    parser.add_argument("--clip", type=int, default=0)
    parser.add_argument("--gamma-presses", type=int, default=0, help="arrow presses on the gamma slider (0.05 each)")
    parser.add_argument("--strip", action="store_true", help="ask for the gamma strip too")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="docs/app.png")
    args = parser.parse_args()
    studio = Studio(AppConfig(adapter=args.adapter, prior=args.prior, prior_token_file=args.prior_token_file,
                              data=args.data, device=args.device))
    with served_page(studio, chromium()) as (page, base):
        pick(page, "clip", list(studio.clips)[args.clip])
        page.wait_for_function("() => document.querySelector('#prompt textarea').value !== ''")
        move_slider(page, "gamma", args.gamma_presses)
        if args.strip:
            page.locator("#strip input[type=checkbox]").check()
        print(press_generate(page, None))
        shown_videos(page, base, studio.root, "shot", COMPARE_ROWS + (("strip",) if args.strip else ()))
        page.wait_for_timeout(1500)  # a few frames into the loop
        page.screenshot(path=args.out, full_page=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
