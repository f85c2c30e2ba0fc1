"""The page frame: the CSS both pages share and the document around a page's body (:func:`page`),
with the pieces every page is built of: sections, a table of contents, facts, figures, paragraphs.

The document's Content-Security-Policy forbids every fetch and every script (see :func:`page`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from kit.html.fmt import esc

# Both pages' styles, for the screen and for print (a page adds its own after these).
_CSS = """
:root{--ink:#1b1f24;--muted:#5b6470;--rule:#e1e5ea;--panel:#f4f6f8;--accent:#1f5f8b}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;color:var(--ink);background:#fff;font:15px/1.5 system-ui,-apple-system,"Segoe UI",
 Roboto,"Noto Sans","DejaVu Sans","Noto Naskh Arabic","Noto Nastaliq Urdu",sans-serif}
.page{max-width:1240px;margin:0 auto;padding:28px 32px 56px}
header h1{font-size:1.75rem;line-height:1.2;margin:0 0 .3rem}
h2{font-size:1.3rem;margin:2.4rem 0 .7rem;padding-bottom:.3rem;border-bottom:2px solid var(--rule)}
h3{font-size:1.05rem;margin:1.6rem 0 .4rem}
h4{font-size:.95rem;margin:1.1rem 0 .3rem}
p,li{max-width:80ch}
.muted,.lede{color:var(--muted)}
code{font-size:.88em;background:var(--panel);padding:0 .25em;border-radius:3px}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.1rem 1.2rem;margin:.8rem 0}
dl.facts dt{color:var(--muted)}dl.facts dd{margin:0}
nav.toc ol{display:flex;flex-wrap:wrap;gap:.2rem 1.4rem;padding:0;margin:1rem 0 0;list-style:none;
 font-size:.9rem}
nav.toc a{color:var(--accent)}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-variant-numeric:tabular-nums;font-size:.85rem;margin:.4rem 0}
caption{text-align:left;color:var(--muted);font-size:.85rem;padding:.2rem 0}
th,td{padding:.32rem .55rem;border-bottom:1px solid var(--rule);text-align:left;vertical-align:top}
thead th{background:var(--panel);border-bottom:2px solid #c3cad2;vertical-align:bottom;
 font-weight:600}
.n,.nw{white-space:nowrap}.n{text-align:right}
table.figures{font-size:.82rem}
table.figures thead th{white-space:normal;min-width:4.2em}
table.figures th,table.figures td{padding:.3rem .45rem}
table.dense td{padding:.12rem .55rem}
.code{display:block;font-size:.75rem;color:var(--muted);font-weight:400}
.pair{display:grid;grid-template-columns:repeat(auto-fit,minmax(440px,1fr));gap:0 2rem}
tbody th{font-weight:600}
.ci{display:block;font-size:.72rem;color:var(--muted);font-weight:400}
td.suppressed{color:var(--muted);font-style:italic}
abbr[title]{text-decoration:underline dotted;cursor:help}
/* A region page can hold hundreds of charts: let the browser skip laying out those off screen. */
figure{margin:.8rem 0 1.4rem;content-visibility:auto;contain-intrinsic-size:auto 300px}
figcaption{font-size:.85rem;color:var(--muted);margin-top:.25rem;max-width:80ch}
svg.chart{display:block;max-width:100%;height:auto}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(165px,1fr));gap:.7rem;margin:1rem 0}
.card{border:1px solid var(--rule);border-radius:8px;padding:.7rem .9rem;background:var(--panel)}
.card .k{font-size:.8rem;color:var(--muted);text-transform:uppercase;letter-spacing:.03em}
.card .v{font-size:1.45rem;font-weight:650;line-height:1.25;white-space:nowrap}
.card .s{font-size:.85rem;color:var(--muted)}
.note{border-left:4px solid var(--accent);background:#eef4f9;padding:.7rem 1.1rem;margin:1rem 0}
.note p{margin:.45rem 0}
footer{margin-top:3rem;color:var(--muted);font-size:.8rem;border-top:1px solid var(--rule);
 padding-top:.6rem}
@media print{
 @page{margin:12mm}
 body{font-size:10pt;background:#fff;color:#000}
 .page{max-width:none;padding:0}
 nav.toc{display:none}
 .scroll{overflow:visible}
 figure,table,.card,.cards,.note,tr{break-inside:avoid;page-break-inside:avoid}
 h2,h3,h4{break-after:avoid;page-break-after:avoid}
 thead{display:table-header-group}
 thead th,.card,.note,code{background:none}
 abbr[title]{text-decoration:none}
 .cards{grid-template-columns:repeat(3,1fr)}
 a{color:inherit;text-decoration:none}
 *{-webkit-print-color-adjust:exact;print-color-adjust:exact}
}
"""


def page(title: str, body: str, extra_css: str = "") -> str:
    """The whole document: ``body`` inside the frame, ``extra_css`` after the shared styles."""
    # The CSP forbids every fetch (data: only, for the empty favicon that keeps the browser from
    # asking the file system for one) and every script: the page cannot phone home, and an
    # escaping slip could not run code.
    return ("<!DOCTYPE html>\n"
            '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
            "style-src 'unsafe-inline'; img-src data:\">\n"
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            '<meta name="generator" content="linewatch">\n'
            '<link rel="icon" href="data:,">\n'
            f"<title>{esc(title)}</title>\n<style>{_CSS}{extra_css}</style>\n</head>\n"
            f'<body>\n<div class="page">\n{body}\n</div>\n</body>\n</html>\n')


def section(sid: str, heading: str, content: str) -> str:
    """A <section> with id ``sid`` under its <h2> heading (the contents link to it)."""
    return (f'<section id="{sid}" aria-labelledby="{sid}-h">\n'
            f'<h2 id="{sid}-h">{esc(heading)}</h2>\n{content}\n</section>\n')


def toc(items: Sequence[tuple[str, str]]) -> str:
    """The contents: a link for each (section id, heading)."""
    links = "".join(f'<li><a href="#{sid}">{esc(h)}</a></li>' for sid, h in items)
    return f'<nav class="toc" aria-label="Contents"><ol>{links}</ol></nav>'


def facts(rows: Iterable[tuple[str, str]]) -> str:
    """A definition list; values are HTML already (escaped by the caller)."""
    return '<dl class="facts">' + "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>"


def figure(svg: str, caption: str) -> str:
    """A chart with its caption (plain text, escaped here)."""
    return f"<figure>{svg}<figcaption>{esc(caption)}</figcaption></figure>"


def paragraphs(paras: object) -> str:
    """One string or a list of them as <p> paragraphs (escaped; empty ones left out); anything
    else -> ""."""
    if isinstance(paras, str):
        paras = [paras]
    if not isinstance(paras, (list, tuple)):
        return ""
    return "\n".join(f"<p>{esc(p)}</p>" for p in paras if p)
