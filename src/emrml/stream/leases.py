"""Shard leases in the metastore, as the Kinesis Client Library keeps them in DynamoDB.

Every shard of a stream has a lease row: owner, counter, checkpoint. The owner renews its leases by
raising their counters; every change is a fenced ``UPDATE`` (``metastore.fenced_update``) conditioned on
the owner and counter the writer last saw, so of two consumers racing for a lease exactly one wins, and a
consumer whose lease was taken writes nothing more to it (neither a renewal nor a checkpoint).

**Expiry without shared clocks.** A consumer notes, on its own monotonic clock, when it first saw each
lease's current counter. A lease whose counter has not moved for ``lease_seconds`` of that clock is
expired and may be taken: the owner stopped renewing (killed, cut off from the metastore). An owner
stops reading a shard once ``lease_seconds / 2`` have passed since its last successful renewal began, so it
never works on a shard another consumer may already hold.

**Balance.** Each consumer aims at ``ceil(leases / consumers)`` leases (consumers: the distinct owners of
live leases, itself included). Below that it takes expired or free leases first, then steals one lease per
round from the consumer holding the most, when that one holds more than the target.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from emrml.service.metastore import Sessions, fenced_update, now
from emrml.service.rows import StreamLease
from emrml.stream.kinesis import Shard

#: The checkpoint of a shard whose every record is processed (KCL's name).
SHARD_END = "SHARD_END"


@dataclass(frozen=True)
class Lease:
    shard_id: str
    parents: tuple[str, ...]
    owner: str | None
    counter: int
    checkpoint: str | None

    @property
    def finished(self) -> bool:
        return self.checkpoint == SHARD_END


class LeaseTable:
    """The leases of one stream, seen and changed by one consumer (``owner``)."""

    def __init__(self, sessions: Sessions, stream_id: str, owner: str, lease_seconds: float) -> None:
        self.sessions = sessions
        self.stream_id = stream_id
        self.owner = owner
        self.lease_seconds = lease_seconds
        #: shard → (owner, counter, monotonic time this consumer first saw that counter)
        self._seen: dict[str, tuple[str | None, int, float]] = {}

    def _key(self) -> list[Any]:
        return [StreamLease.stream_id == self.stream_id]

    def add_shards(self, shards: list[Shard]) -> None:
        """Create the lease of every shard that has none yet (a new stream, a split or merge), and start
        over the lease of a shard that belongs to an older stream of the same name (``_renew_stale``)."""
        known = {lease.shard_id: lease for lease in self.leases()}
        for shard in shards:
            if shard.shard_id in known:
                self._renew_stale(known[shard.shard_id], shard)
                continue
            try:
                with self.sessions() as session, session.begin():
                    session.add(
                        StreamLease(
                            stream_id=self.stream_id,
                            shard_id=shard.shard_id,
                            parents=json.dumps(list(shard.parents)),
                            counter=0,
                            owner_switches=0,
                            records_in=0,
                            records_out=0,
                            records_failed=0,
                        )
                    )
            except IntegrityError:
                pass  # another consumer added it first

    def _renew_stale(self, lease: Lease, shard: Shard) -> None:
        """A stream deleted and created again under its name has shards of the same ids. A lease that
        cannot be of the shard listed now (other parents, or finished while the shard is still open) is
        of the old one: it gets the shard's parents and no checkpoint, else the new shard would wait for
        parents that never end, or never be read. (A checkpoint of the old stream in a lease that looks
        current is refused by Kinesis when used; the consumer then reads the shard anew.)"""
        if lease.parents == shard.parents and not (lease.finished and not shard.closed):
            return
        # Its checkpoint is a sequence number of the old shard, which Kinesis refuses only when the two
        # shards' creation times differ to the second: dropped here rather than risk reading after it.
        values: dict[str, Any] = {
            "parents": json.dumps(list(shard.parents)),
            "counter": lease.counter + 1,
            "checkpoint": None,
        }
        owner_is = StreamLease.owner.is_(None) if lease.owner is None else StreamLease.owner == lease.owner
        where = [*self._key(), StreamLease.shard_id == lease.shard_id, owner_is]
        with self.sessions() as session, session.begin():
            fenced_update(session, StreamLease, [*where, StreamLease.counter == lease.counter], values)

    def leases(self) -> list[Lease]:
        with self.sessions() as session:
            rows = session.execute(
                select(
                    StreamLease.shard_id,
                    StreamLease.parents,
                    StreamLease.owner,
                    StreamLease.counter,
                    StreamLease.checkpoint,
                ).where(*self._key())
            ).all()
        leases = [Lease(s, tuple(json.loads(p)), o, c, k) for s, p, o, c, k in rows]
        moment = time.monotonic()
        for lease in leases:
            seen = self._seen.get(lease.shard_id)
            if seen is None or seen[:2] != (lease.owner, lease.counter):
                self._seen[lease.shard_id] = (lease.owner, lease.counter, moment)
        return leases

    def expired(self, lease: Lease) -> bool:
        """Free, or its counter unchanged for a lease time on this consumer's clock."""
        if lease.owner is None:
            return True
        seen = self._seen.get(lease.shard_id)
        return seen is not None and time.monotonic() - seen[2] >= self.lease_seconds

    def to_take(self, leases: list[Lease]) -> list[Lease]:
        """The leases this consumer should try to take now (module doc: balance)."""
        open_leases = [lease for lease in leases if not lease.finished]
        if not open_leases:
            return []
        live = [lease for lease in open_leases if not self.expired(lease)]
        held = Counter(lease.owner for lease in live)
        consumers = len(set(held) | {self.owner})
        target = math.ceil(len(open_leases) / consumers)
        mine = held.get(self.owner, 0)
        if mine >= target:
            return []
        free = [lease for lease in open_leases if self.expired(lease) and lease.owner != self.owner]
        if free:
            return free[: target - mine]
        others = {owner: count for owner, count in held.items() if owner != self.owner}
        if not others:
            return []
        busiest = max(sorted(others), key=lambda owner: others[owner])
        if others[busiest] <= target:
            return []
        return [next(lease for lease in live if lease.owner == busiest)][:1]

    def take(self, lease: Lease) -> int | None:
        """Take ``lease`` as last seen; the new counter, or None when someone changed it meanwhile."""
        owner_is = StreamLease.owner.is_(None) if lease.owner is None else StreamLease.owner == lease.owner
        where = [
            *self._key(),
            StreamLease.shard_id == lease.shard_id,
            owner_is,
            StreamLease.counter == lease.counter,
        ]
        values: dict[str, Any] = {"owner": self.owner, "counter": lease.counter + 1, "renewed_at": now()}
        if lease.owner is not None and lease.owner != self.owner:
            values["owner_switches"] = StreamLease.owner_switches + 1
        with self.sessions() as session, session.begin():
            return lease.counter + 1 if fenced_update(session, StreamLease, where, values) else None

    def _mine(self, shard_id: str, counter: int) -> list[Any]:
        return [
            *self._key(),
            StreamLease.shard_id == shard_id,
            StreamLease.owner == self.owner,
            StreamLease.counter == counter,
        ]

    def renew(self, shard_id: str, counter: int, millis_behind: int | None) -> int | None:
        """Raise the counter of a lease this consumer holds; the new counter, or None when it was lost."""
        values = {"counter": counter + 1, "renewed_at": now(), "millis_behind_latest": millis_behind}
        with self.sessions() as session, session.begin():
            return (
                counter + 1
                if fenced_update(session, StreamLease, self._mine(shard_id, counter), values)
                else None
            )

    def checkpoint(
        self,
        shard_id: str,
        counter: int,
        sequence: str,
        counts: tuple[int, int, int],
        millis_behind: int | None,
    ) -> int | None:
        """Record that every record up to ``sequence`` (or ``SHARD_END``) has durable outputs, adding
        ``counts`` (records in, out, failed) to the lease's totals; the new counter, or None when the
        lease was lost (nothing is written then)."""
        records_in, records_out, records_failed = counts
        moment = now()
        values = {
            "counter": counter + 1,
            "renewed_at": moment,
            "checkpoint": sequence,
            "checkpointed_at": moment,
            "records_in": StreamLease.records_in + records_in,
            "records_out": StreamLease.records_out + records_out,
            "records_failed": StreamLease.records_failed + records_failed,
            "millis_behind_latest": millis_behind,
        }
        with self.sessions() as session, session.begin():
            return (
                counter + 1
                if fenced_update(session, StreamLease, self._mine(shard_id, counter), values)
                else None
            )

    def release(self, shard_id: str, counter: int) -> bool:
        """Give a lease up (a clean stop): the others may take it at once."""
        values = {"owner": None, "counter": counter + 1}
        with self.sessions() as session, session.begin():
            return fenced_update(session, StreamLease, self._mine(shard_id, counter), values)
