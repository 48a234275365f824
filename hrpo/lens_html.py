"""One self-contained HTML page of latent-lens records (:mod:`hrpo.lens`): no network, inline CSS and JS.

Per prompt, the completion decoded with the latent on and off side by side; per side a summary (thinking length,
completion length, answer, score, mean hidden ratio), an inline SVG plot of the hidden ratio along positions
(the ``####`` boundary drawn), and every token as a ``<span>`` coloured by its hidden ratio ``sqrt(1 - a^2)``
(scaled to the page's largest value, shown in the legend). Answer-phase tokens are underlined, the token that
completes the delimiter is outlined and followed by a boundary mark, and tokens whose fed embedding is nearest
to another token are marked with a dotted underline. Hovering a token shows its details (``a``, hidden ratio,
the latent's top tokens with probabilities, the nearest vocabulary tokens with cosines); a click pins them.

All text goes through :func:`html.escape` (tokens may hold ``<``, ``&`` or quotes); the per-token details
travel as JSON in a ``<script type="application/json">`` block with ``<``, ``>`` and ``&`` escaped, and the
script writes them with ``textContent`` only. When the script has run it sets ``data-lens-ready="1"`` on
``<body>`` (the browser test reads that).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from html import escape
from typing import Any

from hrpo.lens import CompletionRecord, TokenRecord

PLOT_WIDTH, PLOT_HEIGHT, PLOT_PAD, PLOT_LEFT = 560, 120, 28, 46

_CSS = """
:root { --hue: 37, 99, 235; --answer: #15803d; --delim: #b91c1c; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #111827;
       background: #f9fafb; }
header { padding: 12px 20px; background: #fff; border-bottom: 1px solid #e5e7eb; }
h1 { font-size: 20px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 0 0 6px; }
h3 { font-size: 14px; margin: 0 0 6px; }
.meta { color: #4b5563; margin: 0; }
.legend { display: flex; align-items: center; gap: 8px; margin-top: 6px; color: #374151; flex-wrap: wrap; }
.ramp { width: 160px; height: 12px; border: 1px solid #d1d5db;
        background: linear-gradient(to right, rgba(var(--hue), 0.08), rgba(var(--hue), 0.6)); }
.key { padding: 0 4px; border-radius: 3px; }
.layout { display: grid; grid-template-columns: minmax(0, 1fr) 340px; gap: 16px; padding: 16px 20px; }
.item { background: #fff; border: 1px solid #e5e7eb; border-radius: 8px; padding: 12px; margin-bottom: 16px; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; }
.side { min-width: 0; }
.summary { border-collapse: collapse; margin-bottom: 6px; font-size: 13px; }
.summary td { padding: 1px 8px 1px 0; vertical-align: top; }
.summary td:first-child { color: #6b7280; white-space: nowrap; }
.tokens { font: 13px/1.9 ui-monospace, "DejaVu Sans Mono", monospace; white-space: pre-wrap;
          word-break: break-word; border-top: 1px solid #f3f4f6; padding-top: 6px; }
.tok { cursor: pointer; border-radius: 2px; }
.tok:hover, .tok.selected { outline: 2px solid #111827; }
.tok.answer { text-decoration: underline 2px var(--answer); text-underline-offset: 3px; }
.tok.delim { outline: 2px solid var(--delim); }
.tok.differs { text-decoration: underline dotted 2px var(--delim); text-underline-offset: 3px; }
.tok.special { color: #6b7280; font-style: italic; }
.tok.nl::before { content: "\\21b5"; color: #9ca3af; }
.tok.empty::before { content: "\\00b7"; color: #9ca3af; }
.boundary { color: #fff; background: var(--delim); border-radius: 3px; padding: 0 4px; margin: 0 3px;
            font: 11px system-ui, sans-serif; vertical-align: middle; }
svg.plot { display: block; background: #fcfcfd; border: 1px solid #f3f4f6; margin-bottom: 6px; max-width: 100%; }
svg.plot text { font: 10px system-ui, sans-serif; fill: #4b5563; }
#details { position: sticky; top: 12px; align-self: start; background: #fff; border: 1px solid #e5e7eb;
           border-radius: 8px; padding: 12px; font-size: 13px; }
#details table { border-collapse: collapse; width: 100%; margin: 4px 0 8px; }
#details td { padding: 1px 4px; font-family: ui-monospace, "DejaVu Sans Mono", monospace;
              white-space: pre-wrap; word-break: break-all; }
#details td.v { text-align: right; }
.bar { display: inline-block; height: 8px; background: rgba(var(--hue), 0.7); vertical-align: middle; }
.muted { color: #6b7280; }
.yes { color: var(--delim); font-weight: 600; }
pre.question { white-space: pre-wrap; font-size: 12px; background: #f9fafb; padding: 6px; margin: 4px 0 8px; }
"""

_JS = """
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("lens-data").textContent);
  var panel = document.getElementById("details");
  var pinned = null;
  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    if (cls) { node.className = cls; }
    return node;
  }
  function table(title, rows, maxValue, digits) {
    var box = document.createDocumentFragment();
    box.appendChild(el("h3", title));
    var tab = el("table");
    rows.forEach(function (r) {
      var tr = el("tr");
      tr.appendChild(el("td", JSON.stringify(r[0])));
      var bar = el("td");
      var span = el("span", null, "bar");
      span.style.width = Math.max(1, Math.round(60 * Math.max(0, r[1]) / (maxValue || 1))) + "px";
      bar.appendChild(span);
      tr.appendChild(bar);
      tr.appendChild(el("td", r[1].toFixed(digits), "v"));
      tab.appendChild(tr);
    });
    box.appendChild(tab);
    return box;
  }
  function show(node) {
    var side = data.items[+node.dataset.i].sides[node.dataset.s];
    var t = side.tokens[+node.dataset.k];
    panel.textContent = "";
    panel.appendChild(el("h2", "position " + t.k + " \\u00b7 latent " + node.dataset.s));
    var facts = el("table");
    [["token", JSON.stringify(t.tok) + "  (id " + t.id + ")"], ["phase", t.ph],
     ["fed as", t.hy ? "hybrid: a\\u00b7E[y] + \\u221a(1\\u2212a\\u00b2)\\u00b7(i\\u00b7h)" : "plain E[y]"],
     ["a (mean)", t.a.toFixed(4)], ["hidden ratio", t.h.toFixed(4)],
     ["nearest differs", t.diff ? "yes: the fed embedding is nearest to " + JSON.stringify(t.near[0][0]) : "no"]]
      .forEach(function (r) {
        var tr = el("tr");
        tr.appendChild(el("td", r[0], "muted"));
        tr.appendChild(el("td", r[1], r[0] === "nearest differs" && t.diff ? "yes" : null));
        facts.appendChild(tr);
      });
    panel.appendChild(facts);
    panel.appendChild(table("latent top tokens (p)", t.top, t.top.length ? t.top[0][1] : 1, 4));
    panel.appendChild(table("nearest tokens of the fed embedding (cosine)", t.near, 1, 4));
  }
  function select(node, pin) {
    document.querySelectorAll(".tok.selected").forEach(function (n) { n.classList.remove("selected"); });
    node.classList.add("selected");
    if (pin) { pinned = node; }
    show(node);
  }
  document.querySelectorAll(".tok").forEach(function (node) {
    node.addEventListener("mouseenter", function () { if (!pinned) { show(node); } });
    node.addEventListener("click", function () {
      if (pinned === node) { pinned = null; node.classList.remove("selected"); return; }
      select(node, true);
    });
  });
  // Start on the first token whose fed embedding is nearest to another token, else the first hybrid token.
  var first = document.querySelector(".tok.differs") || document.querySelector(".tok.hybrid") ||
              document.querySelector(".tok");
  if (first) { select(first, false); }
  document.body.dataset.lensReady = "1";
})();
"""


def scale_of(records: Sequence[CompletionRecord]) -> tuple[float, float]:
    """``(low, high)``: the range of the hidden ratios of the hybrid tokens on the page (colours and plots).

    A gate gives every token nearly the same share at init and moves it per token as it trains, so the page
    spreads its colours over the range it actually holds; a range narrower than 0.01 is widened to 0.01.
    """
    values = [t.hidden_ratio for r in records for t in r.tokens if t.hybrid]
    if not values:
        return 0.0, 1.0
    low, high = min(values), max(values)
    if high - low < 0.01:
        middle = (high + low) / 2
        low, high = max(0.0, middle - 0.005), middle + 0.005
    return low, high


def _level(value: float, scale: tuple[float, float]) -> float:
    """``value`` on ``scale`` as 0..1 (clamped)."""
    low, high = scale
    return min(max((value - low) / (high - low), 0.0), 1.0)


def _token_span(
    t: TokenRecord, item: int, side: str, scale: tuple[float, float], boundary: int | None
) -> str:
    classes = ["tok", t.phase]
    if t.hybrid:
        classes.append("hybrid")
    if t.position == boundary:
        classes.append("delim")
    if t.nearest_differs:
        classes.append("differs")
    if t.special:
        classes.append("special")
    if t.text == "":
        classes.append("empty")
    elif t.text.startswith("\n"):
        classes.append("nl")
    style = (
        f' style="background-color: rgba(var(--hue), {0.08 + 0.52 * _level(t.hidden_ratio, scale):.3f})"'
        if t.hybrid
        else ""
    )
    title = f"{t.position}: {t.token!r} a={t.a:.3f} hidden={t.hidden_ratio:.3f}"
    span = (
        f'<span class="{" ".join(classes)}" data-i="{item}" data-s="{side}" data-k="{t.position}" '
        f'title="{escape(title, quote=True)}"{style}>{escape(t.text, quote=True)}</span>'
    )
    if t.position == boundary:
        span += '<span class="boundary" title="thinking ends: later tokens are fed as plain embeddings">answer</span>'
    return span


def plot_svg(record: CompletionRecord, scale: tuple[float, float]) -> str:
    """An inline SVG: the hidden ratio of hybrid tokens (y, on ``scale``) along completion positions (x); the
    ``####`` boundary dashed. A completion without hybrid tokens gets a note instead of a line."""
    n = len(record.tokens)
    w, h, pad, left = PLOT_WIDTH, PLOT_HEIGHT, PLOT_PAD, PLOT_LEFT

    def x(k: float) -> float:
        return left + (w - left - pad) * (k / max(n - 1, 1))

    def y(v: float) -> float:
        return h - pad - (h - 2 * pad) * _level(v, scale)

    parts = [
        f'<svg class="plot" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" '
        'xmlns="http://www.w3.org/2000/svg">',
        f"<title>hidden ratio along {n} completion positions (latent {'on' if record.latent else 'off'})</title>",
        f'<line x1="{left}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#9ca3af"/>',
        f'<line x1="{left}" y1="{pad}" x2="{left}" y2="{h - pad}" stroke="#9ca3af"/>',
        f'<text x="{left - 3}" y="{h - pad + 3}" text-anchor="end">{scale[0]:.3f}</text>',
        f'<text x="{left - 3}" y="{pad + 3}" text-anchor="end">{scale[1]:.3f}</text>',
        f'<text x="{w / 2:.0f}" y="{h - 6}" text-anchor="middle">completion position (0..{max(n - 1, 0)})</text>',
        f'<text x="{left + 4}" y="{pad - 10}">hidden ratio \u221a(1\u2212a\u00b2)</text>',
    ]
    if record.boundary is not None:
        bx = x(record.boundary)
        parts.append(
            f'<line class="boundary-line" x1="{bx:.1f}" y1="{pad}" x2="{bx:.1f}" y2="{h - pad}" '
            'stroke="#b91c1c" stroke-dasharray="4 3"/>'
        )
        parts.append(f'<text x="{bx + 3:.1f}" y="{pad + 10}" fill="#b91c1c">{escape("####")}</text>')
    hybrid = [t for t in record.tokens if t.hybrid]
    if hybrid:
        points = " ".join(f"{x(t.position):.1f},{y(t.hidden_ratio):.1f}" for t in hybrid)
        parts.append(
            f'<polyline fill="none" stroke="rgb(37, 99, 235)" stroke-width="1.5" points="{points}"/>'
        )
    else:
        parts.append(
            f'<text x="{w / 2:.0f}" y="{h / 2:.0f}" text-anchor="middle">no hybrid inputs: every token was fed '
            "as its plain embedding</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _summary(record: CompletionRecord) -> str:
    score = (
        "unscored (no gold answer)" if record.correct is None else ("correct" if record.correct else "wrong")
    )
    rows = [
        ("thinking length", f"{record.thinking_length} tokens"),
        ("completion length", f"{len(record.tokens)} tokens (stop: {record.stop_reason})"),
        ("answer", record.answer or "(none)"),
        (
            "score",
            f"{score}; format {'ok (exactly one delimiter)' if record.format_ok else 'not ok (needs exactly one delimiter)'}",
        ),
        (
            "mean hidden ratio",
            f"{record.mean_hidden_ratio:.4f} over {sum(t.hybrid for t in record.tokens)} hybrid tokens",
        ),
        ("nearest differs", f"{record.differs_count} tokens"),
    ]
    cells = "".join(f"<tr><td>{escape(k)}</td><td>{escape(v)}</td></tr>" for k, v in rows)
    return f'<table class="summary">{cells}</table>'


def _side(record: CompletionRecord, item: int, side: str, scale: tuple[float, float]) -> str:
    title = "latent on (hybrid inputs while thinking)" if side == "on" else "latent off (plain token inputs)"
    if side == "on" and not record.latent:
        title = "latent on requested, but there is no gate: plain token inputs"
    spans = "".join(_token_span(t, item, side, scale, record.boundary) for t in record.tokens)
    return (
        f'<div class="side" data-side="{side}"><h3>{escape(title)}</h3>{_summary(record)}'
        f'{plot_svg(record, scale)}<div class="tokens">{spans}</div></div>'
    )


def _token_data(t: TokenRecord) -> dict[str, Any]:
    return {
        "k": t.position,
        "id": t.token_id,
        "tok": t.token,
        "ph": t.phase,
        "hy": t.hybrid,
        "a": t.a,
        "h": t.hidden_ratio,
        "top": [[c.text, c.value] for c in t.latent_top],
        "near": [[c.text, c.value] for c in t.nearest],
        "diff": t.nearest_differs,
    }


def _script_json(data: Any) -> str:
    """JSON that cannot end its ``<script>`` element early (``</script>``, ``<!--``) nor hold raw ``&``."""
    text = json.dumps(data, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_page(
    pairs: Sequence[tuple[CompletionRecord, CompletionRecord]],
    title: str = "hrpo inspect",
    settings: dict[str, Any] | None = None,
) -> str:
    """The whole page for ``(latent on, latent off)`` record pairs; ``settings`` are shown in the header."""
    scale = scale_of([r for pair in pairs for r in pair])
    meta = " \u00b7 ".join(f"{k}: {v}" for k, v in (settings or {}).items())
    items, data = [], []
    for i, (on, off) in enumerate(pairs):
        prompt = on.prompt
        label = prompt.label or f"prompt {i + 1}"
        items.append(
            f'<section class="item" id="item-{i}"><h2>{escape(label)}</h2>'
            f'<details><summary>prompt</summary><pre class="question">{escape(prompt.question or prompt.text)}'
            f"</pre></details>"
            f'<div class="pair">{_side(on, i, "on", scale)}{_side(off, i, "off", scale)}</div></section>'
        )
        data.append(
            {
                "label": label,
                "sides": {
                    s: {"tokens": [_token_data(t) for t in r.tokens]} for s, r in (("on", on), ("off", off))
                },
            }
        )
    legend = (
        f'<div class="legend"><span>hidden ratio of hybrid tokens</span><span>{scale[0]:.4f}</span>'
        f'<span class="ramp"></span><span>{scale[1]:.4f}</span>'
        '<span class="key" style="text-decoration: underline 2px #15803d">answer phase</span>'
        '<span class="key" style="outline: 2px solid #b91c1c">token completing ####</span>'
        '<span class="key" style="text-decoration: underline dotted 2px #b91c1c">nearest token differs</span>'
        '<span class="muted">hover a token for details, click to pin</span></div>'
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head>\n<body>"
        f'<header><h1>{escape(title)}</h1><p class="meta">{escape(meta)}</p>{legend}</header>'
        f'<div class="layout"><main>{"".join(items)}</main>'
        '<aside id="details"><p class="muted">Hover a token to see what the model was fed.</p></aside></div>'
        f'<script type="application/json" id="lens-data">{_script_json({"items": data})}</script>'
        f"<script>{_JS}</script></body></html>\n"
    )
