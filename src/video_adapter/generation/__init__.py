"""Generation in one place: loading models, routing prompts and conditions to each, and sampling a set of methods
(`generate`). Every command that samples, and training's previews, goes through it."""
