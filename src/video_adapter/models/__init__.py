"""The models: the space-time U-Net, checkpoints, text encoders, ScoreModel (any denoiser in canonical terms),
diffusers priors and LoRA."""
