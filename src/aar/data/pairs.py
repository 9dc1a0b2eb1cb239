"""Pairwise examples: a prompt and two responses, label 1 when the first is the right one.

``pair_text`` is the one place the layout is written (``prompt``, then
``Response A: first``, then ``Response B: second``, one per line) and ``split_pair`` the
one place it is read back. A dataset whose every text is a pair is *pairwise*: its
features are ``f(prompt + first) - f(prompt + second)`` for any encoder (see
``aar.models.cache.get_features``), so a linear head compares the two responses instead of
reading an average of both — the frozen-feature analogue of a reward model's
``r(first) - r(second)``.
"""

from __future__ import annotations

MARK_A = "Response A: "
MARK_B = "\nResponse B: "


def pair_text(prompt: str, first: str, second: str) -> str:
    """The text of one pair."""
    return f"{prompt.strip()}\n{MARK_A}{first.strip()}{MARK_B}{second.strip()}".strip()


def split_pair(text: str) -> tuple[str, str] | None:
    """``(prompt + first, prompt + second)`` of a pair's text, or None if it is not one."""
    if text.startswith(MARK_A):
        a = 0
    else:
        a = text.find("\n" + MARK_A)
        if a < 0:
            return None
        a += 1
    b = text.find(MARK_B, a + len(MARK_A))
    if b < 0:
        return None
    prompt = text[:a]
    return prompt + text[a + len(MARK_A):b], prompt + text[b + len(MARK_B):]


def is_pairwise(texts: list[str]) -> bool:
    """Whether every text is a pair (an empty list is not)."""
    return bool(texts) and all(split_pair(t) is not None for t in texts)
