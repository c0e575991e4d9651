"""Invalid records held as arrays: a block of short bad lines (``x\\n`` in a file of three columns) holds
millions of them, which as one Python object each cost hundreds of bytes per byte of input.

``InvalidRecords`` keeps where each record is (line, offset, index) in numpy arrays and its reason as a
code into a table of the distinct reasons; an ``InvalidRecord`` object is made only for a record asked
for (the examples a job reports, the first of a rejected file).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import overload

import numpy as np

_NO_ROWS = np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class InvalidRecord:
    """A record left out of the data, with where it is and why."""

    file: str  # the file's uri as given
    line: int  # 1-based physical line number where the record starts
    offset: int  # byte offset of the record's first byte in the decompressed stream
    index: int  # record index within the file (0-based, header excluded, valid and invalid records)
    reason: str


class InvalidRecords(Sequence[InvalidRecord]):
    """Invalid records of one file in record order: ``lines``, ``offsets`` and ``indices`` (int64) as
    ``InvalidRecord``'s fields, ``codes`` (int32) the position of each one's reason in ``reasons``."""

    __slots__ = ("codes", "file", "indices", "lines", "offsets", "reasons")

    def __init__(
        self,
        file: str,
        lines: np.ndarray,
        offsets: np.ndarray,
        indices: np.ndarray,
        codes: np.ndarray,
        reasons: Sequence[str],
    ) -> None:
        self.file = file
        self.lines, self.offsets, self.indices, self.codes = lines, offsets, indices, codes
        self.reasons = tuple(reasons)

    @classmethod
    def none(cls, file: str) -> InvalidRecords:
        return cls(file, _NO_ROWS, _NO_ROWS, _NO_ROWS, np.zeros(0, dtype=np.int32), ())

    def __len__(self) -> int:
        return len(self.codes)

    @overload
    def __getitem__(self, item: int) -> InvalidRecord: ...

    @overload
    def __getitem__(self, item: slice) -> InvalidRecords: ...

    def __getitem__(self, item: int | slice) -> InvalidRecord | InvalidRecords:
        if isinstance(item, slice):
            return self._subset(item)
        return InvalidRecord(
            self.file,
            int(self.lines[item]),
            int(self.offsets[item]),
            int(self.indices[item]),
            self.reasons[self.codes[item]],
        )

    def __iter__(self) -> Iterator[InvalidRecord]:
        for position in range(len(self)):
            yield self[position]

    def __repr__(self) -> str:
        return f"InvalidRecords({self.file!r}, {len(self)} records)"

    def where(self, mask: np.ndarray) -> InvalidRecords:
        """The records ``mask`` (bool, one per record) keeps."""
        return self if bool(mask.all()) else self._subset(mask)

    def _subset(self, which: slice | np.ndarray) -> InvalidRecords:
        return InvalidRecords(
            self.file,
            self.lines[which],
            self.offsets[which],
            self.indices[which],
            self.codes[which],
            self.reasons,
        )


class Reasons:
    """The reasons of a block's invalid records while they are found: a code per record (-1 for none yet)
    into a table of distinct reasons, so a million records with the same reason share one string."""

    def __init__(self, records: int) -> None:
        self.codes = np.full(records, -1, dtype=np.int32)
        self.texts: list[str] = []
        self._known: dict[str, int] = {}

    def code(self, text: str) -> int:
        code = self._known.get(text)
        if code is None:
            code = self._known[text] = len(self.texts)
            self.texts.append(text)
        return code

    def __setitem__(self, position: int, text: str) -> None:
        self.codes[position] = self.code(text)

    def set_all(self, positions: np.ndarray, text: str) -> None:
        self.codes[positions] = self.code(text)

    def set_keyed(self, positions: np.ndarray, keys: np.ndarray, spell: Callable[[int], str]) -> None:
        """Give ``positions`` the reasons ``spell`` gives their ``keys`` (int64): spelled once per distinct
        key, not once per record."""
        if not len(positions):
            return
        low, high = int(keys.min()), int(keys.max())
        if low == high:  # the usual case: every record wrong in the same way
            self.set_all(positions, spell(low))
            return
        if high < 2 * len(keys) + 1024:
            # Small keys (field counts): a table indexed by key costs less than sorting them.
            present = np.zeros(high + 1, dtype=bool)
            present[keys] = True
            table = np.zeros(high + 1, dtype=np.int32)
            distinct = np.flatnonzero(present)
            table[distinct] = [self.code(spell(key)) for key in distinct.tolist()]
            self.codes[positions] = table[keys]
            return
        distinct, inverse = np.unique(keys, return_inverse=True)
        codes = np.array([self.code(spell(key)) for key in distinct.tolist()], dtype=np.int32)
        self.codes[positions] = codes[inverse.reshape(-1)]

    def marked(self) -> np.ndarray:
        """Positions of the records given a reason, in order."""
        return np.flatnonzero(self.codes >= 0)


#: Bytes classified in one numpy step (the masks stay this size).
_UTF8_SEGMENT = 1 << 18
#: Above one byte in this many past ASCII, a segment's bytes are all classified at once (a few dozen
#: passes over the bytes, fast per byte); below it, only the bytes past ASCII (slower per byte, but in
#: mostly ASCII text a few in a hundred).
_SPARSE = 16


def utf8_errors(data: np.ndarray) -> np.ndarray:
    """Positions (int64) in ``data`` (uint8) of bytes a UTF-8 decoder stops at: a lead byte that starts no
    valid sequence, and a continuation byte that no valid sequence holds. Decoding from the start or a
    line break (which always decodes) goes through valid sequences up to the first of them in the line,
    so that is where Python's decoder reports the line's first error (the later ones need not match its).

    A few numpy passes over the bytes, a segment at a time: a decoder's error handler is a Python call per
    bad sequence, seconds for a block of short lines each holding a bad byte."""
    found = []
    for start in range(0, len(data), _UTF8_SEGMENT):
        end = min(start + _UTF8_SEGMENT, len(data))
        # The segment with the three bytes before (which may start a sequence) and after.
        low, high = max(start - 3, 0), min(end + 3, len(data))
        past_ascii = data[low:high] >= 0x80
        count = int(np.count_nonzero(past_ascii))
        if not count:
            continue
        candidates = np.flatnonzero(past_ascii) if count * _SPARSE < high - low else None
        del past_ascii  # before the next segment's
        if candidates is not None:
            stops = low + _sparse_stops(data[low:high], candidates)
            found.append(stops[(stops >= start) & (stops < end)])
            continue
        window = np.zeros(high - low + 3, dtype=np.uint8)  # then zeros, which end no sequence
        window[: high - low] = data[low:high]
        bad = _utf8_stops(window)[start - low : end - low]
        found.append(np.flatnonzero(bad) + start)
    return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)


def _valid_lengths(b0: np.ndarray, b1: np.ndarray, b2: np.ndarray, b3: np.ndarray) -> tuple[np.ndarray, ...]:
    """Whether each ``b0`` followed by ``b1``..``b3`` is a continuation byte, and starts a valid sequence
    of two, three and four bytes (Unicode table 3-7: no overlong forms, surrogates or past U+10FFFF)."""
    follows = [(b & 0xC0) == 0x80 for b in (b0, b1, b2, b3)]
    two = (b0 >= 0xC2) & (b0 <= 0xDF) & follows[1]
    three = ((b0 & 0xF0) == 0xE0) & follows[1] & follows[2]
    three &= ~(((b0 == 0xE0) & (b1 < 0xA0)) | ((b0 == 0xED) & (b1 > 0x9F)))
    four = (b0 >= 0xF0) & (b0 <= 0xF4) & follows[1] & follows[2] & follows[3]
    four &= ~(((b0 == 0xF0) & (b1 < 0x90)) | ((b0 == 0xF4) & (b1 > 0x8F)))
    return follows[0], two, three, four


def _utf8_stops(padded: np.ndarray) -> np.ndarray:
    """``utf8_errors`` as a mask over ``padded`` but its last three bytes (zeros, which end no sequence)."""
    size = len(padded) - 3
    follows, two, three, four = _valid_lengths(*(padded[shift : shift + size] for shift in range(4)))
    held = np.zeros(size, dtype=bool)
    held[1:] = two[:-1] | three[:-1] | four[:-1]
    held[2:] |= three[:-2] | four[:-2]
    held[3:] |= four[:-3]
    return np.where(follows, ~held, (padded[:size] >= 0x80) & ~(two | three | four))


def _sparse_stops(data: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """``utf8_errors`` of ``data`` given the positions of its bytes past ASCII, the only ones that can be
    an error or start a sequence of several bytes: looked at alone, past the end of ``data`` zeros."""
    last = len(data) - 1
    following = []
    for shift in (1, 2, 3):
        at = candidates + shift
        byte = data[np.minimum(at, last)]
        byte[at > last] = 0
        following.append(byte)
    follows, two, three, four = _valid_lengths(data[candidates], *following)
    length = np.zeros(len(candidates), dtype=np.int64)
    length[two] = 2
    length[three] = 3
    length[four] = 4
    # A byte is held by a sequence starting one to three bytes before it: at one of the three candidates
    # before it (the bytes between, if any, are candidates too).
    held = np.zeros(len(candidates), dtype=bool)
    for back in (1, 2, 3):
        held[back:] |= candidates[back:] - candidates[:-back] < length[:-back]
    return candidates[np.where(follows, ~held, length == 0)]


def not_utf8(byte: int) -> str:
    """What to do about a byte that is not UTF-8, in parentheses."""
    # Such bytes most often come from a file saved as Latin-1 or Windows-1252: say so.
    return (
        f"(0x{byte:02x}: a file in Latin-1 or Windows-1252 must be converted, e.g. iconv -f WINDOWS-1252 "
        "-t UTF-8)"
    )


def spanning(lines: int, unterminated: bool) -> str:
    """What an invalid record's reason adds when the record runs over several lines: most often a quote
    left open, which makes the following lines part of its field (RFC 4180) and so hides their records."""
    unbalanced = "an unbalanced '\"'?"
    if unterminated and lines == 1:
        return f"; a quoted field opened in it never closes before the end of the file ({unbalanced})"
    if unterminated:
        return (
            f"; a quoted field opened in it never closes, so all {lines:,} lines from there to the end of "
            f"the file were read as this one record ({unbalanced})"
        )
    if lines > 1:
        return f" (the record spans {lines:,} lines: a quoted field holds their line breaks; {unbalanced})"
    return ""
