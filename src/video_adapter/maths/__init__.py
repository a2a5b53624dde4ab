"""The maths: the noise schedule, conditions, samplers, guidance, Video Adapter's composition and MCMC, as pure
functions of tensors and eps functions. It knows nothing of networks, files or commands."""
