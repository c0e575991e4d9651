"""Shard leases (stream/leases.py) on every metastore: SQLite, PostgreSQL and MariaDB.

The stream tests run consumers against kinesalite on SQLite; these drive the lease table itself, so the
fenced updates that keep two consumers from holding one shard are checked on each database. Time is the
consumers' monotonic clock, moved by hand (``Clock``), never waited for.
"""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

import pytest

from emrml.service.app import EmrML
from emrml.stream import leases as lease_module
from emrml.stream.kinesis import Shard
from emrml.stream.leases import SHARD_END, LeaseTable

LEASE_SECONDS = 10.0
SHARDS = [Shard(f"shardId-{n:012d}", (), False) for n in range(4)]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    # The lease module's own name is replaced, not time.monotonic: other threads keep the real clock.
    monkeypatch.setattr(lease_module, "time", SimpleNamespace(monotonic=clock))
    return clock


def table(app: EmrML, owner: str) -> LeaseTable:
    return LeaseTable(app.sessions, "st-leases", owner, LEASE_SECONDS)


def balance(*tables: LeaseTable) -> Counter[str | None]:
    """Let each consumer take what it should, as its loop does each round; the owners' lease counts."""
    for consumer in tables:
        for lease in consumer.to_take(consumer.leases()):
            consumer.take(lease)
    return Counter(lease.owner for lease in tables[0].leases())


def test_two_consumers_split_four_shards_and_only_one_wins_a_race(app: EmrML, clock: Clock) -> None:
    a, b = table(app, "a"), table(app, "b")
    a.add_shards(SHARDS)
    b.add_shards(SHARDS)  # a second consumer adding the same shards changes nothing
    assert len(a.leases()) == 4 and all(lease.owner is None for lease in a.leases())
    # Both saw shard 0 free at counter 0: of the two takes exactly one succeeds.
    first = a.leases()[0]
    b.leases()
    assert a.take(first) == 1 and b.take(first) is None
    assert b.leases()[0].owner == "a"
    # b sees a holding one lease: a live consumer, so b aims at 2 and takes free ones; a stops at its 2.
    assert balance(b, a) == Counter({"a": 2, "b": 2})
    assert balance(a, b) == Counter({"a": 2, "b": 2})


def test_a_consumer_that_stops_renewing_loses_its_leases_and_writes_nothing_after(
    app: EmrML, clock: Clock
) -> None:
    a, b = table(app, "a"), table(app, "b")
    a.add_shards(SHARDS)
    assert balance(a) == Counter({"a": 4})
    held = {lease.shard_id: lease.counter for lease in a.leases()}
    b.leases()  # b first sees every counter now
    clock.now += LEASE_SECONDS - 1
    shard = SHARDS[0].shard_id
    held[shard] = a.renew(shard, held[shard], millis_behind=0) or 0
    clock.now += 2
    # Three leases stood still for a lease time on b's clock: b takes its share (a still looks alive).
    assert balance(b) == Counter({"b": 2, "a": 2})
    assert balance(b) == Counter({"b": 2, "a": 2})  # at its target, b takes no more
    clock.now += LEASE_SECONDS  # a renews nothing more: everything it holds has expired
    assert balance(b) == Counter({"b": 4})
    # a's writes on the shards it lost are fenced off: no renewal, no checkpoint, no release.
    for lease in b.leases():
        assert a.renew(lease.shard_id, held[lease.shard_id], millis_behind=0) is None
        assert a.checkpoint(lease.shard_id, held[lease.shard_id], "49", (5, 5, 0), 0) is None
        assert not a.release(lease.shard_id, held[lease.shard_id])
    assert all(lease.checkpoint is None for lease in b.leases())


def test_checkpoints_add_their_counts_and_a_released_lease_is_free_at_once(app: EmrML, clock: Clock) -> None:
    a, b = table(app, "a"), table(app, "b")
    a.add_shards(SHARDS[:1])
    shard = SHARDS[0].shard_id
    counter = a.take(a.leases()[0])
    assert counter is not None
    counter = a.checkpoint(shard, counter, "495900", (10, 9, 1), 1200)
    assert counter is not None
    counter = a.checkpoint(shard, counter, SHARD_END, (3, 3, 0), 0)
    assert counter is not None
    with app.sessions() as session:
        row = session.get(lease_module.StreamLease, ("st-leases", shard))
        assert (row.records_in, row.records_out, row.records_failed) == (13, 12, 1)
        assert row.checkpoint == SHARD_END and row.millis_behind_latest == 0
    assert a.leases()[0].finished and b.to_take(b.leases()) == []  # a finished shard is never taken
    assert a.release(shard, counter)
    lease = b.leases()[0]
    assert lease.owner is None and b.expired(lease)
