"""Synthetic cosmetics shop with a known ground truth.

Purchases follow BG/NBD (Fader, Hardie & Lee 2005) and order values follow the
Gamma-Gamma spend model, so customer-lifetime-value models can be scored against
the truth. Everything is vectorised numpy and pyarrow; there is no database.
The model, every parameter and the file formats are documented in docs/generator.md.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

__all__ = [
    "CATEGORIES",
    "CHANNELS",
    "DISCOUNT_CODES",
    "MONEY",
    "REFUND_REASONS",
    "STATUSES",
    "TIMESTAMP",
    "TIMEZONE",
    "GeneratedShop",
    "GeneratorParams",
    "generate",
    "write_shop",
    "yearly_shape",
]

FloatArr = npt.NDArray[np.float64]
IntArr = npt.NDArray[np.int64]
BoolArr = npt.NDArray[np.bool_]

#: Arrow type of every money column (exact, 2 decimal places).
MONEY = pa.decimal128(18, 2)
#: Arrow type of every timestamp column (UTC; values are whole seconds).
TIMESTAMP = pa.timestamp("ms", tz="UTC")
#: The shop's time zone (UTC+08:00 all year, no DST since 1991).
TIMEZONE = "Asia/Shanghai"
_UTC_OFFSET_S = 8 * 3600
_DAY_S = 86_400

# ---------------------------------------------------------------------------------------
# Parameters and result
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GeneratorParams:
    """Inputs of :func:`generate`; docs/generator.md explains every one of them."""

    customers: int = 5000
    orders: int = 50000  # target number of orders (hit within ~3%)
    seed: int = 42
    start: dt.date = dt.date(2024, 11, 25)  # first local (Asia/Shanghai) day of the history
    days: int = 730  # two years
    currency: str = "CNY"
    flagged_share: float = 0.005  # share of abusive customers (serial returners)
    refund_rate: float = 0.04  # share of normal customers' delivered orders with a refund
    # BG/NBD purchases: lambda ~ Gamma(r, rate=alpha) per day, dropout p ~ Beta(a, b)
    r: float = 0.75
    alpha: float = 5.0  # rescaled so that the expected number of orders equals `orders`
    a: float = 0.8
    b: float = 2.5
    # Gamma-Gamma spend: nu ~ Gamma(q, rate=gamma), order value ~ Gamma(p, rate=nu)
    p: float = 6.0
    q: float = 4.0
    gamma: float = 40.0  # mean order value = p * gamma / (q - 1) = 80


@dataclass
class GeneratedShop:
    customers: pa.Table
    products: pa.Table
    orders: pa.Table  # one row per order line
    refunds: pa.Table
    truth: pa.Table  # one row per customer
    params: dict[str, Any]  # effective ground-truth parameters, JSON-serialisable


# ---------------------------------------------------------------------------------------
# Fixed vocabularies and behavioural constants (documented in docs/generator.md)
# ---------------------------------------------------------------------------------------

# fmt: off
CATEGORIES = ("skincare", "makeup", "fragrance", "haircare", "bodycare", "tools", "gift_sets")
_CATEGORY_POPULARITY = np.array([0.32, 0.24, 0.10, 0.10, 0.11, 0.06, 0.07])
_FAVOURITE_P = (0.55, 0.25, 0.2)  # a line is from: 1st favourite, 2nd favourite, any category
_PRODUCTS_PER_CATEGORY = (70, 60, 25, 25, 25, 20, 15)

# per category: (Chinese, English, size, base price in CNY)
_PRODUCT_TYPES: tuple[tuple[tuple[str, str, str, float], ...], ...] = (
    (("精华", "Serum", "30ml", 299.0), ("面霜", "Cream", "50g", 259.0),
     ("爽肤水", "Toner", "150ml", 159.0), ("洁面乳", "Cleanser", "120g", 89.0),
     ("面膜", "Sheet Mask", "5片", 69.0), ("眼霜", "Eye Cream", "15g", 229.0),
     ("防晒霜", "Sunscreen", "50ml", 129.0), ("精华小样", "Serum Mini", "7ml", 29.0)),
    (("口红", "Lipstick", "3.5g", 139.0), ("粉底液", "Foundation", "30ml", 259.0),
     ("眼影盘", "Eyeshadow Palette", "9色", 199.0), ("睫毛膏", "Mascara", "8g", 99.0),
     ("腮红", "Blush", "6g", 119.0), ("眉笔", "Brow Pencil", "0.3g", 49.0),
     ("气垫", "Cushion Compact", "15g", 229.0), ("润唇膏", "Lip Balm", "4g", 29.0)),
    (("淡香水", "Eau de Toilette", "50ml", 499.0), ("香水", "Eau de Parfum", "50ml", 799.0),
     ("香氛喷雾", "Body Mist", "100ml", 129.0), ("固体香膏", "Solid Perfume", "5g", 59.0),
     ("香水小样", "Perfume Sample", "2ml", 19.0)),
    (("洗发水", "Shampoo", "400ml", 79.0), ("护发素", "Conditioner", "400ml", 79.0),
     ("发膜", "Hair Mask", "200ml", 99.0), ("护发精油", "Hair Oil", "100ml", 129.0)),
    (("身体乳", "Body Lotion", "250ml", 89.0), ("沐浴露", "Body Wash", "500ml", 59.0),
     ("护手霜", "Hand Cream", "50ml", 29.0), ("身体磨砂膏", "Body Scrub", "200g", 79.0)),
    (("化妆刷套装", "Brush Set", "8支", 159.0), ("美妆蛋", "Beauty Sponge", "2个", 29.0),
     ("化妆棉", "Cotton Pads", "100片", 12.9), ("睫毛夹", "Eyelash Curler", "1个", 49.0),
     ("洁面仪", "Cleansing Device", "1台", 599.0)),
    (("节日礼盒", "Holiday Gift Set", "4件", 699.0), ("旅行套装", "Travel Kit", "5件", 199.0),
     ("护肤礼盒", "Skincare Gift Box", "3件", 899.0), ("迷你礼盒", "Mini Gift Box", "3件", 99.0)),
)
_PRODUCT_LINES = (
    ("玫瑰", "Rose"), ("樱花", "Sakura"), ("绿茶", "Green Tea"), ("玻尿酸", "Hyaluronic"),
    ("烟酰胺", "Niacinamide"), ("山茶花", "Camellia"), ("积雪草", "Centella"),
    ("人参", "Ginseng"), ("珍珠", "Pearl"), ("白桃", "White Peach"), ("雪莲", "Snow Lotus"),
    ("竹炭", "Bamboo Charcoal"), ("薰衣草", "Lavender"), ("蜂蜜", "Honey"), ("柚子", "Yuzu"),
)
_CN_SURNAMES = (
    ("王", "wang"), ("李", "li"), ("张", "zhang"), ("刘", "liu"), ("陈", "chen"),
    ("杨", "yang"), ("黄", "huang"), ("赵", "zhao"), ("吴", "wu"), ("周", "zhou"),
    ("徐", "xu"), ("孙", "sun"), ("马", "ma"), ("朱", "zhu"), ("胡", "hu"), ("郭", "guo"),
    ("何", "he"), ("林", "lin"), ("罗", "luo"), ("高", "gao"), ("郑", "zheng"),
    ("梁", "liang"), ("谢", "xie"), ("宋", "song"), ("唐", "tang"), ("韩", "han"),
    ("冯", "feng"), ("邓", "deng"), ("曹", "cao"), ("许", "xu"),
)
_CN_GIVEN = (
    ("静", "jing"), ("丽", "li"), ("敏", "min"), ("婷", "ting"), ("雪", "xue"), ("琳", "lin"),
    ("欣", "xin"), ("怡", "yi"), ("佳", "jia"), ("颖", "ying"), ("晶", "jing"), ("倩", "qian"),
    ("悦", "yue"), ("璐", "lu"), ("萱", "xuan"), ("涵", "han"), ("娜", "na"), ("芳", "fang"),
    ("燕", "yan"), ("玲", "ling"), ("伟", "wei"), ("磊", "lei"), ("浩", "hao"), ("杰", "jie"),
    ("晨", "chen"), ("宇", "yu"), ("思", "si"), ("梦", "meng"), ("雨", "yu"), ("诗", "shi"),
)
_EN_FIRST = (
    "Emma", "Olivia", "Ava", "Sophia", "Isabella", "Mia", "Charlotte", "Amelia", "Harper",
    "Evelyn", "Abigail", "Emily", "Grace", "Chloe", "Lily", "Hannah", "Zoe", "Nora", "Ella",
    "Scarlett", "James", "Michael", "Daniel", "David", "Ryan", "Lucas", "Ethan", "Noah",
    "Liam", "Jack",
)
_EN_LAST = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis",
    "Rodriguez", "Martinez", "Wilson", "Anderson", "Taylor", "Thomas", "Moore", "Jackson",
    "Martin", "Lee", "Thompson", "White", "Harris", "Clark", "Lewis", "Walker", "Young",
    "Allen", "King", "Wright", "Scott", "Green",
)
_EMAIL_DOMAINS = ("example.com", "example.net", "example.org")
_SKIN_TYPES = ("dry", "oily", "combination", "normal", "sensitive")
_SKIN_WEIGHTS = (0.22, 0.2, 0.3, 0.15, 0.13)
_SOURCES = ("wechat", "douyin", "xiaohongshu", "tmall", "search", "referral", "store")
_SOURCE_WEIGHTS_ZH = (0.3, 0.18, 0.17, 0.12, 0.08, 0.08, 0.07)
_SOURCE_WEIGHTS_EN = (0.05, 0.02, 0.03, 0.05, 0.5, 0.25, 0.1)
CHANNELS = ("web", "app", "wechat", "store")
_CHANNEL_WEIGHTS = (0.3, 0.35, 0.25, 0.1)
_SOURCE_CHANNEL = np.array([2, 1, 1, 1, 0, 0, 3])  # preferred channel by acquisition source
_PREFERRED_CHANNEL_SHARE = 0.7
STATUSES = ("placed", "paid", "fulfilled", "delivered", "cancelled")
DISCOUNT_CODES = ("WELCOME10", "DOUBLE11", "618SALE", "DOUBLE12", "VIP15", "SAVE10", "BEAUTY20")
_DISCOUNT_PCT = np.array([10, 20, 15, 15, 15, 10, 20])  # percent off every line
REFUND_REASONS = ("damaged", "wrong_item", "not_as_described", "allergic_reaction",
                  "changed_mind", "late_delivery")
_REASON_WEIGHTS_NORMAL = (0.2, 0.1, 0.2, 0.1, 0.3, 0.1)
_REASON_WEIGHTS_FLAGGED = (0.15, 0.0, 0.35, 0.0, 0.5, 0.0)

_PRICE_SENSITIVE_SHARE = 0.3
_DISCOUNT_USE = (0.12, 0.55)  # P(discount code on an order) for [normal, price-sensitive]
_CANCEL_RATE = 0.02
_FLAGGED_REFUND_RATE = 0.85  # of a flagged customer's delivered orders
_FULL_REFUND_SHARE = (0.5, 0.7)  # [normal, flagged]; the rest refund (part of) one line
_FREE_SHIPPING_FROM = 9900  # cents: merchandise >= 99.00 ships free (store pick-up: always)
_SHIPPING_FEE = 1000  # cents
_LINES_P = (0.5, 0.28, 0.14, 0.08)  # 1..4 lines, before the cap below
_LINE_VALUE = 35.0  # an order has at most one line per 35 CNY of (gross) value
_QUANTITY_P = (0.8, 0.14, 0.06)  # 1..3 units of a line's product
_ZH_SHARE = 0.8
_BIRTHDAY_SHARE = 0.7
_NO_EMAIL = 0.03
_NO_PHONE = (0.05, 0.3)  # [zh-CN, en-US]
_CONSENT = (0.62, 0.41)  # [email, sms], only when the address is known

# Lunar New Year: the shop slows down for the two weeks around it (couriers stop).
_LUNAR_NEW_YEAR = (
    "2015-02-19", "2016-02-08", "2017-01-28", "2018-02-16", "2019-02-05", "2020-01-25",
    "2021-02-12", "2022-02-01", "2023-01-22", "2024-02-10", "2025-01-29", "2026-02-17",
    "2027-02-06", "2028-01-26", "2029-02-13", "2030-02-03", "2031-01-23", "2032-02-11",
    "2033-01-31", "2034-02-19", "2035-02-08", "2036-01-28", "2037-02-15", "2038-02-04",
    "2039-01-24", "2040-02-12",
)
# Relative activity by local weekday (Mon..Sun) and local hour (0..23).
_WEEKLY = np.array([0.96, 0.95, 0.97, 1.0, 1.04, 1.07, 1.01])
_HOURLY = np.array([0.35, 0.2, 0.1, 0.06, 0.05, 0.06, 0.12, 0.3, 0.55, 0.8, 1.0, 1.1,
                    1.25, 1.2, 1.05, 1.0, 1.0, 1.05, 1.1, 1.3, 1.6, 1.8, 1.6, 0.9])
_ACQ_BURST = (2.0, 90.0)  # acquisition x (1 + 2 exp(-t / 90 days)): launch burst
_ACQ_SEASON_POWER = 1.5  # acquisition follows the yearly shape ** 1.5 (sharper peaks)
_COUNT_TOLERANCE = 0.03  # redraw repeat-purchase counts when the total misses by more
_COUNT_ATTEMPTS = 20
_CHUNK = 1 << 20  # rows per processing chunk (keeps temporaries small)
# fmt: on


# ---------------------------------------------------------------------------------------
# Calendar: operational time <-> calendar time
# ---------------------------------------------------------------------------------------


def yearly_shape(dates: npt.NDArray[np.datetime64]) -> FloatArr:
    """Relative purchase intensity of each (local) date; 1.0 is an ordinary day."""
    months = dates.astype("datetime64[M]")
    month = (months - dates.astype("datetime64[Y]").astype("datetime64[M]")).astype(np.int64) + 1
    dom = (dates - months).astype(np.int64) + 1
    f = np.ones(dates.shape[0])
    f[month == 2] = 0.8
    f[(month == 3) & (dom <= 7)] = 1.2
    f[(month == 3) & (dom == 8)] = 2.0  # Women's Day
    f[(month == 6) & (dom < 18)] = 1.5  # 618 festival build-up
    f[(month == 6) & (dom == 18)] = 3.5
    f[(month == 6) & (dom > 18)] = 1.1
    early_nov = (month == 11) & (dom < 11)
    f[early_nov] = 1.3 + 0.09 * dom[early_nov]
    f[(month == 11) & (dom == 11)] = 4.5  # Singles' Day
    f[(month == 11) & (dom > 11)] = 1.25
    f[month == 12] = 1.35
    f[(month == 12) & (dom == 12)] = 2.2  # Double 12
    f[(month == 12) & (dom >= 20) & (dom <= 24)] = 1.6
    for day in _LUNAR_NEW_YEAR:
        f[np.abs((dates - np.datetime64(day, "D")).astype(np.int64)) <= 7] *= 0.5
    return f


@dataclass(frozen=True)
class _Calendar:
    grid_days: FloatArr  # hour boundaries, in days since local midnight of `start`
    grid_op: FloatArr  # cumulative purchase intensity (operational days) at the boundaries
    acq_cdf: FloatArr  # acquisition distribution function at the boundaries
    month: IntArr  # local month of each day of the history
    dom: IntArr  # local day of month of each day

    def to_operational(self, t_days: FloatArr) -> FloatArr:
        return np.interp(t_days, self.grid_days, self.grid_op)

    def to_calendar(self, u_days: FloatArr) -> FloatArr:
        return np.interp(u_days, self.grid_op, self.grid_days)


def _build_calendar(start: dt.date, days: int) -> _Calendar:
    dates = np.datetime64(start.isoformat(), "D") + np.arange(days)
    months = dates.astype("datetime64[M]")
    month = (months - dates.astype("datetime64[Y]").astype("datetime64[M]")).astype(np.int64) + 1
    dom = (dates - months).astype(np.int64) + 1
    weekday = (start.weekday() + np.arange(days)) % 7
    yearly = yearly_shape(dates)
    hourly = _HOURLY / _HOURLY.mean()
    purchase_w = ((yearly * _WEEKLY[weekday])[:, None] * hourly[None, :]).ravel()
    op = np.concatenate([[0.0], np.cumsum(purchase_w)])
    op *= days / op[-1]
    op[-1] = float(days)
    hours = np.arange(days * 24, dtype=np.float64)
    trend = 1.0 + _ACQ_BURST[0] * np.exp(-(hours + 0.5) / 24.0 / _ACQ_BURST[1])
    season = (yearly**_ACQ_SEASON_POWER * _WEEKLY[weekday])[:, None] * hourly[None, :]
    acq = np.concatenate([[0.0], np.cumsum(trend * season.ravel())])
    acq /= acq[-1]
    grid = np.arange(days * 24 + 1, dtype=np.float64) / 24.0
    return _Calendar(grid, op, acq, month, dom)


# ---------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------

# "0000".."9999" as little-endian uint32 words, to write four digits per store
_DIGITS4 = np.frombuffer("".join(f"{i:04d}" for i in range(10000)).encode(), "<u4")


def _fixed_ids(prefix: str, numbers: IntArr, width: int) -> pa.Array:
    """prefix + zero-padded numbers (e.g. O0000042), built straight into an Arrow buffer."""
    pre = np.frombuffer(prefix.encode("ascii"), np.uint8)
    n = numbers.shape[0]
    row = pre.shape[0] + width
    if n * row >= 2**31:
        raise ValueError("too many ids for one string array")
    words = -(-width // 4)
    digits = np.empty((n, words), dtype="<u4")
    rest = numbers.astype(np.int64)
    for j in range(words):
        digits[:, words - 1 - j] = _DIGITS4[rest % 10000]
        rest = rest // 10000
    data = np.empty((n, row), dtype=np.uint8)
    data[:, : pre.shape[0]] = pre
    data[:, pre.shape[0] :] = digits.view(np.uint8)[:, 4 * words - width :]
    offsets = np.arange(0, (n + 1) * row, row, dtype=np.int32)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _width(count: int, minimum: int) -> int:
    return max(minimum, len(str(count)))


def _money(cents: IntArr) -> pa.Array:
    """decimal128(18, 2) array from integer cents, built directly from the buffer."""
    c = np.ascontiguousarray(cents, dtype="<i8")
    buf = np.empty((c.shape[0], 2), dtype="<i8")
    buf[:, 0] = c
    buf[:, 1] = c >> 63  # sign extension into the high 64 bits
    return pa.Array.from_buffers(MONEY, c.shape[0], [None, pa.py_buffer(buf)])


def _timestamps(ms: IntArr, null: BoolArr | None = None) -> pa.Array:
    return pa.array(ms, type=TIMESTAMP, mask=null)


def _pick(
    values: tuple[str, ...] | list[str], idx: npt.NDArray[Any], null: BoolArr | None = None
) -> Any:
    return pc.take(pa.array(list(values), pa.string()), pa.array(idx, mask=null))


def _join(*parts: Any) -> Any:
    return pc.binary_join_element_wise(*parts, "")


def _segment_starts(counts: IntArr) -> IntArr:
    starts = np.zeros(counts.shape[0], dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    return starts


def _categorical(rng: np.random.Generator, weights: Any, size: int) -> IntArr:
    w = np.asarray(weights, dtype=np.float64)
    cdf = np.cumsum(w / w.sum())
    cdf[-1] = 1.0
    return np.searchsorted(cdf, rng.random(size), side="right").astype(np.int64)


def _expected_orders(lam: FloatArr, p: FloatArr, exposure: FloatArr) -> FloatArr:
    """E[orders | lambda, p, T] = 1 + (1/p) (1 - exp(-lambda p T)) (first purchase + repeats)."""
    return 1.0 - np.expm1(-lam * p * exposure) / p


def _solve_scale(lam: FloatArr, p: FloatArr, exposure: FloatArr, target: float) -> float:
    """The s > 0 with sum_i E[orders_i | s lambda_i, p_i, T_i] = target, by bisection."""
    n = lam.shape[0]
    if target <= n:
        raise ValueError(f"orders ({target:.0f}) must exceed customers ({n})")
    limit = n + float(np.sum(1.0 / p[exposure > 0]))
    if target >= 0.999 * limit:
        raise ValueError(f"orders ({target:.0f}) unreachable: the limit is about {limit:.0f}")

    def total(s: float) -> float:
        return float(np.sum(_expected_orders(s * lam, p, exposure)))

    lo, hi = 0.0, 1.0
    while total(hi) < target:
        lo, hi = hi, hi * 2.0
    while hi - lo > 1e-10 * hi:
        mid = 0.5 * (lo + hi)
        if total(mid) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


# ---------------------------------------------------------------------------------------
# Products
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Catalog:
    names: list[str]
    category: IntArr
    price: IntArr  # cents
    by_price: IntArr  # product indices sorted by (category, price)
    key: FloatArr  # category * 100 + log(price in CNY), along by_price
    cat_lo: IntArr  # first position of each category in by_price
    cat_hi: IntArr  # last position (inclusive)
    cat_min: FloatArr  # cheapest price per category (CNY)
    cat_max: FloatArr

    def choose(
        self, rng: np.random.Generator, cat: IntArr, value: FloatArr
    ) -> tuple[IntArr, IntArr]:
        """(product, quantity) per line: a product of the category priced near value/qty."""
        size = cat.shape[0]
        # lines too small for their category go to the cheapest one (cotton pads, samples)
        cat = np.where(value < 0.7 * self.cat_min[cat], int(np.argmin(self.cat_min)), cat)
        q0 = _categorical(rng, _QUANTITY_P, size) + 1
        q0 = np.where(value / q0 < self.cat_min[cat], 1, q0)
        q0 = np.maximum(q0, np.ceil(value / self.cat_max[cat]).astype(np.int64))
        x = value / q0  # wanted unit price
        key = cat * 100.0 + np.clip(np.log(x), -40.0, 40.0)
        lo, hi = self.cat_lo[cat], self.cat_hi[cat]
        pos = np.searchsorted(self.key, key)
        right = np.clip(pos, lo, hi)
        left = np.clip(pos - 1, lo, hi)
        # stochastic rounding between the two neighbouring prices: E[unit price] = x
        p_left = self.price[self.by_price[left]] / 100.0
        p_right = self.price[self.by_price[right]] / 100.0
        gap = np.maximum(p_right - p_left, 1e-9)
        take_right = rng.random(size) < np.clip((x - p_left) / gap, 0.0, 1.0)
        prod = self.by_price[np.where(take_right, right, left)]
        return prod, q0


def _nice_price(x: float) -> int:
    """A shop-like price in cents: 12.90, 49.00, 129.00, 1299.00 ..."""
    if x < 20:
        return int(max(590, round(x) * 100 - 10))
    if x < 100:
        return int(max(2900, round(x / 10) * 1000 - 100))
    return int(round(x / 10) * 1000 - 100)


def _build_catalog(rng: np.random.Generator) -> _Catalog:
    names: list[str] = []
    cats: list[int] = []
    prices: list[int] = []
    for c, (count, types) in enumerate(zip(_PRODUCTS_PER_CATEGORY, _PRODUCT_TYPES, strict=True)):
        combos = len(types) * len(_PRODUCT_LINES)
        chosen = np.sort(rng.choice(combos, size=min(count, combos), replace=False))
        spread = np.asarray(rng.lognormal(0.0, 0.35, size=chosen.shape[0]), dtype=np.float64)
        for k, m in zip(chosen.tolist(), spread.tolist(), strict=True):
            t_cn, t_en, size, base = types[k % len(types)]
            l_cn, l_en = _PRODUCT_LINES[k // len(types)]
            names.append(f"{l_cn}{t_cn} {l_en} {t_en} {size}")
            cats.append(c)
            prices.append(_nice_price(base * m))
    category = np.array(cats, dtype=np.int64)
    price = np.array(prices, dtype=np.int64)
    by_price = np.lexsort((np.arange(price.shape[0]), price, category)).astype(np.int64)
    key = (category[by_price] * 100.0 + np.log(price[by_price] / 100.0)).astype(np.float64)
    ncat = np.arange(len(CATEGORIES))
    cat_lo = np.searchsorted(category[by_price], ncat, side="left").astype(np.int64)
    cat_hi = np.searchsorted(category[by_price], ncat, side="right").astype(np.int64) - 1
    cat_min = price[by_price[cat_lo]] / 100.0
    cat_max = price[by_price[cat_hi]] / 100.0
    return _Catalog(names, category, price, by_price, key, cat_lo, cat_hi, cat_min, cat_max)


# ---------------------------------------------------------------------------------------
# Simulation steps
# ---------------------------------------------------------------------------------------


@dataclass
class _Purchases:
    acq_s: IntArr  # acquisition (= first order) second, per customer, ascending
    lam: FloatArr  # effective lambda (after scaling)
    p: FloatArr
    expected: FloatArr  # expected number of orders over the history
    dropped: BoolArr
    dropout_s: IntArr  # second of the dropout (= last) purchase, -1 if alive
    n_orders: IntArr  # orders per customer
    scale: float
    o_cust: IntArr  # per order, chronological
    o_sec: IntArr
    o_first: BoolArr


def _chunks(counts: IntArr) -> list[tuple[int, int]]:
    """Consecutive [a, b) ranges of items whose counts add up to about _CHUNK each."""
    cum = np.cumsum(counts)
    total = int(cum[-1]) if cum.shape[0] else 0
    cuts = np.searchsorted(cum, np.arange(1, total // _CHUNK + 1) * _CHUNK, side="right")
    edges = np.unique(np.concatenate([[0], cuts, [counts.shape[0]]])).tolist()
    return list(itertools.pairwise(edges))


def _simulate_purchases(
    rng: np.random.Generator, params: GeneratorParams, cal: _Calendar
) -> _Purchases:
    n = params.customers
    end_s = params.days * _DAY_S
    acq_days = np.sort(np.interp(rng.random(n), cal.acq_cdf, cal.grid_days))
    acq_s = np.minimum(np.floor(acq_days * _DAY_S), end_s - 1).astype(np.int64)
    u0 = cal.to_operational(acq_s / _DAY_S)
    exposure = np.maximum(float(params.days) - u0, 0.0)  # operational days after acquisition
    lam_raw = rng.gamma(params.r, 1.0 / params.alpha, size=n)
    p = np.clip(rng.beta(params.a, params.b, size=n), 1e-9, 1.0)
    scale = _solve_scale(lam_raw, p, exposure, float(params.orders))
    lam = lam_raw * scale

    # Repeat purchases: K ~ Geometric(p) is the repeat purchase after which the customer
    # leaves, M ~ Poisson(lambda T) the number made if they never left; they make min(K, M).
    # In the rare case the realised total misses the target by more than 3% (heavy-tailed
    # customers), K and M are redrawn (lambda and p are kept); see docs/generator.md.
    for _attempt in range(_COUNT_ATTEMPTS):
        k_drop = rng.geometric(p).astype(np.int64)
        m_all = rng.poisson(lam * exposure).astype(np.int64)
        n_rep = np.minimum(k_drop, m_all)
        if abs((n + float(n_rep.sum())) / params.orders - 1.0) <= _COUNT_TOLERANCE:
            break
    dropped = k_drop <= m_all
    n_orders = n_rep + 1
    starts = _segment_starts(n_orders)
    o_sec = np.empty(int(n_orders.sum()), dtype=np.int64)
    o_sec[starts] = acq_s
    # Given M, the purchase times are M sorted uniforms on the exposure; the first n_rep of
    # them are S_j / S_{M+1} with S the running sum of standard exponentials, and the unused
    # tail of S_{M+1} is a single Gamma(M + 1 - n_rep) draw.
    for a, b in _chunks(n_rep):
        nr = n_rep[a:b]
        cust = np.repeat(np.arange(b - a, dtype=np.int64), nr)
        csum = np.cumsum(rng.exponential(size=cust.shape[0]))
        st = _segment_starts(nr)
        before = np.concatenate([[0.0], csum])[st]
        has = nr > 0
        s_used = np.zeros(b - a)
        s_used[has] = csum[st[has] + nr[has] - 1] - before[has]
        s_total = s_used + rng.gamma((m_all[a:b] - nr + 1).astype(np.float64))
        u = (csum - before[cust]) / s_total[cust]
        u *= exposure[a:b][cust]
        u += u0[a:b][cust]
        sec = np.floor(cal.to_calendar(u) * _DAY_S).astype(np.int64)
        np.clip(sec, acq_s[a:b][cust], end_s - 1, out=sec)
        o_sec[starts[a:b][cust] + 1 + np.arange(cust.shape[0]) - st[cust]] = sec
    o_cust = np.repeat(np.arange(n, dtype=np.int64), n_orders)
    o_first = np.zeros(o_sec.shape[0], dtype=np.bool_)
    o_first[starts] = True
    dropout_s = np.full(n, -1, dtype=np.int64)
    dropout_s[dropped] = o_sec[starts[dropped] + n_orders[dropped] - 1]
    perm = np.argsort(o_sec, kind="stable")  # chronological; ties keep customer order
    return _Purchases(
        acq_s=acq_s,
        lam=lam,
        p=p,
        expected=_expected_orders(lam, p, exposure),
        dropped=dropped,
        dropout_s=dropout_s,
        n_orders=n_orders,
        scale=scale,
        o_cust=o_cust[perm],
        o_sec=o_sec[perm],
        o_first=o_first[perm],
    )


@dataclass
class _Traits:
    zh: BoolArr
    source: IntArr
    price_sensitive: BoolArr
    nu: FloatArr
    favourite: IntArr  # (customers, 2): first and second favourite category


def _draw_traits(
    rng_people: np.random.Generator, rng_spend: np.random.Generator, params: GeneratorParams
) -> _Traits:
    n = params.customers
    zh = rng_people.random(n) < _ZH_SHARE
    source = np.where(
        zh,
        _categorical(rng_people, _SOURCE_WEIGHTS_ZH, n),
        _categorical(rng_people, _SOURCE_WEIGHTS_EN, n),
    )
    price_sensitive = rng_people.random(n) < _PRICE_SENSITIVE_SHARE
    nu = rng_spend.gamma(params.q, 1.0 / params.gamma, size=n)
    ncat = len(CATEGORIES)
    first = _categorical(rng_spend, _CATEGORY_POPULARITY, n)
    # second favourite: by popularity, or uniformly among the others if that hit the first
    other = _categorical(rng_spend, _CATEGORY_POPULARITY, n)
    shifted = (first + 1 + _categorical(rng_spend, np.ones(ncat - 1), n)) % ncat
    second = np.where(other != first, other, shifted)
    return _Traits(zh, source, price_sensitive, nu, np.stack([first, second], axis=1))


@dataclass
class _Context:
    """What the order tables need besides the simulation."""

    origin_ms: int
    order_w: int
    cust_w: int
    skus: pa.Array
    seasonal: IntArr  # promotion code of each local day, -1 for none


@dataclass
class _Orders:
    status: npt.NDArray[np.int8]
    deliv_s: IntArr
    shipping: IntArr  # cents
    merch: IntArr  # cents, the sum of the line totals
    n_lines: IntArr
    l_prod: npt.NDArray[np.int32]  # per line
    l_qty: npt.NDArray[np.int32]
    l_total: IntArr  # cents
    table: pa.Table


def _build_orders(
    rngs: tuple[np.random.Generator, np.random.Generator, np.random.Generator],
    params: GeneratorParams,
    pur: _Purchases,
    tr: _Traits,
    catalog: _Catalog,
    ctx: _Context,
) -> _Orders:
    """Orders in chunks of about _CHUNK (small temporaries are much faster at 10M orders)."""
    n_orders = pur.o_cust.shape[0]
    status = np.empty(n_orders, dtype=np.int8)
    deliv_s = np.empty(n_orders, dtype=np.int64)
    shipping = np.empty(n_orders, dtype=np.int64)
    merch = np.empty(n_orders, dtype=np.int64)
    n_lines = np.empty(n_orders, dtype=np.int64)
    prods: list[npt.NDArray[np.int32]] = []
    qtys: list[npt.NDArray[np.int32]] = []
    totals: list[IntArr] = []
    batches: list[pa.RecordBatch] = []
    for a in range(0, n_orders, _CHUNK):
        b = min(a + _CHUNK, n_orders)
        ch = _order_chunk(rngs, params, pur, tr, catalog, ctx, a, b)
        status[a:b], deliv_s[a:b], shipping[a:b] = ch.status, ch.deliv_s, ch.shipping
        merch[a:b], n_lines[a:b] = ch.merch, ch.n_lines
        prods.append(ch.l_prod)
        qtys.append(ch.l_qty)
        totals.append(ch.l_total)
        batches.append(ch.batch)
    return _Orders(
        status=status,
        deliv_s=deliv_s,
        shipping=shipping,
        merch=merch,
        n_lines=n_lines,
        l_prod=np.concatenate(prods),
        l_qty=np.concatenate(qtys),
        l_total=np.concatenate(totals),
        table=pa.Table.from_batches(batches),
    )


@dataclass
class _Chunk:
    status: npt.NDArray[np.int8]
    deliv_s: IntArr
    shipping: IntArr
    merch: IntArr
    n_lines: IntArr
    l_prod: npt.NDArray[np.int32]
    l_qty: npt.NDArray[np.int32]
    l_total: IntArr
    batch: pa.RecordBatch


def _order_chunk(
    rngs: tuple[np.random.Generator, np.random.Generator, np.random.Generator],
    params: GeneratorParams,
    pur: _Purchases,
    tr: _Traits,
    catalog: _Catalog,
    ctx: _Context,
    a: int,
    b: int,
) -> _Chunk:
    rng_head, rng_lines, rng_status = rngs
    size = b - a
    end_s = params.days * _DAY_S
    o_cust, o_sec = pur.o_cust[a:b], pur.o_sec[a:b]
    channel = np.where(
        rng_head.random(size) < _PREFERRED_CHANNEL_SHARE,
        _SOURCE_CHANNEL[tr.source[o_cust]],
        _categorical(rng_head, _CHANNEL_WEIGHTS, size),
    )
    use_p = np.where(tr.price_sensitive[o_cust], _DISCOUNT_USE[1], _DISCOUNT_USE[0])
    has_code = rng_head.random(size) < use_p
    code = ctx.seasonal[np.minimum(o_sec // _DAY_S, params.days - 1)]
    code = np.where(code >= 0, code, 4 + rng_head.integers(0, 3, size=size))
    code[pur.o_first[a:b]] = 0
    code[~has_code] = -1
    pct = np.where(has_code, _DISCOUNT_PCT[np.maximum(code, 0)], 0)
    value = rng_head.gamma(params.p, 1.0 / tr.nu[o_cust])  # net merchandise value (target)
    gross = value / (1.0 - pct / 100.0)

    # lines: split the gross value over 1-4 lines, pick products priced to match
    n_lines = _categorical(rng_lines, _LINES_P, size) + 1
    n_lines = np.minimum(n_lines, np.maximum(1, (gross // _LINE_VALUE).astype(np.int64)))
    l_order = np.repeat(np.arange(size, dtype=np.int64), n_lines)
    n_l = l_order.shape[0]
    l_start = _segment_starts(n_lines)
    w = rng_lines.gamma(2.0, size=n_l)
    target = gross[l_order] * (w / np.add.reduceat(w, l_start)[l_order])
    l_cust = o_cust[l_order]
    which = _categorical(rng_lines, _FAVOURITE_P, n_l)
    cat = _categorical(rng_lines, _CATEGORY_POPULARITY, n_l)
    for k in range(2):
        cat = np.where(which == k, tr.favourite[l_cust, k], cat)
    prod, qty = catalog.choose(rng_lines, cat, target)
    # merge lines of one order that landed on the same product (one line per sku)
    pos = np.arange(n_l, dtype=np.int64) - l_start[l_order]
    into = np.full(n_l, -1, dtype=np.int64)
    for k in range(1, 4):
        same = np.zeros(n_l, dtype=np.bool_)
        same[k:] = (prod[k:] == prod[:-k]) & (pos[k:] >= k)
        into[same] = np.nonzero(same)[0] - k
    dup = into >= 0
    np.add.at(qty, into[dup], qty[dup])
    keep = ~dup
    l_order, prod, qty = l_order[keep], prod[keep], np.minimum(qty[keep], 99)
    n_lines = np.bincount(l_order, minlength=size).astype(np.int64)
    unit = catalog.price[prod]
    gross_c = unit * qty
    l_disc = (gross_c * pct[l_order] + 50) // 100  # percent off, rounded half up to the cent
    l_total = gross_c - l_disc
    merch = np.add.reduceat(l_total, _segment_starts(n_lines))
    in_store = channel == 3
    shipping = np.where((merch < _FREE_SHIPPING_FROM) & ~in_store, _SHIPPING_FEE, 0)

    # lifecycle: paid within minutes (some wait hours), shipped, delivered a few days later
    slow = rng_status.random(size) < 0.08
    pay_delay = rng_status.exponential(1.0, size) * np.where(slow, 7200.0, 180.0)
    paid_s = o_sec + np.maximum(5, pay_delay.astype(np.int64))
    ship_s = paid_s + rng_status.integers(2 * 3600, 48 * 3600, size=size)
    deliv_s = ship_s + 12 * 3600 + (rng_status.gamma(2.0, 1.0, size) * _DAY_S).astype(np.int64)
    ship_s[in_store] = paid_s[in_store]
    deliv_s[in_store] = paid_s[in_store]
    status = np.zeros(size, dtype=np.int8)
    status[paid_s < end_s] = 1
    status[ship_s < end_s] = 2
    status[deliv_s < end_s] = 3
    status[rng_status.random(size) < _CANCEL_RATE] = 4
    paid_null = (status == 0) | (status == 4)
    deliv_null = status != 3

    ms = ctx.origin_ms
    batch = pa.RecordBatch.from_pydict(
        {
            "external_id": _fixed_ids("O", l_order + (a + 1), ctx.order_w),
            "customer_external_id": _fixed_ids("C", o_cust[l_order] + 1, ctx.cust_w),
            "placed_at": _timestamps(o_sec[l_order] * 1000 + ms),
            "status": _pick(STATUSES, status[l_order]),
            "currency": _pick([params.currency], np.zeros(l_order.shape[0], dtype=np.int64)),
            "channel": _pick(CHANNELS, channel[l_order]),
            "discount_code": _pick(
                DISCOUNT_CODES, np.maximum(code, 0)[l_order], ~has_code[l_order]
            ),
            "shipping_total": _money(shipping[l_order]),
            "paid_at": _timestamps(paid_s[l_order] * 1000 + ms, paid_null[l_order]),
            "delivered_at": _timestamps(deliv_s[l_order] * 1000 + ms, deliv_null[l_order]),
            "sku": pc.take(ctx.skus, pa.array(prod)),
            "quantity": pa.array(qty.astype(np.int32)),
            "unit_price": _money(unit),
            "line_discount": _money(l_disc),
        }
    )
    return _Chunk(
        status=status,
        deliv_s=deliv_s,
        shipping=shipping,
        merch=merch,
        n_lines=n_lines,
        l_prod=prod.astype(np.int32),
        l_qty=qty.astype(np.int32),
        l_total=l_total,
        batch=batch,
    )


def _choose_flagged(rng: np.random.Generator, params: GeneratorParams, pur: _Purchases) -> BoolArr:
    """Serial returners: drawn among customers with at least 3 orders (when enough exist)."""
    n = params.customers
    n_flag = min(n, round(params.flagged_share * n))
    candidates = np.nonzero(pur.n_orders >= 3)[0]
    if candidates.shape[0] >= n_flag:
        chosen = rng.choice(candidates, size=n_flag, replace=False)
    else:
        rest = np.setdiff1d(np.arange(n), candidates)
        extra = rng.choice(rest, size=n_flag - candidates.shape[0], replace=False)
        chosen = np.concatenate([candidates, extra])
    flagged = np.zeros(n, dtype=np.bool_)
    flagged[chosen] = True
    return flagged


@dataclass
class _Refunds:
    order: IntArr
    sec: IntArr
    amount: IntArr  # cents
    full: BoolArr
    line: IntArr  # line index (meaningful only when not full)
    qty: IntArr
    reason: IntArr


def _build_refunds(
    rng: np.random.Generator,
    params: GeneratorParams,
    pur: _Purchases,
    od: _Orders,
    flagged: BoolArr,
) -> _Refunds:
    end_s = params.days * _DAY_S
    o_flag = flagged[pur.o_cust]
    rate = np.where(o_flag, _FLAGGED_REFUND_RATE, params.refund_rate)
    cand = np.nonzero((rng.random(o_flag.shape[0]) < rate) & (od.status == 3))[0]
    k = cand.shape[0]
    f = o_flag[cand]
    delay = _DAY_S + (rng.gamma(2.0, 1.5, k) * _DAY_S).astype(np.int64)
    full = rng.random(k) < np.where(f, _FULL_REFUND_SHARE[1], _FULL_REFUND_SHARE[0])
    nl = od.n_lines[cand]
    line = _segment_starts(od.n_lines)[cand] + np.minimum(
        (rng.random(k) * nl).astype(np.int64), nl - 1
    )
    line_qty = od.l_qty[line].astype(np.int64)
    some = 1 + np.minimum((rng.random(k) * line_qty).astype(np.int64), line_qty - 1)
    qty = np.where(rng.random(k) < 0.6, line_qty, some)
    reason = np.where(
        f,
        _categorical(rng, _REASON_WEIGHTS_FLAGGED, k),
        _categorical(rng, _REASON_WEIGHTS_NORMAL, k),
    )
    amount = np.where(full, od.merch[cand] + od.shipping[cand], od.l_total[line] * qty // line_qty)
    sec = od.deliv_s[cand] + delay
    ok = sec < end_s  # refunds after the end of the history have not happened yet
    perm = np.argsort(sec[ok], kind="stable")
    return _Refunds(
        order=cand[ok][perm],
        sec=sec[ok][perm],
        amount=amount[ok][perm],
        full=full[ok][perm],
        line=line[ok][perm],
        qty=qty[ok][perm],
        reason=reason[ok][perm],
    )


def _customers_table(
    rng: np.random.Generator,
    params: GeneratorParams,
    tr: _Traits,
    cust_ids: pa.Array,
    first_order_ms: IntArr,
    flagged: BoolArr,
) -> pa.Table:
    n = params.customers
    zh = pa.array(tr.zh)
    sur = rng.integers(0, len(_CN_SURNAMES), n)
    g1 = rng.integers(0, len(_CN_GIVEN), n)
    g2 = rng.integers(0, len(_CN_GIVEN), n)
    two = pa.array(rng.random(n) < 0.6)
    en_first = _pick(_EN_FIRST, rng.integers(0, len(_EN_FIRST), n))
    en_last = _pick(_EN_LAST, rng.integers(0, len(_EN_LAST), n))
    none = pa.scalar(None, pa.string())

    def cn(table: tuple[tuple[str, str], ...], col: int, idx: IntArr) -> Any:
        return _pick([t[col] for t in table], idx)

    given = _join(cn(_CN_GIVEN, 0, g1), pc.if_else(two, cn(_CN_GIVEN, 0, g2), ""))
    given_py = _join(cn(_CN_GIVEN, 1, g1), pc.if_else(two, cn(_CN_GIVEN, 1, g2), ""))
    first = pc.if_else(zh, given, en_first)
    last = pc.if_else(zh, cn(_CN_SURNAMES, 0, sur), en_last)
    mail_first = pc.if_else(zh, given_py, pc.utf8_lower(en_first))
    mail_last = pc.if_else(zh, cn(_CN_SURNAMES, 1, sur), pc.utf8_lower(en_last))
    number = pc.cast(pa.array(np.arange(1, n + 1, dtype=np.int64)), pa.string())
    domain = _pick(_EMAIL_DOMAINS, rng.integers(0, len(_EMAIL_DOMAINS), n))
    no_email = rng.random(n) < _NO_EMAIL
    email = pc.if_else(
        pa.array(no_email), none, _join(mail_first, ".", mail_last, number, "@", domain)
    )
    # phone numbers: unique, from a permutation of the customer index
    i = np.arange(n, dtype=np.int64)
    cn_phone = _fixed_ids(
        "+861",
        rng.choice([3, 5, 7, 8, 9], n) * 10**9 + ((i * 387_420_489 + 12_345_678) % 10**9),
        10,
    )
    us_phone = _fixed_ids(
        "+1",
        rng.choice([212, 415, 206, 312, 617], n) * 10**7 + ((i * 4_782_969 + 1_234_567) % 10**7),
        10,
    )
    no_phone = rng.random(n) < np.where(tr.zh, _NO_PHONE[0], _NO_PHONE[1])
    phone = pc.if_else(pa.array(no_phone), none, pc.if_else(zh, cn_phone, us_phone))
    age_days = ((18.0 + rng.gamma(3.0, 4.0, n)).clip(max=75.0) * 365.25).astype(np.int64)
    start_day = (params.start - dt.date(1970, 1, 1)).days
    birthday = pa.array(
        (start_day - age_days - rng.integers(0, 365, n)).astype("datetime64[D]"),
        mask=rng.random(n) >= _BIRTHDAY_SHARE,
    )
    skin = _pick(_SKIN_TYPES, _categorical(rng, _SKIN_WEIGHTS, n))
    attributes = _join('{"skin_type": "', skin, '", "source": "', _pick(_SOURCES, tr.source), '"}')
    created_ms = np.maximum(
        first_order_ms - rng.integers(60, 1800, n) * 1000, int(first_order_ms.min())
    )
    consent_email = (rng.random(n) < _CONSENT[0]) & ~no_email
    consent_sms = (rng.random(n) < _CONSENT[1]) & ~no_phone
    return pa.table(
        {
            "external_id": cust_ids,
            "email": email,
            "phone": phone,
            "first_name": first,
            "last_name": last,
            "birthday": birthday,
            "locale": pc.if_else(zh, "zh-CN", "en-US"),
            "created_at": _timestamps(created_ms),
            "attributes": attributes,
            "flagged": pa.array(flagged),
            "consent_email": pa.array(consent_email),
            "consent_sms": pa.array(consent_sms),
        }
    )


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------------------
# The generator
# ---------------------------------------------------------------------------------------


def generate(params: GeneratorParams) -> GeneratedShop:
    """Generate a shop. The same params give identical tables (and byte-identical files)."""
    if params.customers < 1 or params.days < 1:
        raise ValueError("customers and days must be positive")
    if not 0.0 <= params.flagged_share <= 1.0 or not 0.0 <= params.refund_rate <= 1.0:
        raise ValueError("flagged_share and refund_rate must be in [0, 1]")
    seeds = np.random.SeedSequence(params.seed).spawn(8)
    rng_buy, rng_spend, rng_head, rng_lines, rng_status, rng_refund, rng_people, rng_misc = (
        np.random.default_rng(s) for s in seeds
    )
    cal = _build_calendar(params.start, params.days)
    origin_ms = ((params.start - dt.date(1970, 1, 1)).days * _DAY_S - _UTC_OFFSET_S) * 1000
    end_ms = origin_ms + params.days * _DAY_S * 1000

    pur = _simulate_purchases(rng_buy, params, cal)
    tr = _draw_traits(rng_people, rng_spend, params)
    catalog = _build_catalog(rng_misc)
    flagged = _choose_flagged(rng_misc, params, pur)

    n, n_orders, n_prod = params.customers, pur.o_cust.shape[0], catalog.price.shape[0]
    skus = _fixed_ids("SKU-", np.arange(1, n_prod + 1, dtype=np.int64), _width(n_prod, 4))
    products = pa.table(
        {
            "sku": skus,
            "name": pa.array(catalog.names, pa.string()),
            "category": _pick(CATEGORIES, catalog.category),
            "price": _money(catalog.price),
            "currency": pa.array([params.currency] * n_prod, pa.string()),
        }
    )
    cust_w, order_w = _width(n, 6), _width(n_orders, 7)
    seasonal = np.full(params.days, -1, dtype=np.int64)  # promotion code of each local day
    seasonal[(cal.month == 12) & (cal.dom == 12)] = 3
    seasonal[(cal.month == 6) & (cal.dom <= 18)] = 2
    seasonal[(cal.month == 11) & (cal.dom <= 11)] = 1
    ctx = _Context(origin_ms, order_w, cust_w, skus, seasonal)
    od = _build_orders((rng_head, rng_lines, rng_status), params, pur, tr, catalog, ctx)
    rf = _build_refunds(rng_refund, params, pur, od, flagged)
    cust_ids = _fixed_ids("C", np.arange(1, n + 1, dtype=np.int64), cust_w)
    customers = _customers_table(
        rng_people, params, tr, cust_ids, pur.acq_s * 1000 + origin_ms, flagged
    )
    n_ref = rf.order.shape[0]
    refunds = pa.table(
        {
            "external_id": _fixed_ids(
                "R", np.arange(1, n_ref + 1, dtype=np.int64), _width(n_ref, 6)
            ),
            "order_external_id": _fixed_ids("O", rf.order + 1, order_w),
            "refunded_at": _timestamps(rf.sec * 1000 + origin_ms),
            "amount": _money(rf.amount),
            "sku": pc.take(skus, pa.array(od.l_prod[rf.line], mask=rf.full)),
            "quantity": pa.array(rf.qty.astype(np.int32), mask=rf.full),
            "reason": _pick(REFUND_REASONS, rf.reason),
        }
    )
    truth = pa.table(
        {
            "customer_external_id": cust_ids,
            "lambda_": pa.array(pur.lam),
            "p_dropout": pa.array(pur.p),
            "dropout_at": _timestamps(pur.dropout_s * 1000 + origin_ms, ~pur.dropped),
            "alive_at_end": pa.array(~pur.dropped),
            "mean_spend": pa.array(params.p / tr.nu),
            "flagged": pa.array(flagged),
            "expected_orders": pa.array(pur.expected),
        }
    )
    eff: dict[str, Any] = asdict(params)
    eff.pop("orders")
    eff.update(
        start=params.start.isoformat(),
        alpha=params.alpha / pur.scale,
        alpha_requested=params.alpha,
        lambda_scale=pur.scale,
        orders_target=params.orders,
        orders_expected=float(pur.expected.sum()),
        orders_generated=n_orders,
        order_lines=od.table.num_rows,
        mean_order_value=params.p * params.gamma / (params.q - 1.0) if params.q > 1 else None,
        flagged_customers=int(flagged.sum()),
        flagged_refund_rate=_FLAGGED_REFUND_RATE,
        cancel_rate=_CANCEL_RATE,
        discount_use=list(_DISCOUNT_USE),
        price_sensitive_share=_PRICE_SENSITIVE_SHARE,
        timezone=TIMEZONE,
        history_start=_iso(origin_ms),
        history_end=_iso(end_ms),
        lambda_unit="purchases per operational day (= per calendar day on average)",
        money="decimal128(18,2)",
        generator_version=1,
    )
    return GeneratedShop(customers, products, od.table, refunds, truth, eff)


# ---------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------

_TABLES = ("customers", "products", "orders", "refunds", "truth")


def _csv_ready(table: pa.Table) -> pa.Table:
    """Timestamps as ISO 8601 'YYYY-MM-DDTHH:MM:SSZ' (pyarrow's own writer uses a space)."""
    cols = []
    for field in table.schema:
        col = table.column(field.name)
        if pa.types.is_timestamp(field.type):
            naive = pc.cast(pc.cast(col, pa.int64()), pa.timestamp("ms"))
            text = pc.cast(pc.cast(naive, pa.timestamp("s")), pa.string())
            col = _join(pc.replace_substring(text, " ", "T", max_replacements=1), "Z")
        cols.append(col)
    return pa.table(cols, names=table.column_names)


def write_shop(
    shop: GeneratedShop, out_dir: Path, fmt: Literal["csv", "parquet"]
) -> dict[str, Path]:
    """Write the five tables and ground_truth.json into out_dir; returns name -> path."""
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"unknown format {fmt!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name in _TABLES:
        table: pa.Table = getattr(shop, name)
        path = out_dir / f"{name}.{fmt}"
        if fmt == "csv":
            pa_csv.write_csv(_csv_ready(table), path)
        else:
            pq.write_table(table, path, compression="zstd")
        paths[name] = path
    meta = {
        "params": shop.params,
        "rows": {name: getattr(shop, name).num_rows for name in _TABLES},
        "format": fmt,
    }
    gt = out_dir / "ground_truth.json"
    text = json.dumps(meta, indent=2, sort_keys=True, ensure_ascii=False)
    gt.write_text(text + "\n", encoding="utf-8")
    paths["ground_truth"] = gt
    return paths
