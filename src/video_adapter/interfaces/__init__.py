"""The interfaces: the `video-adapter` command, its `sample` command and the demo."""
