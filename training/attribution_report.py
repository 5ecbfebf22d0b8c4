"""Which channel sells what another channel suggested: purchases on every channel (till, web,
app), by any alias of the customer, attributed to the recommendations that showed the item to that
customer, as a shown-on x bought-on matrix with intervals, and per placement and variant.

A recommendation id names the channel its answer was shown on (`features.feedback`); feedback
records before that fall back to their own `channel`. A purchase is attributed once:
- click-through: to the latest click on the same item by the same customer within the click
  window before it;
- otherwise view-through: to the latest impression of the item to that customer within the view
  window (the e-mail opened, the widget seen, the tablet shown).

Customer ids are resolved through the identity map first, so a loyalty card at the till and the
account the e-mail went to are one customer. Vectorised: one sort and one binary search per kind
(`training.experiment_report.attribute`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from features import arrowkit
from features.identity import IdentityMap, stitch
from omnirec.errors import DataError
from omnirec.settings import Settings
from training.experiment_report import (
    Estimate,
    attribute,
    mean_interval,
    purchases_of,
    wilson_interval,
)

ALL = "all"
UNKNOWN = "unknown"
CLICK_THROUGH = 1
VIEW_THROUGH = 2
_FIFTH = r"^[^.]*\.[^.]*\.[^.]*\.[^.]*\.(?P<channel>[^.]+)$"  # RE2: the id's channel


@dataclass(frozen=True)
class Windows:
    """How long after a click, and after an impression, a purchase still counts."""

    click_hours: float = 24.0
    view_hours: float = 72.0


@dataclass(frozen=True)
class Cell:
    """Answers shown on one channel and the purchases on another attributed to them."""

    shown_on: str
    bought_on: str
    placement: str  # `all` in the matrix
    variant: str  # `all` in the matrix
    impressions: int  # answers (recommendation ids) shown
    items_shown: int  # (answer, item) pairs shown
    purchases: int  # attributed purchases bought on `bought_on`
    click_through: int
    view_through: int
    revenue: float
    conversion: Estimate  # answers with an attributed purchase / answers shown
    purchase_rate: Estimate  # attributed purchases / items shown
    revenue_per_impression: Estimate


@dataclass(frozen=True)
class AttributionReport:
    since: str | None
    until: str | None
    windows: Windows
    purchases: int  # every purchase in the period (deduplicated)
    attributed: int
    matrix: list[Cell]
    breakdown: list[Cell]

    def markdown(self) -> str:
        """The matrix and the breakdown as Markdown tables."""
        period = f"{self.since or 'the start'} to {self.until or 'now'}"
        lines = [
            "# Cross-channel attribution",
            "",
            f"Period: {period}. Click-through window {self.windows.click_hours:g} h, "
            f"view-through window {self.windows.view_hours:g} h. {self.attributed:,} of "
            f"{self.purchases:,} purchases attributed to a recommendation.",
            "",
            "## Shown on x bought on",
            "",
            *_table(self.matrix, with_groups=False),
            "",
            "## Per placement and variant",
            "",
            *_table(self.breakdown, with_groups=True),
        ]
        return "\n".join(lines) + "\n"


def _table(cells: list[Cell], with_groups: bool) -> list[str]:
    head = "| shown on | bought on |" + (" placement | variant |" if with_groups else "")
    head += (
        " answers | items shown | purchases (click / view) | revenue | conversion (95 % CI) |"
        " purchases per item shown (95 % CI) | revenue per answer (95 % CI) |"
    )
    rule = "|" + "---|" * (head.count("|") - 1)
    rows = [head, rule]
    for c in cells:
        row = f"| {c.shown_on} | {c.bought_on} |"
        if with_groups:
            row += f" {c.placement} | {c.variant} |"
        row += (
            f" {c.impressions:,} | {c.items_shown:,} | {c.purchases:,} ({c.click_through:,} /"
            f" {c.view_through:,}) | {c.revenue:,.2f} | {_interval(c.conversion)} |"
            f" {_interval(c.purchase_rate)} | {_interval(c.revenue_per_impression, 3)} |"
        )
        rows.append(row)
    return rows


def _interval(e: Estimate, digits: int = 4) -> str:
    return f"{e.value:.{digits}f} ({e.low:.{digits}f}-{e.high:.{digits}f})"


def attribution_report(
    feedback: pa.Table,
    events: pa.Table | None,
    identities: IdentityMap | None = None,
    windows: Windows = Windows(),
    since: datetime | None = None,
    until: datetime | None = None,
) -> AttributionReport:
    """The report from the exported feedback (impressions, clicks, purchases) and the event log's
    purchases, in the period [since, until) of the purchases and the answers shown."""
    identities = identities or IdentityMap.empty()
    kinds = feedback["feedback_type"].cast(pa.string())
    shown = feedback.filter(
        pc.and_(
            pc.is_in(kinds, pa.array(["impression", "click"])),
            pc.is_valid(feedback["recommendation_id"]),
        )
    )
    shown = _within(stitch(shown, identities), since, until)
    if shown.num_rows == 0:
        raise DataError(
            "feedback", "no impressions or clicks in the period (omnirec export-events first)"
        )
    purchases = purchases_of(
        [_within(stitch(t, identities), since, until) for t in _purchase_tables(feedback, events)]
    )
    rids = arrowkit.as_dictionary(shown["recommendation_id"].cast(pa.string()))
    rid_of_row = arrowkit.codes(rids).astype(np.int64)
    n_rids = len(rids.dictionary)
    first_row = np.full(n_rids, len(rid_of_row), dtype=np.int64)
    np.minimum.at(first_row, rid_of_row, np.arange(len(rid_of_row)))
    per_rid = shown.take(pa.array(first_row))
    shown_on = _shown_channel(rids.dictionary, per_rid["channel"])
    placement = _text(per_rid["placement"], ALL)
    variant = _text(per_rid["variant"], ALL)
    pairs = np.unique(
        rid_of_row * (1 << 31)
        + arrowkit.codes(arrowkit.as_dictionary(shown["item_id"].cast(pa.string()))).astype(
            np.int64
        )
    )
    items_shown = np.bincount(pairs >> 31, minlength=n_rids)

    hit_rid = np.empty(0, np.int64)
    hit_kind = np.empty(0, np.int64)
    hit_channel: npt.NDArray[np.object_] = np.empty(0, object)
    hit_revenue = np.empty(0, np.float64)
    bought_channels: list[str] = []
    if purchases is not None and purchases.num_rows:
        bought_on = _text(purchases["channel"], UNKNOWN)
        bought_channels = sorted(set(bought_on.tolist()))
        rows, kind = _attribute(shown, purchases, windows)
        hit = np.flatnonzero(rows >= 0)
        hit_rid, hit_kind = rid_of_row[rows[hit]], kind[hit]
        revenue = np.asarray(purchases["revenue"].to_numpy(zero_copy_only=False), np.float64)
        hit_revenue = revenue[hit]
        hit_channel = bought_on[hit]

    def cells(group: npt.NDArray[np.object_], with_groups: bool) -> list[Cell]:
        out = []
        for key in sorted(set(group.tolist())):
            in_group = group == key
            hits_in_group = group[hit_rid] == key
            n = int(in_group.sum())
            shown_items = int(items_shown[in_group].sum())
            parts = key.split("\x00")
            for channel in bought_channels:
                mine = hits_in_group & (hit_channel == channel)
                revenue = np.bincount(hit_rid[mine], hit_revenue[mine], minlength=n_rids)
                converted = np.zeros(n_rids, dtype=bool)
                converted[hit_rid[mine]] = True
                count = int(mine.sum())
                out.append(
                    Cell(
                        shown_on=parts[0],
                        bought_on=channel,
                        placement=parts[1] if with_groups else ALL,
                        variant=parts[2] if with_groups else ALL,
                        impressions=n,
                        items_shown=shown_items,
                        purchases=count,
                        click_through=int((hit_kind[mine] == CLICK_THROUGH).sum()),
                        view_through=int((hit_kind[mine] == VIEW_THROUGH).sum()),
                        revenue=float(revenue.sum()),
                        conversion=wilson_interval(int(converted[in_group].sum()), n),
                        purchase_rate=wilson_interval(min(count, shown_items), shown_items),
                        revenue_per_impression=mean_interval(revenue[in_group]),
                    )
                )
        return out

    grouped = np.array(
        ["\x00".join(k) for k in zip(shown_on, placement, variant, strict=True)], dtype=object
    )
    return AttributionReport(
        since.isoformat() if since else None,
        until.isoformat() if until else None,
        windows,
        0 if purchases is None else purchases.num_rows,
        len(hit_rid),
        cells(shown_on, with_groups=False),
        cells(grouped, with_groups=True),
    )


def _attribute(
    shown: pa.Table, purchases: pa.Table, windows: Windows
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """For each purchase: the row of `shown` it is attributed to (-1: none) and how
    (CLICK_THROUGH, VIEW_THROUGH): the latest click within the click window, else the latest
    impression within the view window."""
    is_click = np.asarray(
        pc.equal(shown["feedback_type"].cast(pa.string()), "click").to_numpy(zero_copy_only=False),
        dtype=bool,
    )
    columns = shown.select(["customer_id", "item_id", "timestamp"])
    rows = np.full(purchases.num_rows, -1, dtype=np.int64)
    kind = np.zeros(purchases.num_rows, dtype=np.int64)
    for code, candidates, hours in (
        (CLICK_THROUGH, np.flatnonzero(is_click), windows.click_hours),
        (VIEW_THROUGH, np.flatnonzero(~is_click), windows.view_hours),
    ):
        open_ = np.flatnonzero(rows < 0)
        if not len(candidates) or not len(open_):
            continue
        found, _ = attribute(
            columns.take(pa.array(candidates)), purchases.take(pa.array(open_)), hours * 3600
        )
        hit = found >= 0
        rows[open_[hit]] = candidates[found[hit]]
        kind[open_[hit]] = code
    return rows, kind


def _purchase_tables(feedback: pa.Table, events: pa.Table | None) -> list[pa.Table]:
    bought = feedback.filter(pc.equal(feedback["feedback_type"].cast(pa.string()), "purchase"))
    tables = [bought]
    if events is not None:
        tables.append(events.filter(pc.equal(events["event_type"].cast(pa.string()), "purchase")))
    return tables


def _within(table: pa.Table, since: datetime | None, until: datetime | None) -> pa.Table:
    at = table["timestamp"]
    if since is not None:
        table = table.filter(pc.greater_equal(at, pa.scalar(since, at.type)))
        at = table["timestamp"]
    if until is not None:
        table = table.filter(pc.less(at, pa.scalar(until, at.type)))
    return table


def _text(column: pa.ChunkedArray | pa.Array, missing: str) -> npt.NDArray[np.object_]:
    values = pc.fill_null(column.cast(pa.string()), missing)
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=object)


def _shown_channel(rids: pa.Array, recorded: pa.ChunkedArray) -> npt.NDArray[np.object_]:
    """The channel each answer was shown on: named in its recommendation id (the fifth part),
    else the feedback record's own channel, else `unknown`."""
    fifth = pc.struct_field(pc.extract_regex(rids.cast(pa.string()), _FIFTH), [0])
    named = pc.if_else(pc.equal(fifth, "_"), pa.scalar(None, pa.string()), fifth)
    return _text(pc.coalesce(named, recorded.cast(pa.string()).combine_chunks()), UNKNOWN)


