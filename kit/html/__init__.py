"""The HTML kit: what both self-contained report pages are made of (pure, stdlib only).

* :mod:`kit.html.fmt`   - values as page text: escaping, free-text names, numbers, times, days.
* :mod:`kit.html.svg`   - the SVG charts (bars, heat map, columns, timeline, x-y) and the colours.
* :mod:`kit.html.frame` - the page frame: the CSS, the document, sections, contents, figures.

The pages built on it are the collector's regional page (collector/regional_page.py) and one
worker's line page (agent/report/page.py). Each is a single string that opens offline and prints
well: CSS inline in a <style>, charts as inline SVG, no JavaScript, no external URL of any kind (a
Content-Security-Policy in the page forbids loading anything, so a mistake would show as a console
error instead of a silent fetch). The kit is stdlib-only because the lightweight agent renders
its line page with it (``linewatch report``).
"""
