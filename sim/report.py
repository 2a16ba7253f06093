"""The run report: ``report/index.html``, one self-contained page (its plots inlined as PNG
data), the same PNGs beside it, and ``result.json`` with every figure the plots show.

Plots (matplotlib): accuracy per round per vehicle against the local-only and central
baselines; bytes per vehicle per round; the round-time breakdown; the events and their
recoveries on a timeline. Tables: events with their recovery times, alarms raised and cleared.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from models.atomic import atomic_write_bytes

PARTS = ("train_s", "exchange_s", "merge_s", "commit_s")  # the rest of round_s is waiting
DPI = 100


def write(result: dict[str, Any], out: Path) -> Path:
    """Write ``out/result.json`` and ``out/report/``; the page's path."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    folder = out / "report"
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "result.json", json.dumps(result, indent=1).encode())
    figures = {"accuracy": _accuracy(result), "bytes": _bytes(result),
               "round_time": _round_time(result), "timeline": _timeline(result)}
    for name, png in figures.items():
        atomic_write_bytes(folder / f"{name}.png", png)
    page = folder / "index.html"
    atomic_write_bytes(page, _page(result, figures).encode())
    return page


# --- plots --------------------------------------------------------------------------------------

def _figure() -> tuple[Any, Any]:
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(8, 4), dpi=DPI)


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _accuracy(r: dict[str, Any]) -> bytes:
    fig, ax = _figure()
    _per_vehicle(ax, [(a["vehicle"], a["round"], a["accuracy"]) for a in r["accuracy"]])
    base = r.get("baselines")
    if base:
        ax.axhline(base["central_acc"], color="black", ls="--", label="central")
        ax.axhline(base["local_acc_mean"], color="grey", ls=":", label="local only (mean)")
    ax.set(xlabel="round", ylabel="accuracy on the fleet-wide test set",
           title="The model each vehicle serves")
    ax.legend(fontsize=7, ncol=2)
    return _png(fig)


def _bytes(r: dict[str, Any]) -> bytes:
    fig, ax = _figure()
    _per_vehicle(ax, [(m["vehicle"], m["round"], (m["bytes_sent"] + m["bytes_received"]) / 1e3)
                      for m in r["round_reports"] if "bytes_sent" in m])
    ax.set(xlabel="round", ylabel="kB sent + received",
           title="Bytes per vehicle per round (libp2p payloads)")
    ax.legend(fontsize=7, ncol=2)
    return _png(fig)


def _per_vehicle(ax: Any, points: list[tuple[int, int, float]]) -> None:
    """One line per vehicle through its (round, value) points."""
    by_vehicle: dict[int, list[tuple[int, float]]] = defaultdict(list)
    for vehicle, round_, value in points:
        by_vehicle[vehicle].append((round_, value))
    for v, line in sorted(by_vehicle.items()):
        line.sort()
        ax.plot([p[0] for p in line], [p[1] for p in line], marker=".", lw=1,
                label=f"vehicle {v}")


def _round_time(r: dict[str, Any]) -> bytes:
    fig, ax = _figure()
    table = round_time_table(r)
    rounds = sorted(table)
    bottom = [0.0] * len(rounds)
    for part in (*PARTS, "waiting_s"):
        values = [table[n][part] for n in rounds]
        ax.bar(rounds, values, bottom=bottom, label=part.removesuffix("_s"))
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set(xlabel="round", ylabel="seconds (mean over vehicles)",
           title="Where each round's time went")
    ax.legend(fontsize=7)
    return _png(fig)


def round_time_table(r: dict[str, Any]) -> dict[int, dict[str, float]]:
    """Per round, the mean over vehicles of each part of the round's time; ``waiting_s`` is
    what the parts leave of ``round_s``."""
    sums: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    counts: dict[int, int] = defaultdict(int)
    for m in r["round_reports"]:
        if "round_s" not in m:
            continue
        counts[m["round"]] += 1
        s = sums[m["round"]]
        for part in PARTS:
            s[part] += m[part]
        s["waiting_s"] += max(0.0, m["round_s"] - sum(m[p] for p in PARTS))
    return {n: {k: v / counts[n] for k, v in s.items()} for n, s in sums.items()}


