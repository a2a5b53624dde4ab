"""Optional dependencies (pyproject's extras): a command that needs one says which extra installs it, instead of a
bare "No module named ..."."""

from __future__ import annotations

import importlib.util


def require(extra: str, *modules: str) -> None:
    """ImportError naming `extra` when any of `modules` is not installed."""
    if missing := [m for m in modules if importlib.util.find_spec(m) is None]:
        raise ImportError(f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed: "
                          f"pip install 'video-adapter[{extra}]' (make test installs it into .venv)")
