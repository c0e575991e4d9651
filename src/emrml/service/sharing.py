"""Share links: read-only views of one evaluation or model opened by an unguessable token (stored hashed,
table of migration 0006), with an optional expiry, revocable; the console offers them.

A link shows its object as its creator sees it, to whoever holds the token: publishing an object is
changing who may see it, so creating a link needs the right to change the object (``Update<kind>`` on it:
its owner, an admin, a group granting it) besides reading it. Revoking one needs the same, except for the
links one created oneself: whoever shared may always take it back.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from emrml.errors import AccessDeniedException, InvalidInputException, ResourceNotFoundException
from emrml.service.logins import token_digest
from emrml.service.metastore import Sessions, now
from emrml.service.rows import ENTITY_CLASSES, ShareLink
from emrml.service.validation import require_id

if TYPE_CHECKING:
    from emrml.service.access import Access

#: The kinds of object a share link can show, with their id member.
SHAREABLE = {"Evaluation": "EvaluationId", "MLModel": "MLModelId"}
#: A link's id: this many random bytes, in hexadecimal.
_LINK_ID_BYTES = 8
_LINK_ID = re.compile(f"[0-9a-f]{{{2 * _LINK_ID_BYTES}}}")


@dataclass(frozen=True)
class ShareInfo:
    link_id: str
    kind: str
    object_id: str
    created_by: str
    created_at: float
    expires_at: float | None
    revoked_at: float | None


class ShareLinks:
    """The share links of one metastore, created and revoked by users as ``access`` allows them."""

    def __init__(self, sessions: Sessions, access: Access) -> None:
        self.sessions = sessions
        self.access = access

    # ------------------------------------------------------------------------------------ permissions

    def _request(self, kind: str, object_id: str) -> dict[str, Any]:
        if kind not in SHAREABLE:
            raise InvalidInputException(f"only {' and '.join(SHAREABLE)} objects can be shared")
        request = {SHAREABLE[kind]: object_id}
        # Checked as the operations check their ids, before any lookup: the console's share form sends the
        # id as given, and one holding a NUL was a 500 on PostgreSQL, whose text holds none.
        require_id(request, SHAREABLE[kind])
        return request

    def _check(self, user: str, kind: str, object_id: str, *, changes: bool) -> None:
        """Raise unless ``user`` may read the object (as ``Get<kind>`` answers: another user's object it may
        not read is not found) and, when ``changes``, change it."""
        arn, request = self.access.user_arn(user), self._request(kind, object_id)
        self.access.authorize(arn, f"Get{kind}", request)
        with self.sessions() as session:
            if session.get(ENTITY_CLASSES[kind], object_id) is None:
                raise ResourceNotFoundException(f"{kind} {object_id!r} does not exist")
        if changes:
            self.access.authorize(arn, f"Update{kind}", request)

    def may_share(self, user: str, kind: str, object_id: str) -> bool:
        """Whether ``user`` may create (and revoke every) share link of the object: the console offers it
        only then."""
        try:
            self._check(user, kind, object_id, changes=True)
        except (AccessDeniedException, ResourceNotFoundException, InvalidInputException):
            return False
        return True

    # ------------------------------------------------------------------------------------ links

    def share(self, user: str, kind: str, object_id: str, expires_at: float | None) -> tuple[str, str]:
        """A new share link of one object, by ``user``: (link id, token). The token is shown once, stored
        hashed. AccessDeniedException unless the user may change the object."""
        self._check(user, kind, object_id, changes=True)
        if expires_at is not None and expires_at <= now():
            raise InvalidInputException("a share link's expiry must be in the future")
        token, link_id = secrets.token_urlsafe(32), secrets.token_hex(_LINK_ID_BYTES)
        with self.sessions() as session, session.begin():
            session.add(
                ShareLink(
                    token_hash=token_digest(token),
                    link_id=link_id,
                    kind=kind,
                    object_id=object_id,
                    created_by=user,
                    created_at=now(),
                    expires_at=expires_at,
                )
            )
        return link_id, token

    def revoke(self, user: str, link_id: str, kind: str, object_id: str) -> ShareInfo:
        """Revoke a link of the object ``kind``/``object_id``, by ``user``: one it created, or any when it
        may change the object (AccessDeniedException otherwise). A link of another object is not found, and
        stays as it was."""
        if not _LINK_ID.fullmatch(link_id):  # no link has another id: not looked up (a NUL, on PostgreSQL)
            raise ResourceNotFoundException(f"share link {link_id!r} does not exist")
        self._check(user, kind, object_id, changes=False)
        with self.sessions() as session, session.begin():
            link = session.scalar(
                select(ShareLink).where(
                    ShareLink.link_id == link_id, ShareLink.kind == kind, ShareLink.object_id == object_id
                )
            )
            if link is None:
                raise ResourceNotFoundException(f"share link {link_id!r} does not exist")
            if link.created_by != user:
                self._check(user, kind, object_id, changes=True)
            session.execute(
                update(ShareLink)
                .where(ShareLink.link_id == link_id, ShareLink.revoked_at.is_(None))
                .values(revoked_at=now())
            )
            return _share_info(link)

    def shared(self, token: str) -> ShareInfo | None:
        """The live link of a token: None when unknown, revoked or expired."""
        if not token or len(token) > 100:
            return None
        with self.sessions() as session:
            link = session.get(ShareLink, token_digest(token))
            if link is None or link.revoked_at is not None:
                return None
            if link.expires_at is not None and link.expires_at <= now():
                return None
            return _share_info(link)

    def links(self, kind: str, object_id: str) -> list[ShareInfo]:
        with self.sessions() as session:
            rows = session.scalars(
                select(ShareLink)
                .where(ShareLink.kind == kind, ShareLink.object_id == object_id)
                .order_by(ShareLink.created_at)
            )
            return [_share_info(link) for link in rows]


def _share_info(link: ShareLink) -> ShareInfo:
    return ShareInfo(
        link.link_id,
        link.kind,
        link.object_id,
        link.created_by,
        link.created_at,
        link.expires_at,
        link.revoked_at,
    )
