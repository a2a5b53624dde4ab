"""`python -m video_adapter ...` is the `video-adapter` command (so launchers such as accelerate and torchrun run it
as a module)."""

from .interfaces.cli import main

main()
