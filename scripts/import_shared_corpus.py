"""Copy the shared corpus (../shared/corpus) into corpus/ with a metadata file; run once by maintainers."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

SEEDS = {
    "psykosocialt-stod-vid-cancer.txt": {
        "title": "Psykosocialt stöd vid cancer (svar på skriftlig fråga 2019/20:430)",
        "publisher": "Regeringen (Socialdepartementet), Lena Hallengren",
        "date": "2019-11-27",
        # Reconstructed from the Riksdag's document id for question 2019/20:430 (H711430 -> answer H712430).
        "url": "https://www.riksdagen.se/sv/dokument-och-lagar/dokument/svar-pa-skriftlig-fraga/psykosocialt-stod-vid-cancer_H712430/",
    },
    "overenskommelse-cancervard-2024.txt": {
        "title": "Regeringen och SKR överens om 809 miljoner till cancervården",
        "publisher": "Regionala cancercentrum i samverkan (cancercentrum.se)",
        "date": "2023-12-21",
        "url": "https://cancercentrum.se/samverkan/om-oss/nyheter/2023/december/regeringen-och-skr-overens-om-809-miljoner-till-cancervarden/",
    },
    "skr-cancervard.txt": {
        "title": "Cancervård",
        "publisher": "Sveriges Kommuner och Regioner (SKR)",
        "date": "2023-04-25",
        "url": "https://skr.se/skr/halsasjukvard/kunskapsstodvardochbehandling/cancervard.html",
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[1] / ".." / "shared")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "corpus")
    args = parser.parse_args()
    src = args.shared / "corpus"
    rows = []
    (args.out / "seeds").mkdir(parents=True, exist_ok=True)
    for name, meta in SEEDS.items():
        shutil.copyfile(src / "seeds" / name, args.out / "seeds" / name)
        rows.append({"path": f"seeds/{name}", **meta})
    for line in (src / "regeringen" / "regeringen_cancer_pages.jsonl").read_text(encoding="utf-8").splitlines():
        page = json.loads(line)
        rel = Path("regeringen") / (page["id"].split(":", 1)[1] + ".md")
        (args.out / rel).parent.mkdir(parents=True, exist_ok=True)
        (args.out / rel).write_text(page["text"], encoding="utf-8")
        rows.append({
            "path": rel.as_posix(),
            "title": page["title"],
            "publisher": "Regeringskansliet / regeringen.se",
            # Most pages carry only their month in the scrape; the month is the honest date then.
            "date": page["published"] or page["year_month"],
            "url": page["url"],
            "section": page["section"],
        })
    with open(args.out / "metadata.jsonl", "w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{len(rows)} documents -> {args.out}")


if __name__ == "__main__":
    main()
