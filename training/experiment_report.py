"""How an experiment's variants did on the storefront: impressions, click-through, conversion and
revenue per impression per variant, with 95 % confidence intervals, the lift over the control
and a significance test (scipy), from the exported feedback and event log.

An impression is one answer shown (one recommendation id); it is clicked when any of its items
was clicked; it converts when a purchase is attributed to it: a purchase of a clicked item by the
same customer within the attribution window after the click (the latest such click wins), from
the feedback's purchases and the event log's, each purchase counted once.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from scipy import stats

from omnirec.errors import DataError

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float


@dataclass(frozen=True)
class Comparison:
    """A variant against the control: relative lift (0.10 = +10 %) with its interval, p-value."""

    lift: Estimate
    p_value: float


@dataclass(frozen=True)
class VariantFigures:
    variant: str
    impressions: int
    clicks: int  # impressions with a click
    conversions: int  # impressions with an attributed purchase
    revenue: float
    ctr: Estimate
    conversion: Estimate
    revenue_per_impression: Estimate
    ctr_vs_control: Comparison | None = None
    conversion_vs_control: Comparison | None = None
    revenue_vs_control: Comparison | None = None


@dataclass(frozen=True)
class ExperimentReport:
    experiment: str
    control: str
    window_hours: float
    variants: list[VariantFigures]

    def table(self) -> str:
        """The figures as a fixed-width table."""
        lines = [
            f"experiment {self.experiment} (control {self.control}; attribution window "
            f"{self.window_hours:g} h)",
            f"{'variant':<14}{'impressions':>12}{'CTR':>9}{'95% CI':>18}{'conv.':>8}"
            f"{'rev/impr.':>10}{'CTR lift':>10}{'95% CI':>18}{'p':>8}{'rev lift':>10}{'p':>8}",
        ]
        for v in self.variants:
            row = (
                f"{v.variant:<14}{v.impressions:>12,}{v.ctr.value:>9.4f}"
                f"{f'{v.ctr.low:.4f}-{v.ctr.high:.4f}':>18}{v.conversion.value:>8.4f}"
                f"{v.revenue_per_impression.value:>10.3f}"
            )
            if v.ctr_vs_control is not None and v.revenue_vs_control is not None:
                c, r = v.ctr_vs_control, v.revenue_vs_control
                row += (
                    f"{c.lift.value:>+10.1%}{f'{c.lift.low:+.1%} {c.lift.high:+.1%}':>18}"
                    f"{c.p_value:>8.3f}{r.lift.value:>+10.1%}{r.p_value:>8.3f}"
                )
            lines.append(row)
        return "\n".join(lines)


def wilson_interval(successes: int, n: int) -> Estimate:
    if n == 0:
        return Estimate(0.0, 0.0, 0.0)
    p = successes / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / (1 + Z95**2 / n)
    return Estimate(p, max(0.0, centre - half), min(1.0, centre + half))


def mean_interval(values: npt.NDArray[np.float64]) -> Estimate:
    if not len(values):
        return Estimate(0.0, 0.0, 0.0)
    mean = float(values.mean())
    half = Z95 * float(values.std(ddof=1)) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return Estimate(mean, mean - half, mean + half)


def _ratio_lift(a: float, var_a: float, b: float, var_b: float) -> Estimate:
    """b / a - 1 with a delta-method interval on log(b / a) (variances of the two means)."""
    if a <= 0 or b <= 0:
        return Estimate(float("nan"), float("nan"), float("nan"))
    log_ratio = math.log(b / a)
    half = Z95 * math.sqrt(var_a / a**2 + var_b / b**2)
    return Estimate(b / a - 1, math.exp(log_ratio - half) - 1, math.exp(log_ratio + half) - 1)


def _proportion_test(x_a: int, n_a: int, x_b: int, n_b: int) -> Comparison:
    p_a, p_b = x_a / max(n_a, 1), x_b / max(n_b, 1)
    lift = _ratio_lift(p_a, p_a * (1 - p_a) / max(n_a, 1), p_b, p_b * (1 - p_b) / max(n_b, 1))
    table = np.array([[x_a, n_a - x_a], [x_b, n_b - x_b]])
    p_value = (
        float(stats.chi2_contingency(table, correction=False)[1])
        if table.min(axis=0).max() > 0
        else 1.0
    )
    return Comparison(lift, p_value)


def _mean_test(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> Comparison:
    if len(a) < 2 or len(b) < 2:
        return Comparison(Estimate(float("nan"), float("nan"), float("nan")), 1.0)
    lift = _ratio_lift(
        float(a.mean()),
        float(a.var(ddof=1)) / len(a),
        float(b.mean()),
        float(b.var(ddof=1)) / len(b),
    )
    p_value = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return Comparison(lift, 1.0 if math.isnan(p_value) else p_value)


def read_parquet_folder(folder: Path | None) -> pa.Table | None:
    """Every Parquet file under `folder` (hive `date=` folders), or None when there is none."""
    if folder is None or not folder.exists() or not any(folder.rglob("*.parquet")):
        return None
    return ds.dataset(folder, format="parquet", partitioning="hive").to_table()


def attribute(
    clicks: pa.Table, purchases: pa.Table, window_seconds: float
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """For each purchase (customer_id, item_id, timestamp, revenue): the row of the latest click
    of the same customer on the same item at most `window_seconds` before it (-1: none), and the
    purchase's revenue. Vectorised: one sort of the clicks, one binary search for the purchases."""
    both = pa.concat_arrays(
        [
            pc.binary_join_element_wise(
                t["customer_id"].combine_chunks().cast(pa.string()),
                t["item_id"].combine_chunks().cast(pa.string()),
                "\x00",
            )
            for t in (clicks, purchases)
        ]
    ).dictionary_encode()
    keys = np.asarray(both.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    click_keys, purchase_keys = keys[: clicks.num_rows], keys[clicks.num_rows :]

    def seconds(t: pa.Table) -> npt.NDArray[np.int64]:
        micros = t["timestamp"].combine_chunks().cast(pa.int64()).to_numpy(zero_copy_only=False)
        return np.asarray(micros, dtype=np.int64) // 1_000_000

    click_s, purchase_s = seconds(clicks), seconds(purchases)
    base = min(click_s.min(initial=0), purchase_s.min(initial=0))
    click_code = (click_keys << 33) | (click_s - base)
    purchase_code = (purchase_keys << 33) | (purchase_s - base)
    order = np.argsort(click_code, kind="stable")
    found = np.searchsorted(click_code[order], purchase_code, side="right") - 1
    rows = np.where(found >= 0, order[np.maximum(found, 0)], -1)
    ok = rows >= 0
    ok[ok] = (click_keys[rows[ok]] == purchase_keys[ok]) & (
        purchase_s[ok] - click_s[rows[ok]] <= window_seconds
    )
    revenue = np.asarray(purchases["revenue"].to_numpy(zero_copy_only=False), dtype=np.float64)
    return np.where(ok, rows, -1), revenue


def experiment_report(
    experiment: str,
    feedback: pa.Table,
    events: pa.Table | None,
    window_hours: float,
    control: str | None = None,
) -> ExperimentReport:
    """The report of `experiment` from the feedback records (and the event log's purchases)."""
    mine = feedback.filter(pc.equal(feedback["experiment"].cast(pa.string()), experiment))
    if mine.num_rows == 0:
        raise DataError(
            experiment,
            "no feedback for this experiment (export the events first: omnirec export-events)",
        )
    kinds = mine["feedback_type"].cast(pa.string())
    shown = mine.filter(pc.is_in(kinds, pa.array(["impression", "click"])))
    rids = shown["recommendation_id"].cast(pa.string()).combine_chunks().dictionary_encode()
    impressions = len(rids.dictionary)
    variant_of = np.empty(impressions, dtype=object)
    codes = rids.indices.to_numpy(zero_copy_only=False)
    variant_of[codes] = np.asarray(
        shown["variant"].cast(pa.string()).to_numpy(zero_copy_only=False), dtype=object
    )
    is_click = np.asarray(
        pc.equal(shown["feedback_type"].cast(pa.string()), "click").to_numpy(zero_copy_only=False)
    )
    clicked = np.zeros(impressions, dtype=bool)
    clicked[codes[is_click]] = True
    revenue = np.zeros(impressions)
    converted = np.zeros(impressions, dtype=bool)
    clicks = shown.filter(pa.array(is_click)).select(
        ["customer_id", "item_id", "timestamp", "recommendation_id"]
    )
    purchases = _purchases(feedback, events)
    if clicks.num_rows and purchases is not None and purchases.num_rows:
        rows, amount = attribute(clicks, purchases, window_hours * 3600)
        hit = rows >= 0
        click_rid = pc.index_in(clicks["recommendation_id"].cast(pa.string()), rids.dictionary)
        rid_codes = np.asarray(click_rid.to_numpy(zero_copy_only=False), dtype=np.int64)[rows[hit]]
        np.add.at(revenue, rid_codes, amount[hit])
        converted[rid_codes] = True
    names = sorted({str(v) for v in variant_of.tolist()}, key=lambda v: (v != control, v))
    control = control if control in names else names[0]
    figures = []
    by_name = {}
    for name in names:
        mask = variant_of == name
        n = int(mask.sum())
        by_name[name] = (int(clicked[mask].sum()), int(converted[mask].sum()), n, revenue[mask])
    c_clicks, c_conv, c_n, c_rev = by_name[control]
    for name in names:
        n_clicks, n_conv, n, rev = by_name[name]
        compare = name != control
        figures.append(
            VariantFigures(
                name,
                n,
                n_clicks,
                n_conv,
                float(rev.sum()),
                wilson_interval(n_clicks, n),
                wilson_interval(n_conv, n),
                mean_interval(rev),
                _proportion_test(c_clicks, c_n, n_clicks, n) if compare else None,
                _proportion_test(c_conv, c_n, n_conv, n) if compare else None,
                _mean_test(c_rev, rev) if compare else None,
            )
        )
    return ExperimentReport(experiment, control, window_hours, figures)


def _purchases(feedback: pa.Table, events: pa.Table | None) -> pa.Table | None:
    """Every purchase of the feedback and the event log (`purchases_of`)."""
    bought = feedback.filter(pc.equal(feedback["feedback_type"].cast(pa.string()), "purchase"))
    sources = [bought] + (
        [events.filter(pc.equal(events["event_type"].cast(pa.string()), "purchase"))]
        if events is not None
        else []
    )
    return purchases_of(sources)


def purchases_of(sources: list[pa.Table]) -> pa.Table | None:
    """(customer_id, item_id, timestamp, revenue, channel) of the purchases in `sources`
    (feedback or event rows), one row per (customer, item, second): the same purchase posted as
    feedback and as an event is one purchase."""
    parts = [
        pa.table(
            {
                "customer_id": t["customer_id"].cast(pa.string()),
                "item_id": t["item_id"].cast(pa.string()),
                "timestamp": pc.floor_temporal(t["timestamp"], unit="second"),
                "revenue": pc.multiply(
                    pc.fill_null(t["price"].cast(pa.float64()), 0.0),
                    t["quantity"].cast(pa.float64()),
                ),
                "channel": t["channel"].cast(pa.string()),
            }
        )
        for t in sources
        if t.num_rows
    ]
    if not parts:
        return None
    return (
        pa.concat_tables(parts)
        .group_by(["customer_id", "item_id", "timestamp"])
        .aggregate([("revenue", "max"), ("channel", "max")])
        .rename_columns(["customer_id", "item_id", "timestamp", "revenue", "channel"])
    )


def write_report(report: ExperimentReport, folder: Path) -> tuple[Path, Path]:
    """report.json and report.png (CTR, conversion and revenue per impression per variant with
    their 95 % intervals) into `folder`; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "report.json"
    data.write_text(json.dumps(asdict(report), indent=2, default=float))
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    names = [v.variant for v in report.variants]
    for ax, title, pick in zip(
        axes,
        ("click-through rate", "conversion", "revenue per impression"),
        ("ctr", "conversion", "revenue_per_impression"),
        strict=True,
    ):
        values = [getattr(v, pick) for v in report.variants]
        centre = [e.value for e in values]
        errors = [[e.value - e.low for e in values], [e.high - e.value for e in values]]
        ax.bar(names, centre, yerr=errors, capsize=6, color=["#888"] + ["#2a7"] * (len(names) - 1))
        ax.set_title(title)
    fig.suptitle(f"experiment {report.experiment}: 95 % intervals")
    fig.tight_layout()
    plot = folder / "report.png"
    fig.savefig(plot, dpi=110)
    plt.close(fig)
    return data, plot
