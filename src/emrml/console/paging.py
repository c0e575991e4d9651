"""Paging both ways through continuation tokens (Describe*'s NextToken, a folder listing's token).

A token leads only forward, so every page link also carries the tokens of the pages before it, oldest
first, as repeated ``back`` parameters ("" stands for the first page): "Previous page" pops the last one.
The URL stays the whole state: back and refresh work, and a page can be bookmarked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from emrml.console.app import Visit

#: Tokens kept for "Previous page"; past this the oldest are dropped (an S3 token is ~100 characters and
#: URLs must stay well under servers' limits). "First page" is always offered.
MAX_BACK = 40


@dataclass(frozen=True)
class Pager:
    """The page links of one page; None where there is no such page (or it is no longer known)."""

    first: str | None
    previous: str | None
    next: str | None


def pager(visit: Visit, path: str, query: dict[str, Any], token: str | None, next_token: str | None) -> Pager:
    """The links around the page ``token`` of ``path`` (``query``: the other parameters every link keeps)."""
    back = visit.request.query_params.getlist("back") if token else []
    console = visit.console
    first = console.url(path, **query) if token else None
    previous = None
    if back:
        previous = console.url(path, **query, token=back[-1], back=back[:-1])
    following = None
    if next_token:
        kept = [*back, token or ""][-MAX_BACK:]
        following = console.url(path, **query, token=next_token, back=kept)
    return Pager(first, previous, following)