def _timeline(r: dict[str, Any]) -> bytes:
    fig, ax = _figure()
    times = [0.0, *(x["t"] for x in r["rounds"])]
    ax.step(times, [0, *(x["round"] + 1 for x in r["rounds"])], where="post", color="black",
            label="final rounds")
    top = max([x["round"] + 1 for x in r["rounds"]] or [1])
    for k, e in enumerate(r["events"]):
        y = top * (0.15 + 0.8 * (k + 1) / (len(r["events"]) + 1))
        end = e["recovered_t"] if e["recovered_t"] is not None else e["t"]
        ax.plot([e["t"], end], [y, y], lw=4, color="tab:red" if e["recovered_t"] is None
                else "tab:orange")
        ax.annotate(e["what"], (e["t"], y), textcoords="offset points", xytext=(0, 4),
                    fontsize=7)
    ax.set(xlabel="seconds since the fleet started", ylabel="final rounds",
           title="Events (bar: until recovered) and the chain's progress")
    return _png(fig)


# --- page ---------------------------------------------------------------------------------------

def _page(r: dict[str, Any], figures: dict[str, bytes]) -> str:
    e = html.escape
    final = r.get("final") or {}
    head = [f"<h1>swarmdrive run: {e(r['scenario'])}</h1>",
            f"<p>{len(r['vehicles'])} vehicles, {len(r['rounds'])} rounds final in "
            f"{r['seconds']:.0f} s. "]
    if r.get("failure"):
        head.append(f"<strong class=bad>The run failed: {e(r['failure'])}</strong>")
    elif final:
        agree = "every running vehicle serves" if final["all_serve_expected"] \
            else "<strong class=bad>not every running vehicle serves</strong>"
        head.append(f"Final model on chain {e(final['chain_model_hash'][:12])}; {agree} "
                    f"{e(final['expected'])}.")
    head.append("</p>")
    base = r.get("baselines")
    if base:
        head.append(f"<p>Baselines: central {base['central_acc']:.3f}, each vehicle alone "
                    f"{base['local_acc_mean']:.3f} on average (worst "
                    f"{base['local_acc_min']:.3f}).</p>")
    plots = "".join(
        f'<figure><img alt="{name}" src="data:image/png;base64,'
        f'{base64.b64encode(png).decode()}"></figure>' for name, png in figures.items())
    events = _table(("seconds", "round", "event", "recovered after", "recovery"), [
        (f"{x['t']:.1f}", x["round"], x["what"],
         "not recovered" if x["recovery_s"] is None else f"{x['recovery_s']:.1f} s",
         x["recovery"]) for x in r["events"]])
    alarms = _table(("vehicle", "alarm", "raised or cleared", "detail"), [
        (a["vehicle"], a["alarm"], "raised" if a["active"] else "cleared", a["detail"])
        for a in r["alarms"]])
    memory = _table(("vehicle", "learner RSS MB", "server RSS MB"), [
        (v, m["learn_rss_mb"], m["serve_rss_mb"]) for v, m in sorted(r["memory"].items())])
    return (f"<!doctype html><html><head><meta charset=utf-8><title>swarmdrive: "
            f"{e(r['scenario'])}</title><style>{STYLE}</style></head><body>"
            f"{''.join(head)}{plots}<h2>Events and recoveries</h2>{events}"
            f"<h2>Alarms</h2>{alarms}<h2>Memory (last status)</h2>{memory}{COUNT_PLOTS}"
            "</body></html>")


def _table(header: tuple[str, ...], rows: list[tuple[object, ...]]) -> str:
    if not rows:
        return "<p>None.</p>"
    e = html.escape
    th = "".join(f"<th>{e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


# Marks on <body> how many plots the browser decoded (tests/sim/test_scenario.py reads it).
COUNT_PLOTS = ('<script>addEventListener("load", () => {document.body.dataset.plots = '
               '[...document.images].filter(i => i.complete && i.naturalWidth > 0).length})'
               '</script>')
STYLE = ("body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
         "img{max-width:100%}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
         "padding:2px 6px;font-size:90%}.bad{color:#b00}")
