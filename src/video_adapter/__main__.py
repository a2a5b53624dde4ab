"""`python -m video_adapter ...` is the `video-adapter` command (how launchers such as accelerate and torchrun run it)."""

from .interfaces.cli import main

main()
