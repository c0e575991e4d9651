"""Console logins against an LDAP directory (``ldap3``; settings ``ldap_*``, docs/security.md).

A user who has no local password is looked up in the directory: a simple bind as the user's entry checks
the password (the entry from the ``ldap_user_dn`` pattern, or searched for under ``ldap_search_base`` after
a bind as the service account), then the groups naming the entry (``member``, ``uniqueMember`` or
``memberUid``) give the user's emrml groups through ``ldap_group_map``. The first login creates the user;
every login sets the mapped groups again, so a change in the directory takes effect at the next login.

User names are emrml's (``[A-Za-z0-9+=,.@_-]``, checked before anything is sent) and are escaped for DNs
and filters all the same: nothing a user types changes the shape of a query.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from emrml.config import Settings
from emrml.errors import ResourceNotFoundException
from emrml.service.identity import USER_NAME


class DirectoryRefused(Exception):
    """The directory does not know the user or the password is wrong."""


class DirectoryUnavailable(Exception):
    """The directory cannot be reached or answered an error."""


class MappedGroupsMissing(ResourceNotFoundException):
    """Emrml groups a directory user's groups map to (``ldap_group_map``) that do not exist: the login is
    refused rather than the user set up without them, or in other groups than the mapping says."""

    def __init__(self, groups: list[str]) -> None:
        super().__init__(f"group(s) {', '.join(map(repr, groups))} do not exist")
        self.groups = groups


@dataclass(frozen=True)
class DirectoryUser:
    dn: str
    #: The emrml groups the directory's groups map to.
    groups: tuple[str, ...]
    #: Each of ``groups``: the ``ldap_group_map`` entries (directory group DNs, as the setting spells them)
    #: that gave it, which an error about the group names.
    mapped_from: dict[str, tuple[str, ...]] = field(default_factory=dict)


class Directory:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.mapping = {dn.lower(): group for dn, group in settings.ldap_group_map.items()}
        #: The setting's spelling of each (lower-cased) directory group DN.
        self.spelling = {dn.lower(): dn for dn in settings.ldap_group_map}

    @classmethod
    def from_settings(cls, settings: Settings) -> Directory | None:
        return cls(settings) if settings.ldap_url else None

    @property
    def mapped_groups(self) -> set[str]:
        """The emrml groups the directory decides (membership of the others is left alone)."""
        return set(self.mapping.values())

    def _connection(self, dn: str | None, password: str | None):  # type: ignore[no-untyped-def]
        import ldap3

        server = ldap3.Server(self.settings.ldap_url, connect_timeout=self.settings.ldap_timeout)
        connection = ldap3.Connection(
            server,
            user=dn,
            password=password,
            receive_timeout=max(1, int(self.settings.ldap_timeout)),
            raise_exceptions=True,
        )
        connection.open()
        if self.settings.ldap_start_tls == "on":
            connection.start_tls()
        return connection

    def authenticate(self, user: str, password: str) -> DirectoryUser:
        """The user's entry and mapped groups, if the password is right; DirectoryRefused if not."""
        from ldap3.core import exceptions
        from ldap3.utils.conv import escape_filter_chars
        from ldap3.utils.dn import escape_rdn

        if not USER_NAME.fullmatch(user) or not password:
            raise DirectoryRefused(user)
        try:
            if self.settings.ldap_user_dn:
                dn = self.settings.ldap_user_dn.replace("{user}", escape_rdn(user))
            else:
                dn = self._search_user(escape_filter_chars(user))
            try:
                connection = self._connection(dn, password)
                connection.bind()
            except exceptions.LDAPInvalidCredentialsResult:
                raise DirectoryRefused(user) from None
            try:
                groups = (
                    self._groups(connection, dn, escape_filter_chars(user))
                    if self.settings.ldap_group_base
                    else []
                )
            finally:
                connection.unbind()
        except DirectoryRefused:
            raise
        except (exceptions.LDAPException, OSError) as exc:
            raise DirectoryUnavailable(f"{type(exc).__name__}: {exc}") from None
        mapped_from: dict[str, tuple[str, ...]] = {}
        for found in sorted({g.lower() for g in groups} & self.mapping.keys()):
            group = self.mapping[found]
            mapped_from[group] = (*mapped_from.get(group, ()), self.spelling[found])
        return DirectoryUser(dn, tuple(sorted(mapped_from)), mapped_from)

    def unmapped_entries(self, existing: set[str]) -> list[str]:
        """The ``ldap_group_map`` entries that name an emrml group not in ``existing``, said for the
        administrator: a login through one of them is refused until the group is created."""
        return [
            f"directory group '{dn}' is mapped to emrml group '{group}', which does not exist"
            for dn, group in self.settings.ldap_group_map.items()
            if group not in existing
        ]

    def missing_groups_message(self, user: str, found: DirectoryUser, missing: list[str]) -> str:
        """For the administrator (the server's log): which mappings name which missing groups."""
        entries = "; ".join(
            f"directory group '{dn}' is mapped to emrml group '{group}'"
            for group in missing
            for dn in found.mapped_from.get(group, ())
        )
        return (
            f"LDAP login of {user!r} refused: setting ldap_group_map names emrml group(s) that do not exist "
            f"({entries}): create the group(s) (console Groups page, or emrml groups create NAME) or correct "
            "the mapping"
        )

    def _search_user(self, escaped: str) -> str:
        connection = self._connection(
            self.settings.ldap_bind_dn or None, self.settings.ldap_bind_password or None
        )
        try:
            connection.bind()
            query = self.settings.ldap_search_filter.replace("{user}", escaped)
            connection.search(self.settings.ldap_search_base, query, attributes=[])
            if len(connection.entries) != 1:
                raise DirectoryRefused(escaped)
            return str(connection.entries[0].entry_dn)
        finally:
            connection.unbind()

    def _groups(self, connection, dn: str, escaped_user: str) -> list[str]:  # type: ignore[no-untyped-def]
        from ldap3.utils.conv import escape_filter_chars

        escaped_dn = escape_filter_chars(dn)
        query = f"(|(member={escaped_dn})(uniqueMember={escaped_dn})(memberUid={escaped_user}))"
        connection.search(self.settings.ldap_group_base, query, attributes=[])
        return [str(entry.entry_dn) for entry in connection.entries]
