"""Writing what `xentcheck compare` measured: results.json, report.md, report.html and the PNG plots.

The schema of results.json is documented in docs/results-schema.md. report.html is self-contained
(plots inlined as data URIs) and escapes every string that came from a backend or an input.
"""
from __future__ import annotations

import base64
import html
import io
import json
from collections import defaultdict

import numpy as np

from .records import OPS
from .reference import DTYPE_NAMES

PLOTS = ("ulp_vs_gap.png", "max_ulp_heatmap.png")


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if np.isnan(v):
            return "nan"
        if np.isinf(v):
            return "inf"
        if v == int(v) and abs(v) < 1e6:
            return str(int(v))
        return f"{v:.3g}"
    return str(v)


def public(results: dict) -> dict:
    return {k: v for k, v in results.items() if not k.startswith("_")}


def write_json(results: dict, path) -> None:
    def default(o):
        if isinstance(o, (np.integer,)):
            return int(o)
        if isinstance(o, (np.floating,)):
            return float(o)
        return str(o)

    with open(path, "w") as f:
        json.dump(public(results), f, indent=1, default=default, allow_nan=True)


# --------------------------------------------------------------------------------------------
# Tables shared by the Markdown, HTML and terminal renderings: lists of rows of strings.

def accuracy_tables(results: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """One table per (op, kind): backend rows, per dtype 'max / p99 / median' ULP."""
    by = defaultdict(dict)
    for r in results["results"]:
        by[r["op"], r["kind"]][r["backend"], r["dtype"]] = r
    dtypes = [d for d in DTYPE_NAMES if d in results["settings"]["dtypes"]]
    tables = []
    for (op, kind), cells in by.items():
        backends = list(dict.fromkeys(b for b, _ in cells))
        rows = []
        for b in backends:
            row = [b]
            for d in dtypes:
                r = cells.get((b, d))
                if r is None or r["n"] == 0:
                    row.append("n/a" if r is None else "; ".join(r["problems"][:1]) or "-")
                    continue
                cell = f"{_fmt(r['max_ulp'])} / {_fmt(r['p99_ulp'])} / {_fmt(r['median_ulp'])}"
                if r["mismatches"]:
                    cell += f" ({r['mismatches']} inf/NaN mismatches; finite max {_fmt(r['max_finite_ulp'])})"
                if r["problems"]:
                    cell += f" [{len(r['problems'])} cases failed to run]"
                row.append(cell)
            rows.append(row)
        tables.append((f"{op} {kind}: ULP error, max / p99 / median", ["backend"] + dtypes, rows))
    return tables


def strata_table(results: dict, op: str, kind: str, by: str) -> tuple[list[str], list[list[str]]]:
    """Max ULP error per stratum (by "gap": x_max - x_i; by "n": the row length), per backend and dtype."""
    cells, strata = defaultdict(dict), []
    for s in results["stratified"]:
        if s["op"] == op and s["kind"] == kind and s["by"] == by:
            cells[s["backend"], s["dtype"]][s["stratum"]] = s["max_ulp"]
            if s["stratum"] not in strata:
                strata.append(s["stratum"])
    strata.sort(key=(lambda t: float(t.split(",")[0][1:])) if by == "gap" else int)
    rows = [[f"{b} {d}"] + [_fmt(v.get(t)) for t in strata] for (b, d), v in cells.items()]
    return ["backend dtype"] + [f"{by} {t}" if by == "gap" else f"n={t}" for t in strata], rows


WORST_DISAGREEMENTS = 20  # rows of the disagreement table (the largest max ulp apart; all are in results.json)


def disagreement_rows(results: dict) -> list[list[str]]:
    """The pairs of backends that differ, the farthest apart first."""
    rows = []
    for d in sorted(results["disagreements"], key=lambda d: -_ulp_key(d["max_ulp_apart"])):
        if not d["differ"]:
            continue
        if d["a_closer"] == d["b_closer"]:
            verdict = "equally far from exact"
        else:
            closer = d["a"] if d["a_closer"] > d["b_closer"] else d["b"]
            verdict = f"{closer} is closer on {max(d['a_closer'], d['b_closer'])} of {d['differ']}"
        rows.append([f"{d['a']} vs {d['b']}", f"{d['op']} {d['kind']}", d["dtype"], str(d["differ"]),
                     f"{d['elements']}", _fmt(d["max_ulp_apart"]), verdict])
    return rows


def _ulp_key(v) -> float:
    return float("inf") if v is None or v != v else float(v)


def semantics_rows(results: dict) -> tuple[list[str], list[list[str]]]:
    names = [b["backend"] for b in results["semantics"][0]["backends"]] if results["semantics"] else []
    rows = []
    for e in results["semantics"]:
        row = [f"{e['edge']} ({e['op']} {e['kind']}, {e['dtype']})", e["reference"]]
        for b in e["backends"]:
            mark = ""
            if b["differs"]:
                mark = " [differs" + (f"; known: {', '.join(b['known_departure'])}" if b["known_departure"] else "") + "]"
            row.append(b["answer"] + mark)
        rows.append(row)
    return ["edge", "reference"] + names, rows


def slack_rows(results: dict) -> tuple[list[str], list[list[str]]]:
    """Per op and kind, per dtype: 'median (loosest, tightest)' bound slack over the ordinary cases."""
    dtypes = [d for d in DTYPE_NAMES if d in results["settings"]["dtypes"]]
    cells = {(r["op"], r["kind"], r["dtype"]): r for r in results.get("slack", [])}
    rows = []
    for op, kind in dict.fromkeys((r["op"], r["kind"]) for r in results.get("slack", [])):
        row = [f"{op} {kind}"]
        for d in dtypes:
            r = cells.get((op, kind, d))
            row.append("-" if r is None else f"{r['median']:.3g} ({r['loosest']:.3g}, {r['tightest']:.3g})")
        rows.append(row)
    return ["op, kind"] + dtypes, rows


def beyond_rows(results: dict) -> list[list[str]]:
    """Every backend x op x kind x dtype with elements beyond its derived bound."""
    return [[r["backend"], f"{r['op']} {r['kind']}", r["dtype"], f"{r['beyond_bound']} of {r['checked_against_bound']}"]
            for r in results["results"] if r.get("beyond_bound")]


def compute_line(results: dict) -> str:
    parts = []
    for b in results["backends"]:
        formats = b.get("compute_formats") or {}
        if formats:
            parts.append(f"{b['name']}: " + ", ".join(
                f"{d} in {v['format']} ({v['source']})" for d, v in formats.items()))
    return "Bounds assume: " + "; ".join(parts) + "." if parts else ""


def problem_rows(results: dict) -> list[list[str]]:
    rows = [[b["spec"], "unavailable", b["unavailable"]] for b in results["backends"] if b["unavailable"]]
    for r in results["results"]:
        for p in r["problems"][:5]:
            rows.append([r["backend"], f"{r['op']} {r['kind']} {r['dtype']}", p])
    return rows


# --------------------------------------------------------------------------------------------
# The report's content, once: a list of blocks that Markdown and HTML each render.

DISAGREEMENT_HEADER = ["backends", "op", "dtype", "elements that differ", "of", "max ulp apart", "verdict"]


def gap_stratified(results: dict) -> list[tuple[str, str]]:
    """The (op, kind) pairs measured by the gap to the row max (their records' strata), in run order."""
    return list(dict.fromkeys((s["op"], s["kind"]) for s in results["stratified"] if s["by"] == "gap"))


def strata_tables(results: dict) -> list[tuple[str, list, list]]:
    """(title, header, rows): each gap-stratified (op, kind) by the gap, then those ops' values by row length."""
    pairs = gap_stratified(results)
    tables = [(f"{op} {kind}: max ULP by the gap x_max - x_i", *strata_table(results, op, kind, "gap"))
              for op, kind in pairs]
    return tables + [(f"{op} value by row length", *strata_table(results, op, "value", "n"))
                     for op in dict.fromkeys(op for op, _ in pairs)]


def blocks(results: dict, plots=PLOTS) -> list[tuple[str, object]]:
    """("h1" | "h2" | "h3" | "p", text), ("img", (alt, file)) or ("table", (header, rows))."""
    env, t, settings = results["environment"], results["timing"], results["settings"]
    flushing = ", ".join(f"{b['name']} ({', '.join(b['flushes_subnormals'])})" for b in results["backends"]
                         if b["flushes_subnormals"]) or "none here"
    out = [("h1", "xentcheck compare"),
           ("p", f"Backends {', '.join(b['name'] for b in results['backends'])}; ops {', '.join(settings['ops'])}; "
                 f"dtypes {', '.join(settings['dtypes'])}; {settings['cases']} cases, {settings['elements']:,} "
                 f"logits per dtype{' (quick)' if settings['quick'] else ''}."),
           ("p", f"Environment: Python {env.get('python')}, NumPy {env.get('numpy')}, torch {env.get('torch', '-')}, "
                 f"JAX {env.get('jax', '-')}, {env.get('processor') or env.get('machine')} ({env.get('cpus')} CPUs)."),
           ("p", f"Time: {t['total_s']} s in all; the exact oracle {t['oracle_wall_s']} s wall "
                 f"({t['oracle_cpu_s']} s of CPU over the pool, {t['oracle_cached']} of {t['oracle_tasks']} results "
                 f"from the cache)."),
           ("p", "Errors are |got - exact| / ulp(exact) with exact the oracle's value rounded once to the dtype "
                 "(a correctly rounded result scores 0). Backends that flush subnormals to zero (JAX on CPU) are "
                 f"measured with the smallest normal as the ulp floor: {flushing}.")]
    if compute_line(results):
        out.append(("p", compute_line(results)))
    if plots:
        out += [("img", ("ULP error against the gap to the row max", plots[0])),
                ("img", ("Max ULP error per backend, op and dtype", plots[1]))]
    out.append(("h2", "Accuracy"))
    for title, header, rows in accuracy_tables(results):
        out += [("h3", title), ("table", (header, rows))]
    header, rows = slack_rows(results)
    if rows:
        out += [("h2", "Bound slack"),
                ("p", "The derived bound (xentcheck.bounds, for each backend's compute format) divided by the largest "
                      "error torch and JAX show on the same input, against the exact value: per ordinary case (random "
                      "logits of scale 1 to 100, every cross-entropy option, no edge rows), its median (loosest, "
                      "tightest) over the cases. 1 would be a bound that a framework reaches; below 1 it exceeds the bound. Cases where "
                      "both are correctly rounded have no slack to measure."),
                ("table", (header, rows))]
    rows = beyond_rows(results)
    out += [("h2", "Errors beyond the derived bound"),
            ("table", (["backend", "op, kind", "dtype", "elements beyond the bound"], rows)) if rows else
            ("p", "Every backend is within its derived bound on every element (documented departures aside).")]
    out.append(("h2", "Where the error comes from"))
    for title, header, rows in strata_tables(results):
        if rows:
            out += [("h3", title), ("table", (header, rows))]
    rows = disagreement_rows(results)
    out += [("h2", "Disagreements (the oracle decides who is right)"),
            ("table", (DISAGREEMENT_HEADER, rows[:WORST_DISAGREEMENTS])) if rows else
            ("p", "No two backends disagree anywhere.")]
    if len(rows) > WORST_DISAGREEMENTS:
        out.append(("p", f"The {WORST_DISAGREEMENTS} pairs farthest apart of {len(rows)}; every pair is in "
                         "results.json (`disagreements`)."))
    out += [("h2", "Semantics at the edges"), ("table", semantics_rows(results))]
    rows = problem_rows(results)
    if rows:
        out += [("h2", "Problems"), ("table", (["backend", "where", "what"], rows))]
    return out


def _md_table(header, rows) -> str:
    def clean(c):
        return str(c).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(map(clean, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(clean, r)) + " |" for r in rows]
    return "\n".join(lines)


def markdown(results: dict, plots=PLOTS) -> str:
    prefix = {"h1": "# ", "h2": "## ", "h3": "### ", "p": ""}
    out = []
    for kind, content in blocks(results, plots):
        if kind == "table":
            out.append(_md_table(*content))
        elif kind == "img":
            out.append(f"![{content[0]}]({content[1]})")
        else:
            out.append(prefix[kind] + content)
        out.append("")
    return "\n".join(out)


def _html_table(header, rows) -> str:
    e = html.escape
    head = "".join(f"<th>{e(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td{' class=diff' if '[differs' in str(c) else ''}>{e(str(c))}</td>"
                                    for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_report(results: dict, images: dict) -> str:
    """The same content as report.md, self-contained (plots inlined), every string escaped."""
    e = html.escape
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>xentcheck compare</title><style>"
             "body{font:14px/1.4 system-ui,sans-serif;margin:2em;max-width:1400px}"
             "table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 6px;"
             "text-align:left;vertical-align:top}th{background:#f3f3f3}td.diff{background:#fff1d6}"
             "img{max-width:100%}</style></head><body>"]
    for kind, content in blocks(results, tuple(images)):
        if kind == "table":
            parts.append(_html_table(*content))
        elif kind == "img":
            data = base64.b64encode(images[content[1]]).decode()
            parts.append(f"<p><img alt='{e(content[0])}' src='data:image/png;base64,{data}'></p>")
        else:
            parts.append(f"<{kind}>{e(content)}</{kind}>")
    parts.append("</body></html>")
    return "\n".join(parts)


# --------------------------------------------------------------------------------------------
# Plots (matplotlib, the 'plot' extra): None when it is not installed.

def plots(results: dict) -> dict | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    images = {}
    measurements = results.get("_measurements", {})
    dtypes = [d for d in DTYPE_NAMES if d in results["settings"]["dtypes"]]
    fig, axes = plt.subplots(1, len(dtypes), figsize=(4.2 * len(dtypes), 3.6), sharey=True, squeeze=False)
    edges = np.array([0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096])
    shown = (gap_stratified(results) or [(None, None)])[0]  # softmax's value, where the run has it
    for ax, dtype in zip(axes[0], dtypes):
        for (spec, op, kind, d), m in measurements.items():
            if (op, kind) != shown or d != dtype or not m.errors:
                continue
            err, gap = np.concatenate(m.errors), np.concatenate(m.gaps)
            xs, ys = [], []
            for lo, hi in zip(edges[:-1], edges[1:]):
                sel = (gap >= lo) & (gap < hi) & np.isfinite(err)
                if sel.any():
                    xs.append(max(lo, 0.5))
                    ys.append(err[sel].max())
            ax.plot(xs, ys, marker="o", label=m.backend)
        ax.set_xscale("log", base=2)
        ax.set_yscale("symlog", linthresh=1)
        ax.set_title(f"{shown[0]} {shown[1]}, {dtype}")
        ax.set_xlabel("gap x_max - x_i (bin)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("max ULP error (finite)")
    if axes[0][-1].get_legend_handles_labels()[0]:
        axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    images[PLOTS[0]] = _png(fig, plt)

    rows = sorted({(r["backend"], r["dtype"]) for r in results["results"]},
                  key=lambda bd: (bd[0], DTYPE_NAMES.index(bd[1])))
    kinds = ("value", "vjp", "jvp")
    cols = sorted({(r["op"], r["kind"]) for r in results["results"]},  # the contract's order
                  key=lambda ok: (list(OPS).index(ok[0]) if ok[0] in OPS else len(OPS), kinds.index(ok[1])
                                  if ok[1] in kinds else len(kinds)))
    grid = np.full((len(rows), len(cols)), np.nan)
    for r in results["results"]:
        if r["max_ulp"] is not None:
            grid[rows.index((r["backend"], r["dtype"])), cols.index((r["op"], r["kind"]))] = r["max_ulp"]
    fig, ax = plt.subplots(figsize=(1.05 * len(cols) + 4, 0.36 * len(rows) + 2.2))
    shown = np.minimum(np.log10(1 + np.nan_to_num(grid, nan=0, posinf=1e30)), 20)
    image = ax.imshow(shown, cmap="viridis", aspect="auto", vmin=0, vmax=max(float(shown.max()), 1.0))
    for i in range(len(rows)):
        for j in range(len(cols)):
            ax.text(j, i, _fmt(float(grid[i, j])) if np.isfinite(grid[i, j]) or np.isinf(grid[i, j]) else "-",
                    ha="center", va="center", fontsize=9, color="white" if shown[i, j] < 0.6 * shown.max() else "black")
    ax.set_xticks(range(len(cols)), [f"{op.replace('_', ' ')}\n{kind}" for op, kind in cols], fontsize=9,
                  rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(len(rows)), [f"{b} {d}" for b, d in rows], fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.03, pad=0.02, label="log10(1 + max ULP error)")
    ax.set_title("max ULP error against the oracle (numbers: ULPs; '-': not measured)")
    fig.tight_layout()
    images[PLOTS[1]] = _png(fig, plt)
    return images


def _png(fig, plt) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------
# Terminal.

def terminal_summary(results: dict) -> str:
    dtypes = [d for d in DTYPE_NAMES if d in results["settings"]["dtypes"]]
    bw = max([len("backend"), *(len(r["backend"]) for r in results["results"])])
    width = max([len("op"), *(len(r["op"]) for r in results["results"])])
    lines = [f"{'backend':<{bw}} {'op':<{width}} {'kind':<6} " + " ".join(f"{d:>12}" for d in dtypes) + "   (max ULP)"]
    cells = {(r["backend"], r["op"], r["kind"], r["dtype"]): r for r in results["results"]}
    for b, op, kind in dict.fromkeys((r["backend"], r["op"], r["kind"]) for r in results["results"]):
        vals = []
        for d in dtypes:
            r = cells.get((b, op, kind, d))
            vals.append("-" if r is None or r["max_ulp"] is None else
                        _fmt(r["max_ulp"]) + ("!" if r["problems"] else ""))
        lines.append(f"{b:<{bw}} {op:<{width}} {kind:<6} " + " ".join(f"{v:>12}" for v in vals))
    differing = sum(b["differs"] for e in results["semantics"] for b in e["backends"])
    failed = any(r["problems"] for r in results["results"])
    lines.append(f"{len(results['semantics'])} edges compared; {differing} answers differ from the reference "
                 f"(see the report's semantics table)." + (" ! = some cases failed to run." if failed else ""))
    return "\n".join(lines)


def write_all(results: dict, out_dir) -> list[str]:
    from pathlib import Path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images = plots(results)
    written = []
    write_json(results, out / "results.json")
    written.append(str(out / "results.json"))
    if images:
        for name, data in images.items():
            (out / name).write_bytes(data)
            written.append(str(out / name))
    (out / "report.md").write_text(markdown(results, plots=PLOTS if images else None))
    (out / "report.html").write_text(html_report(results, images or {}))
    written += [str(out / "report.md"), str(out / "report.html")]
    return written
