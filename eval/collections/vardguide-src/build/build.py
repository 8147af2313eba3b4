#!/usr/bin/env python3
"""Build the vardguide test collection from the Markdown-like sources in src/.

Each source has a front matter block (slug, format, title, publisher, date, url)
and a body in a small Markdown subset: '#'/'##' headings, paragraphs, '- ' lists
and pipe tables. Output:
  docs/md/<slug>.md      for format md
  docs/html/<slug>.html  full web pages for format html
  docs/pdf/<slug>.pdf    printed with headless Chromium from vardguide-src/<slug>.html
"""
import html
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE / "src"
OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/work/main/eval/collections/vardguide")
PDFSRC = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("/work/main/eval/collections/vardguide-src")
DOCS = OUT / "docs"

MONTHS = ["januari", "februari", "mars", "april", "maj", "juni", "juli", "augusti",
          "september", "oktober", "november", "december"]


def sv_date(iso):
    y, m, d = iso.split("-")
    return f"{int(d)} {MONTHS[int(m) - 1]} {y}"


def parse(path):
    text = path.read_text(encoding="utf-8")
    assert text.startswith("---\n")
    head, body = text[4:].split("\n---\n", 1)
    meta = {}
    for line in head.splitlines():
        k, v = line.split(":", 1)
        meta[k.strip()] = v.strip()
    return meta, body.strip("\n")


def blocks(body):
    """Yield (kind, payload): ('h', level, text), ('p', text), ('ul', [items]), ('table', rows)."""
    out = []
    for chunk in body.split("\n\n"):
        lines = [l for l in chunk.split("\n") if l.strip()]
        if not lines:
            continue
        first = lines[0]
        if first.startswith("#"):
            level = len(first) - len(first.lstrip("#"))
            out.append(("h", level, first[level:].strip()))
            assert len(lines) == 1, chunk
        elif first.startswith("- "):
            assert all(l.startswith("- ") for l in lines), chunk
            out.append(("ul", [l[2:].strip() for l in lines]))
        elif first.startswith("|"):
            rows = []
            for l in lines:
                cells = [c.strip() for c in l.strip().strip("|").split("|")]
                if all(set(c) <= set("-: ") for c in cells):
                    continue
                rows.append(cells)
            out.append(("table", rows))
        else:
            out.append(("p", " ".join(l.strip() for l in lines)))
    return out


