"""The review console's keys: one definition for what the script accepts and what the help lists.

The page renders the help from :func:`console_keys` and hands the same list to the script as
JSON, which dispatches ``KeyboardEvent.key`` through it: a key the help does not list does
nothing, and no listed key is left unhandled. Counts are ``0..top`` of the photo's model (its
classes), so the digit row follows the photo shown: the script rewrites the row's ``0 – top``
from the panel's ``data-top``, and refuses a digit above it on the page.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from bincount.corrections import DEFAULT_NUM_CLASSES, MORE_THAN_TOP

DIGITS = "digits"  # the action of the count keys: which digits depends on the photo's top class


@dataclass(frozen=True)
class ConsoleKey:
    """Keys (``KeyboardEvent.key`` values) that do one thing, and how the help shows them."""

    action: str  # what the script does (console.js's ACTIONS)
    keys: tuple[str, ...]
    shown: str
    what: str


def digit_range(top: int) -> str:
    """``0 – 5``: the help's text of the count keys for a model whose top class is ``top``."""
    return f"0 – {top}" if top > 0 else "0"


def console_keys(top: int = DEFAULT_NUM_CLASSES - 1) -> list[ConsoleKey]:
    """Every key the console answers, in the order the help lists them."""
    return [
        ConsoleKey(DIGITS, tuple(str(k) for k in range(top + 1)), digit_range(top), "type the count"),
        ConsoleKey("more", (MORE_THAN_TOP,), MORE_THAN_TOP, f"type “more than {top}”"),
        ConsoleKey("save", ("Enter",), "Enter", "save the typed count"),
        ConsoleKey("accept", ("a", "A"), "a", "accept the model's count"),
        ConsoleKey("skip", ("s", "S"), "s", "skip (stays in the queue)"),
        ConsoleKey("previous", ("ArrowLeft", "ArrowUp"), "←", "previous photo"),
        ConsoleKey("next", ("ArrowRight", "ArrowDown"), "→", "next photo"),
        ConsoleKey("clear", ("Escape", "Backspace"), "Esc", "clear the typed count"),
        ConsoleKey("reload", ("r", "R"), "r", "reload the queue"),
    ]


def keys_json(keys: list[ConsoleKey]) -> list[dict[str, Any]]:
    return [{**asdict(key), "keys": list(key.keys)} for key in keys]
