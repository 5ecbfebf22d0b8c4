"""The evaluation report of a run: a table (Markdown, HTML, JSON) and plots (PNG), side by side."""

from __future__ import annotations

import html
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

Results = dict[str, dict[str, dict[str, float]]]  # model -> slice -> metric -> value
TABLE_METRICS = ("ndcg", "precision", "recall", "map", "hit_rate")


def markdown_table(results: Results, k: int, slice_name: str = "all") -> str:
    """One row per model for one slice."""
    header = "| model | " + " | ".join(f"{m}@{k}" for m in TABLE_METRICS) + " | users |"
    lines = [header, "|" + "---|" * (len(TABLE_METRICS) + 2)]
    for model, slices in results.items():
        metrics = slices.get(slice_name, {})
        cells = " | ".join(f"{metrics.get(m, float('nan')):.4f}" for m in TABLE_METRICS)
        lines.append(f"| {model} | {cells} | {int(metrics.get('users', 0))} |")
    return "\n".join(lines)


def write_report(
    results: Results, k: int, folder: Path, title: str, notes: dict[str, str] | None = None
) -> Path:
    """Write report.json, report.md, report.html and PNG plots into `folder`; returns the HTML
    path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(
        json.dumps({"k": k, "results": results, "notes": notes or {}}, indent=2)
    )
    slices = sorted({s for m in results.values() for s in m}, key=lambda s: (s != "all", s))
    markdown = [f"# {title}", ""]
    markdown += [f"- {key}: {value}" for key, value in (notes or {}).items()]
    for slice_name in slices:
        markdown += ["", f"## slice: {slice_name}", "", markdown_table(results, k, slice_name)]
    (folder / "report.md").write_text("\n".join(markdown) + "\n")
    _plot_by_slice(results, k, slices, folder / "ndcg_by_slice.png")
    _plot_metrics(results, k, folder / "metrics_all.png")
    body = [f"<h1>{html.escape(title)}</h1>"]
    body += [
        f"<p><b>{html.escape(key)}</b>: {html.escape(value)}</p>"
        for key, value in (notes or {}).items()
    ]
    body += [
        '<img src="metrics_all.png" alt="metrics for all customers">',
        '<img src="ndcg_by_slice.png" alt="nDCG by slice">',
    ]
    for slice_name in slices:
        body.append(
            f"<h2>slice: {html.escape(slice_name)}</h2>{_html_table(results, k, slice_name)}"
        )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>"
        + html.escape(title)
        + "</title><style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}img{max-width:48%}</style>"
        "</head><body>" + "".join(body) + "</body></html>"
    )
    (folder / "report.html").write_text(page)
    return folder / "report.html"


def _html_table(results: Results, k: int, slice_name: str) -> str:
    head = "".join(f"<th>{m}@{k}</th>" for m in TABLE_METRICS)
    rows = []
    for model, slices in results.items():
        metrics = slices.get(slice_name, {})
        cells = "".join(f"<td>{metrics.get(m, float('nan')):.4f}</td>" for m in TABLE_METRICS)
        rows.append(
            f"<tr><th>{html.escape(model)}</th>{cells}<td>{int(metrics.get('users', 0))}</td></tr>"
        )
    return f"<table><tr><th>model</th>{head}<th>users</th></tr>{''.join(rows)}</table>"


def _plot_by_slice(results: Results, k: int, slices: list[str], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / max(1, len(results))
    for i, (model, data) in enumerate(results.items()):
        values = [data.get(s, {}).get("ndcg", 0.0) for s in slices]
        ax.bar([x + i * width for x in range(len(slices))], values, width, label=model)
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(slices))], slices, rotation=20)
    ax.set_ylabel(f"nDCG@{k}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _plot_metrics(results: Results, k: int, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / max(1, len(results))
    for i, (model, data) in enumerate(results.items()):
        values = [data.get("all", {}).get(m, 0.0) for m in TABLE_METRICS]
        ax.bar([x + i * width for x in range(len(TABLE_METRICS))], values, width, label=model)
    ax.set_xticks(
        [x + 0.4 - width / 2 for x in range(len(TABLE_METRICS))],
        [f"{m}@{k}" for m in TABLE_METRICS],
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