def to_html(bl, skip_h1=False):
    e = html.escape
    parts = []
    for b in bl:
        if b[0] == "h":
            if skip_h1 and b[1] == 1:
                continue
            parts.append(f"<h{b[1]}>{e(b[2])}</h{b[1]}>")
        elif b[0] == "p":
            parts.append(f"<p>{e(b[1])}</p>")
        elif b[0] == "ul":
            items = "\n".join(f"  <li>{e(i)}</li>" for i in b[1])
            parts.append(f"<ul>\n{items}\n</ul>")
        elif b[0] == "table":
            head, *rows = b[1]
            th = "".join(f"<th scope=\"col\">{e(c)}</th>" for c in head)
            trs = "\n".join("    <tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows)
            parts.append(f"<table>\n  <thead><tr>{th}</tr></thead>\n  <tbody>\n{trs}\n  </tbody>\n</table>")
    return "\n".join(parts)


SITES = {
    "Region Exempelland": {
        "domain": "https://www.exempelland.se",
        "logo": "Region Exempelland",
        "nav": [("Hitta vård", "/hitta-vard/"), ("Hälsa och vård", "/halsa-och-vard/"),
                ("Cancervård", "/patient/cancer/"), ("Patientavgifter", "/patientavgifter/"),
                ("E-tjänster", "/e-tjanster/"), ("Om regionen", "/om-regionen/")],
        "footer": [
            "Region Exempelland",
            "Postadress: Box 1000, 123 45 Exempelstad",
            "Besöksadress: Regionens hus, Storgatan 1, Exempelstad",
            "Telefon växel: 010-100 00 00",
            "E-post: region@exempelland.se",
            "Organisationsnummer: 232100-0000",
        ],
    },
    "Vårdguiden Exempel": {
        "domain": "https://www.vardguiden-exempel.se",
        "logo": "Vårdguiden Exempel",
        "nav": [("Sjukdomar och besvär", "/sjukdomar/"), ("Barn och föräldrar", "/barn/"),
                ("Cancer", "/cancer/"), ("Tandvård", "/tandvard/"), ("Så fungerar vården", "/varden/"),
                ("Logga in i e-tjänster", "/e-tjanster/")],
        "footer": [
            "Vårdguiden Exempel drivs av Region Exempelland",
            "Sjukvårdsrådgivning dygnet runt: ring 1177",
            "Redaktionen: redaktionen@vardguiden-exempel.se",
            "Postadress: Vårdguiden Exempel, Box 1000, 123 45 Exempelstad",
            "Vid livshotande tillstånd, ring 112",
        ],
    },
    "Exempelkommunen": {
        "domain": "https://www.exempelkommunen.se",
        "logo": "Exempelkommunen",
        "nav": [("Förskola och skola", "/skola/"), ("Omsorg och stöd", "/omsorg/"),
                ("Ung i Exempelkommunen", "/ung/"), ("Fritid och kultur", "/fritid/"),
                ("Kommun och politik", "/kommun/")],
        "footer": [
            "Exempelkommunen",
            "Kontaktcenter: 0123-400 00, vardagar 8–17",
            "E-post: kontaktcenter@exempelkommunen.se",
            "Besöksadress: Stadshuset, Torget 1, Exempelstad",
            "Postadress: 123 80 Exempelstad",
        ],
    },
}

WEB_CSS = """
body{font-family:Arial,Helvetica,sans-serif;margin:0;color:#1b1b1b;line-height:1.55}
header.site{background:#003b5c;color:#fff;padding:12px 24px}
header.site a{color:#fff}
nav ul{list-style:none;margin:0;padding:0;display:flex;flex-wrap:wrap;gap:18px}
#cookie-banner{background:#fff6d5;border-bottom:1px solid #d8c46a;padding:12px 24px}
main{max-width:760px;margin:0 auto;padding:16px 24px}
.breadcrumbs{font-size:.9em}
table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #999;padding:6px 8px;text-align:left;vertical-align:top}
.share{border-top:1px solid #ccc;margin-top:2em;padding-top:1em}
footer.site{background:#eef2f5;padding:20px 24px;margin-top:40px;font-size:.92em}
"""


def web_page(meta, bl):
    site = SITES[meta["publisher"]]
    e = html.escape
    nav = "\n".join(f'      <li><a href="{site["domain"]}{href}">{e(t)}</a></li>' for t, href in site["nav"])
    footer = "\n".join(f"      <li>{e(l)}</li>" for l in site["footer"])
    url = meta["url"]
    share_url = html.escape(url, quote=True)
    article = to_html(bl)
    return f"""<!DOCTYPE html>
<html lang="sv">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{e(meta["title"])} - {e(site["logo"])}</title>
  <meta name="description" content="{e(meta["title"])}">
  <link rel="canonical" href="{share_url}">
  <style>{WEB_CSS}</style>
  <script>
    function acceptCookies(level) {{
      document.getElementById('cookie-banner').style.display = 'none';
      try {{ localStorage.setItem('cookie-consent', level); }} catch (e) {{}}
    }}
  </script>
</head>
<body>
  <div id="cookie-banner" role="region" aria-label="Kakor">
    <p><strong>Vi använder kakor (cookies)</strong></p>
    <p>Webbplatsen använder nödvändiga kakor för att fungera. Med ditt samtycke använder vi även kakor för statistik, så att vi kan förbättra webbplatsen.</p>
    <button type="button" onclick="acceptCookies('all')">Godkänn alla kakor</button>
    <button type="button" onclick="acceptCookies('necessary')">Endast nödvändiga</button>
    <a href="{site["domain"]}/om-webbplatsen/kakor/">Läs mer om kakor</a>
  </div>
  <header class="site">
    <a class="logo" href="{site["domain"]}/">{e(site["logo"])}</a>
    <a class="skip" href="#innehall">Hoppa till innehållet</a>
    <form class="search" action="{site["domain"]}/sok/" role="search">
      <label for="q">Sök på webbplatsen</label>
      <input id="q" name="q" type="search">
      <button type="submit">Sök</button>
    </form>
    <nav aria-label="Huvudmeny">
    <ul>
{nav}
    </ul>
    </nav>
  </header>
  <main id="innehall">
    <p class="breadcrumbs"><a href="{site["domain"]}/">Start</a> / {e(meta["title"])}</p>
    <article>
{article}
    <p class="updated">Senast uppdaterad: {sv_date(meta["date"])}. Publicerad av {e(meta["publisher"])}.</p>
    </article>
    <aside class="share" aria-label="Dela sidan">
      <h2>Dela sidan</h2>
      <ul>
        <li><a href="https://www.facebook.com/sharer/sharer.php?u={share_url}">Dela på Facebook</a></li>
        <li><a href="https://www.linkedin.com/sharing/share-offsite/?url={share_url}">Dela på LinkedIn</a></li>
        <li><a href="mailto:?subject={e(meta["title"])}&amp;body={share_url}">Skicka med e-post</a></li>
        <li><a href="javascript:window.print()">Skriv ut</a></li>
      </ul>
      <p>Hittade du det du letade efter? <a href="{site["domain"]}/synpunkter/">Lämna synpunkter på sidan</a></p>
    </aside>
  </main>
  <footer class="site">
    <h2>Kontakt</h2>
    <ul>
{footer}
    </ul>
    <p><a href="{site["domain"]}/tillganglighet/">Tillgänglighetsredogörelse</a> · <a href="{site["domain"]}/om-webbplatsen/kakor/">Om kakor</a> · <a href="{site["domain"]}/personuppgifter/">Så behandlar vi personuppgifter</a></p>
  </footer>
</body>
</html>
"""


PRINT_CSS = """
@page { size: A4; margin: 22mm 20mm 22mm 20mm; }
body { font-family: 'DejaVu Serif', 'Liberation Serif', serif; font-size: 11pt; line-height: 1.45; color: #111; }
.pub { font-family: 'DejaVu Sans', sans-serif; font-size: 9pt; color: #003b5c; border-bottom: 2px solid #003b5c; padding-bottom: 4px; margin-bottom: 14px; }
h1 { font-family: 'DejaVu Sans', sans-serif; font-size: 20pt; color: #003b5c; margin: 0 0 10px 0; }
h2 { font-family: 'DejaVu Sans', sans-serif; font-size: 13pt; color: #003b5c; margin: 16px 0 4px 0; }
p { margin: 0 0 8px 0; }
ul { margin: 0 0 8px 0; }
table { border-collapse: collapse; width: 100%; margin: 8px 0 12px 0; font-size: 10pt; }
td, th { border: 1px solid #777; padding: 4px 6px; text-align: left; vertical-align: top; }
th { background: #e4edf2; }
.colophon { margin-top: 18px; border-top: 1px solid #999; padding-top: 6px; font-family: 'DejaVu Sans', sans-serif; font-size: 8.5pt; color: #333; }
"""


def print_page(meta, bl):
    e = html.escape
    site = SITES[meta["publisher"]]
    contact = " · ".join(e(l) for l in site["footer"][:4])
    return f"""<!DOCTYPE html>
<html lang="sv">
<head>
<meta charset="utf-8">
<title>{e(meta["title"])}</title>
<style>{PRINT_CSS}</style>
</head>
<body>
<div class="pub">{e(meta["publisher"])} · Patientinformation</div>
{to_html(bl)}
<div class="colophon">
<p>Utgiven av {e(meta["publisher"])}, {sv_date(meta["date"])}. Webbversion: {e(meta["url"])}</p>
<p>{contact}</p>
</div>
</body>
</html>
"""


def md_doc(meta, body):
    bl_lines = body.split("\n")
    assert bl_lines[0].startswith("# ")
    byline = f"Senast uppdaterad {sv_date(meta['date'])}. Publicerad av {meta['publisher']}."
    return "\n".join([bl_lines[0], "", byline] + bl_lines[1:]) + "\n"


def main():
    chromium = "/usr/bin/chromium"
    metas = []
    for path in sorted(SRC.glob("*.md")):
        meta, body = parse(path)
        bl = blocks(body)
        assert bl[0][0] == "h" and bl[0][1] == 1 and bl[0][2] == meta["title"], (path, bl[0])
        fmt = meta["format"]
        if fmt == "md":
            rel = f"md/{meta['slug']}.md"
            (DOCS / "md").mkdir(parents=True, exist_ok=True)
            (DOCS / rel).write_text(md_doc(meta, body), encoding="utf-8")
        elif fmt == "html":
            rel = f"html/{meta['slug']}.html"
            (DOCS / "html").mkdir(parents=True, exist_ok=True)
            (DOCS / rel).write_text(web_page(meta, bl), encoding="utf-8")
        elif fmt == "pdf":
            rel = f"pdf/{meta['slug']}.pdf"
            (DOCS / "pdf").mkdir(parents=True, exist_ok=True)
            PDFSRC.mkdir(parents=True, exist_ok=True)
            src_html = PDFSRC / f"{meta['slug']}.html"
            src_html.write_text(print_page(meta, bl), encoding="utf-8")
            out_pdf = (DOCS / rel).resolve()
            subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                            "--no-pdf-header-footer", f"--print-to-pdf={out_pdf}",
                            f"file://{src_html.resolve()}"],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            assert out_pdf.exists() and out_pdf.stat().st_size > 1000, out_pdf
        else:
            raise ValueError(fmt)
        metas.append({"path": rel, "title": meta["title"], "publisher": meta["publisher"],
                      "date": meta["date"], "url": meta["url"]})
        print(fmt, rel)
    with open(DOCS / "metadata.jsonl", "w", encoding="utf-8") as f:
        for m in metas:
            f.write(json.dumps(m, ensure_ascii=False) + "\n")
    print(len(metas), "documents")


if __name__ == "__main__":
    main()
