"""Evaluation: the paper's protocol and metrics, the per-noise-level diagnosis and the held-out denoising loss."""
