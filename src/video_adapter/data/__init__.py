"""The data: video files, captioned video folders, the make-data generators, latent caches and what training
reads. It knows nothing of networks or sampling."""
