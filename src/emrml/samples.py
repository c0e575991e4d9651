"""Deterministic bank-marketing-like sample data for the quickstart and the benchmarks.

The generated CSV looks like the UCI "Bank Marketing" file of the Amazon ML tutorial (header row, comma
separated, no quotes, the same value spellings) with one column swapped: the rarely informative ``default``
is replaced by ``notes``, a short TEXT call note, so every attribute type but BINARY appears among the
inputs. The target ``y`` (BINARY ``0``/``1``, about 11 % positives) is drawn from a logistic model of the
attributes, so a linear model can learn it (AUC around 0.85-0.9).

Output depends only on ``seed`` and ``rows``: the same pair gives byte-identical files on every machine.
Rows are produced in chunks of ``CHUNK_ROWS``, so memory stays bounded for any row count.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from emrml.core.schema import Attribute, AttributeType, Schema

#: Rows generated and written per step; bounds memory (about 15 MB of Arrow data per chunk).
CHUNK_ROWS = 50_000
#: Codecs accepted by ``write_bank_sample(compression=...)`` (Arrow's compressed streams).
COMPRESSIONS = ("gzip", "bz2", "zstd", "lz4")

_N = AttributeType.NUMERIC
_C = AttributeType.CATEGORICAL
_COLUMNS: tuple[tuple[str, AttributeType], ...] = (
    ("age", _N),
    ("job", _C),
    ("marital", _C),
    ("education", _C),
    ("housing", _C),
    ("loan", _C),
    ("contact", _C),
    ("month", _C),
    ("day_of_week", _C),
    ("duration", _N),
    ("campaign", _N),
    ("pdays", _N),
    ("previous", _N),
    ("poutcome", _C),
    ("emp_var_rate", _N),
    ("cons_price_idx", _N),
    ("cons_conf_idx", _N),
    ("euribor3m", _N),
    ("nr_employed", _N),
    ("notes", AttributeType.TEXT),
    ("y", AttributeType.BINARY),
)


@dataclass(frozen=True)
class _Categorical:
    """Values, their sampling weights and their additive effect on the log-odds of ``y = 1``."""

    values: tuple[str, ...]
    weights: tuple[float, ...]
    effects: tuple[float, ...]

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        p = np.asarray(self.weights, dtype=np.float64)
        return rng.choice(len(self.values), size=n, p=p / p.sum())

    def strings(self, codes: np.ndarray) -> pa.Array:
        return pa.array(self.values).take(pa.array(codes))

    def effect(self, codes: np.ndarray) -> np.ndarray:
        return np.asarray(self.effects)[codes]


# Weights follow the shares in the UCI file; effects are chosen so the positive rate per value moves in the
# same direction as in the real data.
_JOB = _Categorical(
    (
        "admin.",
        "blue-collar",
        "technician",
        "services",
        "management",
        "retired",
        "entrepreneur",
        "self-employed",
        "housemaid",
        "unemployed",
        "student",
        "unknown",
    ),
    (10422, 9254, 6743, 3969, 2924, 1720, 1456, 1421, 1060, 1014, 875, 330),
    (0.1, -0.35, 0.0, -0.25, 0.0, 0.6, -0.2, 0.0, 0.0, 0.3, 0.8, 0.0),
)
_MARITAL = _Categorical(
    ("married", "single", "divorced", "unknown"), (24928, 11568, 4612, 80), (0.0, 0.2, 0.0, 0.1)
)
_EDUCATION = _Categorical(
    (
        "university.degree",
        "high.school",
        "basic.9y",
        "professional.course",
        "basic.4y",
        "basic.6y",
        "unknown",
        "illiterate",
    ),
    (12168, 9515, 6045, 5243, 4176, 2292, 1731, 18),
    (0.2, 0.0, -0.2, 0.05, 0.0, -0.1, 0.15, 0.5),
)
_HOUSING = _Categorical(("yes", "no", "unknown"), (21576, 18622, 990), (0.0, 0.0, 0.0))
_LOAN = _Categorical(("no", "yes", "unknown"), (33950, 6248, 990), (0.0, -0.05, 0.0))
_CONTACT = _Categorical(("cellular", "telephone"), (26144, 15044), (0.3, -0.5))
_MONTH = _Categorical(
    ("may", "jul", "aug", "jun", "nov", "apr", "oct", "sep", "mar", "dec"),
    (13769, 7174, 6178, 5318, 4101, 2632, 718, 570, 546, 182),
    (-0.5, 0.0, 0.1, 0.0, -0.2, 0.3, 1.0, 0.9, 1.4, 1.0),
)
_DAY = _Categorical(
    ("mon", "tue", "wed", "thu", "fri"), (8514, 8090, 8134, 8623, 7827), (-0.15, 0.05, 0.05, 0.05, 0.0)
)
_POUTCOME = ("nonexistent", "failure", "success")

# Words of the call notes. Most words are neutral; a few lean towards one outcome, so the text carries some
# signal without giving the answer away.
_NEUTRAL_WORDS = (
    "called",
    "client",
    "about",
    "term",
    "deposit",
    "offer",
    "discussed",
    "account",
    "branch",
    "rate",
    "savings",
    "spoke",
    "with",
    "customer",
    "the",
    "a",
    "and",
    "today",
    "briefly",
    "explained",
    "product",
    "mentioned",
    "current",
    "plan",
    "phone",
    "morning",
    "afternoon",
)
_POSITIVE_WORDS = (
    "interested",
    "asked",
    "details",
    "send",
    "paperwork",
    "agreed",
    "follow-up",
    "keen",
    "questions",
    "appointment",
)
_NEGATIVE_WORDS = (
    "busy",
    "declined",
    "not",
    "hung-up",
    "no-time",
    "annoyed",
    "later",
    "refused",
    "voicemail",
    "unreachable",
)


@functools.cache
def _vocabulary() -> pa.Array:
    return pa.array(_NEUTRAL_WORDS + _POSITIVE_WORDS + _NEGATIVE_WORDS)


_LEANING_SHARE = 0.15  # share of words drawn from a leaning list
_MATCHING_SHARE = 0.7  # share of leaning words that lean towards the row's actual outcome
# Tuned so that about 11 % of rows are positive.
_INTERCEPT = -3.0


def sample_path(home: Path) -> Path:
    """Where the quickstart and the console's samples keep the bank sample: ``<home>/data/samples/``, in the
    default data root, so requests through ``emrml serve`` may read it too."""
    return home / "data" / "samples" / "bank-sample.csv"


def bank_sample_schema() -> Schema:
    """The schema of ``write_bank_sample`` files: 21 columns, header row, target ``y``."""
    return Schema(
        attributes=tuple(Attribute(name, kind) for name, kind in _COLUMNS),
        target="y",
        has_header=True,
    )


def write_bank_sample(
    path: Path, rows: int, *, seed: int = 7, compression: str | None = None, private: bool = False
) -> Path:
    """Write ``rows`` records (plus a header line) to ``path`` and return ``path``.

    ``compression`` is None for plain text or one of ``COMPRESSIONS``. The file appears atomically: it is
    written under a temporary name and renamed, so an existing ``path`` is always complete. ``private``:
    the file is owner-only (0600), the folders created for it 0700 (a sample in emrml's home).
    """
    if rows < 0:
        raise ValueError(f"rows must be >= 0, got {rows}")
    if compression is not None and compression not in COMPRESSIONS:
        raise ValueError(f"compression must be one of {', '.join(COMPRESSIONS)} or None, got {compression!r}")
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    if private:  # each folder and the file created with its mode; Arrow then writes into the existing file
        for folder in reversed(path.parents):
            if not folder.is_dir():
                folder.mkdir(mode=0o700, exist_ok=True)
        os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    periods = _Periods.draw(rng)
    options = pcsv.WriteOptions(include_header=False, quoting_style="none")
    sink = pa.OSFile(str(partial), "wb")
    stream = sink if compression is None else pa.CompressedOutputStream(sink, compression)
    try:
        stream.write((",".join(name for name, _ in _COLUMNS) + "\n").encode())
        for start in range(0, rows, CHUNK_ROWS):
            table = _chunk(rng, periods, min(CHUNK_ROWS, rows - start))
            pcsv.write_csv(table, stream, options)
    finally:
        stream.close()
    os.replace(partial, path)
    return path


@dataclass(frozen=True)
class _Periods:
    """Economic context per calendar period: all rows of one period share the five macro indicators.

    ``level`` in [0, 1] is the state of the economy (low = recession, when clients subscribed more often).
    """

    level: np.ndarray
    weights: np.ndarray
    emp_var_rate: np.ndarray
    cons_price_idx: np.ndarray
    cons_conf_idx: np.ndarray
    euribor3m: np.ndarray
    nr_employed: np.ndarray

    @classmethod
    def draw(cls, rng: np.random.Generator, count: int = 26) -> _Periods:
        level = np.sort(rng.uniform(0.0, 1.0, count))
        # Most calls of the real campaign happened in good times.
        weights = 0.2 + level**3
        return cls(
            level=level,
            weights=weights / weights.sum(),
            emp_var_rate=np.round(-3.4 + 4.8 * level, 1),
            cons_price_idx=np.round(92.201 + 2.566 * rng.uniform(0.0, 1.0, count), 3),
            cons_conf_idx=np.round(-50.8 + 23.9 * rng.uniform(0.0, 1.0, count), 1),
            euribor3m=0.634 + 4.411 * level,
            nr_employed=np.round(4963.6 + 264.5 * level, 1),
        )


def _chunk(rng: np.random.Generator, periods: _Periods, n: int) -> pa.Table:
    """Generate ``n`` rows as an Arrow table of strings, in the column order of ``_COLUMNS``."""
    age = np.clip(np.round(rng.gamma(5.0, 4.6, n) + 17.0), 17, 98).astype(np.int64)
    job = _JOB.draw(rng, n)
    marital = _MARITAL.draw(rng, n)
    education = _EDUCATION.draw(rng, n)
    housing = _HOUSING.draw(rng, n)
    loan = _LOAN.draw(rng, n)
    contact = _CONTACT.draw(rng, n)
    month = _MONTH.draw(rng, n)
    day = _DAY.draw(rng, n)
    duration = np.minimum(np.round(rng.lognormal(5.2, 0.85, n)), 4918).astype(np.int64)
    campaign = np.minimum(rng.geometric(0.45, n) + rng.poisson(0.3, n), 56).astype(np.int64)
    contacted = rng.random(n) < 0.037
    pdays = np.where(contacted, rng.integers(0, 28, n), 999)
    previous = np.where(contacted, 1 + rng.poisson(0.6, n), (rng.random(n) < 0.1).astype(np.int64))
    previous = np.minimum(previous, 7)
    # 0 nonexistent, 1 failure, 2 success: earlier success mostly when the client was contacted recently.
    poutcome = np.where(
        previous == 0, 0, np.where(contacted, np.where(rng.random(n) < 0.65, 2, 1), 1)
    ).astype(np.int64)
    period = rng.choice(len(periods.level), size=n, p=periods.weights)
    euribor = np.clip(periods.euribor3m[period] + rng.normal(0.0, 0.01, n), 0.634, 5.045)

    logit = (
        _INTERCEPT
        + 1.7 * (np.log1p(duration) - 5.2)
        + np.asarray([0.0, 0.2, 1.9])[poutcome]
        - 2.2 * (periods.level[period] - 0.7)
        - 0.08 * (campaign - 1)
        + 0.025 * np.maximum(age - 60, 0)
        + _JOB.effect(job)
        + _MARITAL.effect(marital)
        + _EDUCATION.effect(education)
        + _LOAN.effect(loan)
        + _CONTACT.effect(contact)
        + _MONTH.effect(month)
        + _DAY.effect(day)
    )
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)

    period_codes = pa.array(period)
    columns = [
        _ints(age),
        _JOB.strings(job),
        _MARITAL.strings(marital),
        _EDUCATION.strings(education),
        _HOUSING.strings(housing),
        _LOAN.strings(loan),
        _CONTACT.strings(contact),
        _MONTH.strings(month),
        _DAY.strings(day),
        _ints(duration),
        _ints(campaign),
        _ints(pdays),
        _ints(previous),
        pa.array(_POUTCOME).take(pa.array(poutcome)),
        _decimals(periods.emp_var_rate, 1).take(period_codes),
        _decimals(periods.cons_price_idx, 3).take(period_codes),
        _decimals(periods.cons_conf_idx, 1).take(period_codes),
        _decimals(euribor, 3),
        _decimals(periods.nr_employed, 1).take(period_codes),
        _notes(rng, y),
        _ints(y),
    ]
    return pa.table(columns, names=[name for name, _ in _COLUMNS])


def _ints(values: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(values, type=pa.int64()), pa.string())


def _decimals(values: np.ndarray, places: int) -> pa.Array:
    """Shortest decimal text of values rounded to ``places``: ``5191``, ``5099.1``, ``-36.4``."""
    # Adding 0.0 turns -0.0 into 0.0, so no "-0" appears.
    return pc.cast(pa.array(np.round(values, places) + 0.0), pa.string())


def _notes(rng: np.random.Generator, y: np.ndarray) -> pa.Array:
    """Call notes of 3-12 space-separated words; the leaning words depend on the outcome ``y``."""
    n = len(y)
    counts = rng.integers(3, 13, n)
    row = np.repeat(np.arange(n), counts)
    total = len(row)
    neutral = rng.integers(0, len(_NEUTRAL_WORDS), total)
    leaning = rng.random(total) < _LEANING_SHARE
    towards_positive = (rng.random(total) < _MATCHING_SHARE) == (y[row] == 1)
    positive = len(_NEUTRAL_WORDS) + rng.integers(0, len(_POSITIVE_WORDS), total)
    negative = len(_NEUTRAL_WORDS) + len(_POSITIVE_WORDS) + rng.integers(0, len(_NEGATIVE_WORDS), total)
    word = np.where(leaning, np.where(towards_positive, positive, negative), neutral)
    offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int32)
    words = pa.ListArray.from_arrays(pa.array(offsets), _vocabulary().take(pa.array(word)))
    return pc.binary_join(words, " ")
