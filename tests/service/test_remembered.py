from __future__ import annotations

from emrml.service.remembered import Remembered


def _counting(values: dict[str, int | None]) -> tuple[list[str], Remembered[str, int | None], list[float]]:
    reads: list[str] = []
    now = [0.0]

    def read(key: str) -> int | None:
        reads.append(key)
        return values.get(key)

    return reads, Remembered(read, ttl=5.0, clock=lambda: now[0], reread=lambda v: v is not None), now


def test_a_value_is_read_once_per_ttl() -> None:
    values = {"a": 1}
    reads, remembered, now = _counting(values)
    assert remembered.fresh("a") == (False, None)  # fresh() never reads
    assert remembered.get("a") == 1 and remembered.get("a") == 1 and reads == ["a"]
    assert remembered.expires_at("a") == 5.0 and remembered.expires_at("b") is None
    values["a"] = 2
    now[0] = 4.9
    assert remembered.fresh("a") == (True, 1)
    now[0] = 5.1
    assert remembered.fresh("a") == (False, None)
    assert remembered.get("a") == 2 and reads == ["a", "a"]


def test_refresh_rereads_the_values_it_is_told_to() -> None:
    values: dict[str, int | None] = {"a": 1}
    reads, remembered, now = _counting(values)
    remembered.get("a")
    remembered.get("unknown")  # None: remembered, but not read again by refresh
    now[0] = 3.0
    remembered.refresh()
    assert reads == ["a", "unknown", "a"]
    now[0] = 7.0  # past the first reading's ttl, within the refresh's
    assert remembered.fresh("a") == (True, 1) and remembered.fresh("unknown") == (False, None)


def test_past_max_entries_everything_is_forgotten() -> None:
    remembered: Remembered[int, int] = Remembered(lambda key: key * 2, ttl=60.0, max_entries=3)
    for key in range(3):
        remembered.get(key)
    assert all(remembered.fresh(key)[0] for key in range(3))
    assert remembered.get(3) == 6
    assert [remembered.fresh(key)[0] for key in range(4)] == [False, False, False, True]
    remembered.clear()
    assert remembered.fresh(3) == (False, None)


def test_a_reading_equal_to_the_remembered_value_keeps_the_remembered_object() -> None:
    values = {"a": [1]}
    remembered: Remembered[str, list[int]] = Remembered(lambda key: list(values[key]), ttl=5.0)
    first = remembered.get("a")
    remembered.refresh()
    assert remembered.get("a") is first  # an equal reading: the object stays
    values["a"] = [2]
    remembered.refresh()
    assert remembered.get("a") == [2] and remembered.get("a") is not first
