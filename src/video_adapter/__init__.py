"""video-adapter: probabilistic adaptation of text-to-video diffusion models (Video Adapter)."""

__version__ = "0.1.0"
