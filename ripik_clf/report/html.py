"""``report.html``: the report as one self-contained page (figures inline as PNG data),
to look at rather than read: the text of ``report.md`` with every figure in place, the
runs table and the training curves.

The markdown this renders is the report's own (headings, paragraphs, lists, tables,
bold, code): a small renderer, not a Markdown library, because the report writes only
these forms.
"""

import base64
import html
import re

from ripik_clf.atomic import written

# A self-check the browser runs: every figure decoded (checked headless in
# benchmarks/report_browser.py, which reads the attribute back from the page).
SELF_CHECK = """<script>
window.addEventListener("load", () => {
  const images = [...document.images];
  const shown = images.filter((i) => i.complete && i.naturalWidth > 0).length;
  document.body.dataset.figures = shown + "/" + images.length;
});
</script>"""
STYLE = """<style>
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; }
td { text-align: right; } td:first-child { text-align: left; }
th { background: #f0f3f7; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { color: #555; font-size: 0.9em; }
code { background: #f4f4f4; padding: 0 0.2em; }
.kept { color: #a15c00; }
</style>"""


def render_page(title, markdown_lines, sections):
    """The page: ``markdown_lines`` rendered, then ``sections`` (``[(heading, html)]``)."""
    body = [markdown_to_html(markdown_lines)]
    for heading, content in sections:
        body.append(f"<h2>{html.escape(heading)}</h2>\n{content}")
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>{STYLE}</head>\n<body>\n"
        + "\n".join(body)
        + f"\n{SELF_CHECK}\n</body></html>\n"
    )


def figure(path, caption):
    """An ``<img>`` holding the PNG at ``path`` itself (base64), with its caption."""
    data = base64.b64encode(written(path).read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def table(columns, rows, row_class=None):
    """An HTML table; ``row_class(row)`` may name a CSS class per row."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    lines = [f"<table><tr>{head}</tr>"]
    for row in rows:
        cls = row_class(row) if row_class else None
        attribute = f' class="{cls}"' if cls else ""
        cells = "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row)
        lines.append(f"<tr{attribute}>{cells}</tr>")
    return "\n".join(lines + ["</table>"])


def _cell(value):
    if value is None or (isinstance(value, float) and value != value):  # NaN
        return ""
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def markdown_to_html(lines):
    """The report's markdown forms as HTML: ``#`` headings, ``|`` tables, ``-`` lists,
    paragraphs; ``**bold**``, `` `code` `` and ``[text](link)`` inside them."""
    lines = [part for line in lines for part in str(line).split("\n")]  # tables come whole
    out, i = [], 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{_inline(line[level:].strip())}</h{level}>")
            i += 1
        else:
            kind = "|" if line.startswith("|") else "-" if line.startswith("- ") else ""
            block = []
            while i < len(lines) and lines[i].strip() and _kind(lines[i]) == kind:
                block.append(lines[i])
                i += 1
            out.append(_block(kind, block))
    return "\n".join(out)


def _kind(line):
    if line.startswith("#"):
        return "#"
    return "|" if line.startswith("|") else "-" if line.startswith("- ") else ""


def _block(kind, block):
    if kind == "-":
        return "<ul>" + "".join(f"<li>{_inline(b[2:])}</li>" for b in block) + "</ul>"
    if kind == "|":
        rows = [[c.strip() for c in b.strip().strip("|").split("|")] for b in block]
        rows = [r for r in rows if not all(set(c) <= set("-:") for c in r)]  # the rule
        head = "".join(f"<th>{_inline(c)}</th>" for c in rows[0])
        body = ["<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in rows[1:]]
        return f"<table><tr>{head}</tr>" + "".join(body) + "</table>"
    return f"<p>{_inline(' '.join(block))}</p>"


def _inline(text):
    text = html.escape(text, quote=False)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", r'<a href="\2">\1</a>', text)
