"""Training a denoiser: its options and loop (`train`), what a run starts from, one step, and the run's state on
disk."""