def write_attribution(report: AttributionReport, folder: Path) -> tuple[Path, Path, Path]:
    """attribution.md, attribution.json and attribution.png (attributed purchases per item
    shown, shown-on x bought-on) into `folder`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    text = folder / "attribution.md"
    text.write_text(report.markdown())
    data = folder / "attribution.json"
    data.write_text(json.dumps(asdict(report), indent=2, default=float))
    shown = sorted({c.shown_on for c in report.matrix})
    bought = sorted({c.bought_on for c in report.matrix})
    grid = np.zeros((len(shown), len(bought)))
    for c in report.matrix:
        grid[shown.index(c.shown_on), bought.index(c.bought_on)] = c.purchase_rate.value
    size = (1.6 + 1.4 * max(len(bought), 1), 1.2 + 0.8 * max(len(shown), 1))
    fig, ax = plt.subplots(figsize=size)
    ax.imshow(grid, cmap="Greens", aspect="auto")
    ax.set_xticks(range(len(bought)), bought)
    ax.set_yticks(range(len(shown)), shown)
    ax.set_xlabel("bought on")
    ax.set_ylabel("shown on")
    for i in range(len(shown)):
        for j in range(len(bought)):
            ax.text(j, i, f"{grid[i, j]:.4f}", ha="center", va="center", fontsize=9)
    ax.set_title("attributed purchases per item shown")
    fig.tight_layout()
    plot = folder / "attribution.png"
    fig.savefig(plot, dpi=110)
    plt.close(fig)
    return text, data, plot


def log_attribution(report: AttributionReport, files: tuple[Path, ...], settings: Settings) -> str:
    """The report as an MLflow run of the `<experiment>-reports` experiment: one metric per
    matrix cell (`purchases_email_to_store`, `purchase_rate_email_to_store`, ...) and the files
    as artifacts; returns the run id."""
    import mlflow

    from training.pipeline import use_mlflow

    use_mlflow(settings, f"{settings.mlflow.experiment}-reports")
    with mlflow.start_run(run_name="attribution") as run:
        mlflow.set_tags({"report": "attribution", "since": report.since, "until": report.until})
        mlflow.log_params(asdict(report.windows))
        metrics: dict[str, float] = {"purchases": report.purchases, "attributed": report.attributed}
        for c in report.matrix:
            pair = f"{c.shown_on}_to_{c.bought_on}"
            metrics[f"purchases_{pair}"] = c.purchases
            metrics[f"purchase_rate_{pair}"] = c.purchase_rate.value
            metrics[f"conversion_{pair}"] = c.conversion.value
            metrics[f"revenue_{pair}"] = c.revenue
        mlflow.log_metrics(metrics)
        for path in files:
            mlflow.log_artifact(str(path), "attribution")
        return str(run.info.run_id)
