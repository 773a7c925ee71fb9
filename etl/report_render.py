"""Release report rendering: small pandas frames -> PNG plots (matplotlib Agg) and one static HTML page.

Spark-free on purpose: the report stage (etl/stages/report.py) aggregates in Spark and hands over frames of a
few hundred rows at most; everything here is plain pandas, testable without a session. A section whose data is
missing renders as a note saying which table or file is absent and which stage writes it.
"""

from __future__ import annotations

import html
import json
import math
import os
from dataclasses import dataclass, field

import pandas as pd

SPLIT_ORDER = ("train", "val", "test", "holdout")
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1180px;color:#1d2330}
h1{margin-bottom:.2rem} h2{margin-top:2.2rem;border-bottom:2px solid #e3e7ef;padding-bottom:.3rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.88rem} th,td{padding:.25rem .6rem;border-bottom:1px solid #e3e7ef}
th{background:#f3f5f9;text-align:left} td{text-align:left} td.n,th.n{text-align:right}
.meta td{text-align:left} .note{color:#8a5a00;background:#fff6e0;padding:.5rem .8rem;border-radius:4px}
.pass{color:#0a7d32;font-weight:600} .fail{color:#b3261e;font-weight:600} img{max-width:100%;margin:.4rem 0}
.kpis{display:flex;gap:1rem;flex-wrap:wrap} .kpi{background:#f3f5f9;border-radius:6px;padding:.6rem 1rem}
.kpi b{display:block;font-size:1.4rem}
"""


@dataclass
class Section:
    """One report section: title, HTML parts in order, and a note when its data is missing."""

    anchor: str
    title: str
    parts: list[str] = field(default_factory=list)
    missing: str | None = None


def esc(value) -> str:
    return html.escape("" if value is None else str(value))


def cell(value) -> str:
    """One table value as text: empty for null/NaN, floats to at most 3 decimals."""
    if isinstance(value, float):
        return "" if math.isnan(value) else str(round(value, 3))
    if value is None:
        return ""
    return esc(value)


def table_html(df: pd.DataFrame | None, css_class: str = "") -> str:
    """A pandas frame as an escaped HTML table (no index); numeric columns right-aligned (class `n`)."""
    if df is None or df.empty:
        return '<p class="note">no rows</p>'
    numeric = [pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]) for c in df.columns]
    head = "".join(f'<th class="n">{esc(c)}</th>' if n else f"<th>{esc(c)}</th>" for c, n in zip(df.columns, numeric))
    rows = ["<tr>" + "".join(f'<td class="n">{cell(v)}</td>' if n else f"<td>{cell(v)}</td>"
                             for v, n in zip(row, numeric)) + "</tr>"
            for row in df.itertuples(index=False, name=None)]
    css = f' class="{esc(css_class)}"' if css_class else ""
    return f"<table{css}><thead><tr>{head}</tr></thead><tbody>\n" + "\n".join(rows) + "\n</tbody></table>"


def kpis_html(items: dict) -> str:
    return '<div class="kpis">' + "".join(
        f'<div class="kpi"><b>{esc(v)}</b>{esc(k)}</div>' for k, v in items.items()) + "</div>"


def _figure(width: float = 9.0, height: float = 3.6):
    from matplotlib.figure import Figure  # Agg canvas, no pyplot global state

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def save_png(fig, out_dir: str, name: str) -> str:
    """Write a figure as `<out_dir>/<name>` and return the `<img>` tag pointing at it."""
    fig.savefig(os.path.join(out_dir, name), format="png", metadata={"Software": None})
    return f'<img src="{esc(name)}" alt="{esc(name)}">'


def family_split_phase_frame(by_family_split_phase: dict) -> pd.DataFrame:
    """Manifest counts {family: {split: {phase: n}}} -> rows (phase, family, one column per split, total)."""
    rows = [{"phase": phase, "family": family, "split": split, "records": int(n)}
            for family, splits in by_family_split_phase.items()
            for split, phases in splits.items() for phase, n in phases.items()]
    if not rows:
        return pd.DataFrame(columns=["phase", "family", *SPLIT_ORDER, "total"])
    long = pd.DataFrame(rows)
    wide = long.pivot_table(index=["phase", "family"], columns="split", values="records", aggfunc="sum", fill_value=0)
    cols = [s for s in SPLIT_ORDER if s in wide.columns] + sorted(c for c in wide.columns if c not in SPLIT_ORDER)
    wide = wide[cols].astype(int)
    wide["total"] = wide.sum(axis=1)
    out = wide.reset_index().sort_values(["phase", "family"]).reset_index(drop=True)
    out.columns.name = None  # no "split" caption row in the HTML table
    return out


def plot_family_split(wide: pd.DataFrame, out_dir: str) -> str:
    """Stacked horizontal bars: records per family (all phases) by split."""
    splits = [c for c in wide.columns if c not in ("phase", "family", "total")]
    per_family = wide.groupby("family")[splits].sum().sort_values(splits[0] if splits else "family")
    fig = _figure(9, max(2.5, 0.38 * len(per_family) + 1))
    ax = fig.subplots()
    left = pd.Series(0, index=per_family.index)
    for split in splits:
        ax.barh(per_family.index, per_family[split], left=left, label=split)
        left = left + per_family[split]
    ax.set_xlabel("records in the release")
    ax.legend(loc="lower right")
    return save_png(fig, out_dir, "family_split.png")


def plot_log2_bins(bins: pd.DataFrame, value: str, out_dir: str, name: str) -> str:
    """Lines per family over log2 buckets: `bins` has family, bucket (floor log2), n."""
    fig = _figure()
    ax = fig.subplots()
    for family, grp in bins.groupby("family"):
        grp = grp.sort_values("bucket")
        ax.plot([2 ** int(b) for b in grp["bucket"]], grp["n"], marker="o", label=family)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel(f"{value} (log2 buckets)")
    ax.set_ylabel("conversations")
    ax.legend(fontsize=7, ncol=2)
    return save_png(fig, out_dir, name)


def plot_bars(labels: list, values: list, xlabel: str, ylabel: str, out_dir: str, name: str,
              log_y: bool = False) -> str:
    fig = _figure(9, 3.2)
    ax = fig.subplots()
    ax.bar([str(x) for x in labels], values, color="#4c72b0")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if log_y:
        ax.set_yscale("log")
    for tick in ax.get_xticklabels():
        tick.set_rotation(30 if len(labels) > 8 else 0)
    return save_png(fig, out_dir, name)


def plot_margins(bins: pd.DataFrame, out_dir: str) -> str:
    """Margin histogram per strategy: `bins` has strategy, lo, hi, n."""
    fig = _figure()
    ax = fig.subplots()
    for strategy, grp in bins.groupby("strategy"):
        ax.bar(grp["lo"], grp["n"], width=grp["hi"] - grp["lo"], align="edge", alpha=0.6, label=strategy,
               edgecolor="white")
    ax.set_xlabel("margin (chosen_score - rejected_score)")
    ax.set_ylabel("pairs")
    ax.legend(fontsize=8)
    return save_png(fig, out_dir, "margins.png")


def gate_frame(gates: list[dict]) -> pd.DataFrame:
    """Gate rows {gate, passed, figures, examples} -> gate, result, scalar figures, example count."""
    rows = []
    for g in gates:
        figures = g.get("figures") or {}
        if isinstance(figures, str):
            figures = json.loads(figures or "{}")
        examples = g.get("examples") or []
        if isinstance(examples, str):
            examples = json.loads(examples or "[]")
        scalars = ", ".join(f"{k}={v}" for k, v in figures.items() if isinstance(v, (int, float, str, bool)) or v is None)
        rows.append({"gate": g.get("gate"), "result": "PASS" if g.get("passed") else "FAIL",
                     "figures": scalars, "examples": len(examples)})
    return pd.DataFrame(rows, columns=["gate", "result", "figures", "examples"])


def gate_table_html(frame: pd.DataFrame) -> str:
    """Gate table with PASS/FAIL coloured (figures escaped)."""
    if frame.empty:
        return '<p class="note">no gate results</p>'
    head = "".join(f"<th>{esc(c)}</th>" for c in frame.columns)
    body = []
    for r in frame.itertuples(index=False):
        css = "pass" if r.result == "PASS" else "fail"
        body.append(f'<tr><td>{esc(r.gate)}</td><td class="{css}">{esc(r.result)}</td>'
                    f'<td>{esc(r.figures)}</td><td class="n">{esc(r.examples)}</td></tr>')
    return f'<table class="gates"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def render_page(title: str, header: dict, kpis: dict, sections: list[Section]) -> str:
    """The whole page: header facts, KPIs, a table of contents and every section (or its missing-data note)."""
    meta = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in header.items())
    toc = " · ".join(f'<a href="#{esc(s.anchor)}">{esc(s.title)}</a>' for s in sections)
    body = []
    for s in sections:
        inner = f'<p class="note">{esc(s.missing)}</p>' if s.missing else "\n".join(s.parts)
        body.append(f'<section id="{esc(s.anchor)}"><h2>{esc(s.title)}</h2>\n{inner}\n</section>')
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f"<style>{CSS}</style></head><body>\n<h1>{esc(title)}</h1>\n"
            f'<table class="meta">{meta}</table>\n{kpis_html(kpis)}\n<p>{toc}</p>\n' + "\n".join(body)
            + "\n</body></html>\n")


def write_page(out_dir: str, page: str) -> str:
    """Write `<out_dir>/index.html` via a temp file; returns its path."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "index.html")
    with open(path + ".tmp", "w", encoding="utf-8") as fh:
        fh.write(page)
    os.replace(path + ".tmp", path)
    return path
