"""video-adapter: probabilistic adaptation of text-to-video diffusion models (Video Adapter).

From Python, in diffusers' style (`interfaces/pipeline.py`):

    from video_adapter import VideoAdapterPipeline

    pipe = VideoAdapterPipeline.from_pretrained(prior="checkpoints/prior", adapter="runs/robot/checkpoint")
    video = pipe("push the blue block to the left", image=start_frame).frames[0]

Importing the package loads nothing heavy: the pipeline (torch, the models) loads on first use of its name.
"""

__version__ = "0.1.0"
__all__ = ["VideoAdapterPipeline", "VideoAdapterPipelineOutput", "__version__"]

_LAZY = ("VideoAdapterPipeline", "VideoAdapterPipelineOutput")


def __getattr__(name: str):
    if name in _LAZY:
        from .interfaces import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
