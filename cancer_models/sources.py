"""Where a model or an image set comes from: a local path or a Hugging Face Hub id. One rule, used everywhere."""

from __future__ import annotations

from pathlib import Path


def is_hub_id(source: str | Path) -> bool:
    """Whether ``source`` names a Hub repo rather than a local path.

    A Hub id is ``name`` or ``owner/name``. Anything that exists on disk, starts like a path (``.``, ``/``, ``~``),
    has more than one ``/`` or a backslash is a local path, whether or not it exists, so a mistyped folder
    gets a "no such folder" error rather than a Hub lookup.
    """
    text = str(source)
    if not text or isinstance(source, Path) or Path(text).expanduser().exists():
        return False
    return not text.startswith((".", "/", "~")) and text.count("/") <= 1 and "\\" not in text


def display_name(source: str | Path) -> str:
    """What a source is called in a card or a report: a Hub id as is, a local path by its last part (a path
    can name a user's folders, so it is never written out)."""
    return str(source) if is_hub_id(source) else Path(str(source)).name
