"""Share links (service/sharing.py) named by ids as a form sends them: an object id or link id that no
object or link can have is refused before any lookup, on every metastore."""

from __future__ import annotations

import pytest

from emrml.errors import InvalidInputException, ResourceNotFoundException
from emrml.service.app import EmrML
from emrml.service.sharing import ShareLinks


def test_ids_no_object_or_link_can_have_are_refused_unlooked_up(app: EmrML) -> None:
    # A NUL was a 500 on PostgreSQL, whose text holds none: the console's share form sends ids as given.
    app.access.create_user("bob")
    links = ShareLinks(app.sessions, app.access)
    with pytest.raises(InvalidInputException, match="MLModelId"):
        links.share("bob", "MLModel", "ml-\x00", None)
    with pytest.raises(InvalidInputException, match="EvaluationId"):
        links.revoke("bob", "0123456789abcdef", "Evaluation", "ev-\x00")
    with pytest.raises(ResourceNotFoundException, match="share link"):
        links.revoke("bob", "0123456789abcde\x00", "MLModel", "ml-1")
    assert not links.may_share("bob", "MLModel", "ml-\x00")
    assert links.shared("\x00") is None
