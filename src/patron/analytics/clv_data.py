"""Per-customer (frequency, recency, T, monetary value) summaries from transactions.

Pure numpy and vectorised (``np.unique`` / ``np.bincount``, no per-customer loops). The
definitions follow lifetimes' ``summary_data_from_transaction_data`` and
``calibration_and_holdout_data`` so fitted parameters are comparable:

* time is cut into periods (``"h"`` hours, ``"D"`` days or ``"W"`` ISO weeks starting on
  Monday);
  several purchases in one period count as **one** purchase whose amount is their sum;
* ``frequency`` (x) = number of periods with a purchase, minus the first one;
* ``recency`` (t_x) = last purchase period − first purchase period;
* ``T`` = period of ``observation_end`` − first purchase period;
* ``monetary_value`` = mean amount of the *repeat* purchase periods (0 when x = 0).

Timestamps are ``numpy.datetime64`` values (any unit) and are cut into periods as given:
convert them to the shop's local time first if days should follow its calendar.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

FloatArr = npt.NDArray[np.float64]
IntArr = npt.NDArray[np.int64]
Freq = Literal["h", "D", "W"]

__all__ = [
    "CalibrationHoldout",
    "Freq",
    "Summary",
    "calibration_and_holdout",
    "summary_from_transactions",
]


@dataclass(frozen=True)
class Summary:
    """One row per customer, in ``customer_ids`` order (sorted ids)."""

    customer_ids: npt.NDArray[Any]
    frequency: FloatArr
    recency: FloatArr
    T: FloatArr
    monetary_value: FloatArr


@dataclass(frozen=True)
class CalibrationHoldout:
    """Calibration summary plus what the same customers did in the holdout period.

    Customers whose first purchase is after the calibration end are not included (the
    models say nothing about them), as in lifetimes.
    """

    calibration: Summary
    frequency_holdout: FloatArr  # purchase periods in (calibration_end, observation_end]
    monetary_value_holdout: FloatArr  # mean amount of those periods (0 if none)
    duration_holdout: float  # length of the holdout in periods


def _periods(ts: npt.NDArray[Any], freq: Freq) -> IntArr:
    if freq == "h":
        return np.asarray(ts).astype("datetime64[h]").astype(np.int64)
    days = np.asarray(ts).astype("datetime64[D]").astype(np.int64)
    if freq == "D":
        return days
    if freq == "W":
        # 1970-01-01 was a Thursday: +3 makes weeks start on Monday (pandas "W-SUN").
        return np.floor_divide(days + 3, 7)
    raise ValueError(f"freq must be 'h', 'D' or 'W', not {freq!r}")


def _instant(value: datetime | date | str | np.datetime64) -> np.datetime64:
    if isinstance(value, datetime) and value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)  # naive UTC, like the timestamps
    return np.datetime64(value)


def _distinct_periods(
    codes: IntArr, periods: IntArr, amounts: FloatArr
) -> tuple[IntArr, IntArr, FloatArr]:
    """Unique (customer code, period) pairs, sorted, with the summed amount of each."""
    lo = int(periods.min())
    span = int(periods.max()) - lo + 1
    key = codes * span + (periods - lo)
    uniq, inverse = np.unique(key, return_inverse=True)
    summed = np.bincount(inverse.ravel(), weights=amounts, minlength=uniq.size)
    return uniq // span, uniq % span + lo, np.asarray(summed, dtype=np.float64)


def summary_from_transactions(
    customer_ids: npt.ArrayLike,
    timestamps: npt.ArrayLike,
    amounts: npt.ArrayLike | None = None,
    observation_end: datetime | date | str | np.datetime64 | None = None,
    freq: Freq = "D",
) -> Summary:
    """Frequency / recency / T / monetary value per customer, as lifetimes computes them.

    Transactions after the period of ``observation_end`` (default: the last transaction)
    are ignored; a transaction in that period still counts.
    """
    ids = np.asarray(customer_ids)
    ts = np.asarray(timestamps)
    if not np.issubdtype(ts.dtype, np.datetime64):
        ts = ts.astype("datetime64[ms]")
    values = np.zeros(ids.size) if amounts is None else np.asarray(amounts, dtype=np.float64)
    if not (ids.shape == ts.shape == values.shape) or ids.ndim != 1:
        raise ValueError("customer_ids, timestamps and amounts must be 1-d and of equal length")
    if ids.size == 0:
        raise ValueError("no transactions")
    end = ts.max() if observation_end is None else _instant(observation_end)
    periods = _periods(ts, freq)
    end_period = int(_periods(np.array([end]), freq)[0])
    keep = periods <= end_period
    if not keep.any():
        raise ValueError("no transactions before observation_end")
    ids, periods, values = ids[keep], periods[keep], values[keep]

    uniq_ids, codes = np.unique(ids, return_inverse=True)
    cust, period, summed = _distinct_periods(codes.ravel().astype(np.int64), periods, values)
    count = np.bincount(cust, minlength=uniq_ids.size)
    first_at = np.concatenate(([0], np.cumsum(count)[:-1]))
    last_at = first_at + count - 1
    frequency = (count - 1).astype(np.float64)
    total = np.bincount(cust, weights=summed, minlength=uniq_ids.size)
    repeat_total = total - summed[first_at]
    monetary = np.divide(repeat_total, frequency, out=np.zeros_like(frequency), where=frequency > 0)
    return Summary(
        customer_ids=uniq_ids,
        frequency=frequency,
        recency=(period[last_at] - period[first_at]).astype(np.float64),
        T=(end_period - period[first_at]).astype(np.float64),
        monetary_value=monetary,
    )


def calibration_and_holdout(
    customer_ids: npt.ArrayLike,
    timestamps: npt.ArrayLike,
    amounts: npt.ArrayLike | None,
    calibration_end: datetime | date | str | np.datetime64,
    observation_end: datetime | date | str | np.datetime64,
    freq: Freq = "D",
) -> CalibrationHoldout:
    """Split transactions at ``calibration_end`` (inclusive) like lifetimes does.

    The calibration summary uses transactions up to ``calibration_end`` with T measured to
    it; the holdout counts each customer's purchase periods in
    ``(calibration_end, observation_end]``.
    """
    ids = np.asarray(customer_ids)
    ts = np.asarray(timestamps)
    if not np.issubdtype(ts.dtype, np.datetime64):
        ts = ts.astype("datetime64[ms]")
    values = np.zeros(ids.size) if amounts is None else np.asarray(amounts, dtype=np.float64)
    cal_end, obs_end = _instant(calibration_end), _instant(observation_end)
    if not cal_end < obs_end:
        raise ValueError("calibration_end must be before observation_end")
    in_cal = ts <= cal_end
    calibration = summary_from_transactions(
        ids[in_cal], ts[in_cal], values[in_cal], observation_end=cal_end, freq=freq
    )
    in_hold = ~in_cal & (ts <= obs_end)
    hold_ids = ids[in_hold]
    pos = np.searchsorted(calibration.customer_ids, hold_ids)
    pos = np.minimum(pos, calibration.customer_ids.size - 1)
    known = calibration.customer_ids[pos] == hold_ids
    n = calibration.customer_ids.size
    freq_hold = np.zeros(n)
    money_hold = np.zeros(n)
    if known.any():
        cust, _, summed = _distinct_periods(
            pos[known].astype(np.int64), _periods(ts[in_hold][known], freq), values[in_hold][known]
        )
        freq_hold = np.bincount(cust, minlength=n).astype(np.float64)
        total = np.bincount(cust, weights=summed, minlength=n)
        money_hold = np.divide(total, freq_hold, out=np.zeros(n), where=freq_hold > 0)
    duration = float(
        _periods(np.array([obs_end]), freq)[0] - _periods(np.array([cal_end]), freq)[0]
    )
    return CalibrationHoldout(
        calibration=calibration,
        frequency_holdout=freq_hold,
        monetary_value_holdout=money_hold,
        duration_holdout=duration,
    )
