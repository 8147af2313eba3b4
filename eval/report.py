"""Eval reports a maintainer can look at: a printed table, a failures file and PNG plots."""

from __future__ import annotations

import math
from pathlib import Path

from eval.run_gold import QuestionResult


def format_table(rows: dict[str, float], title: str = "") -> str:
    width = max((len(k) for k in rows), default=10)
    lines = [title] if title else []
    for key, value in rows.items():
        if isinstance(value, float):
            shown = "n/a" if math.isnan(value) else (f"{value:.1f}" if key.endswith("_ms") else f"{value:.3f}")
        else:
            shown = str(value)
        lines.append(f"  {key:<{width}}  {shown}")
    return "\n".join(lines)


def plot(results: list[QuestionResult], path: Path) -> Path:
    """Recall@k curve (k = 1..10) and the distribution of P(answerable) for answerable vs unanswerable questions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    answerable = [r for r in results if r.item.answerable]
    ks = list(range(1, 11))
    recall = [sum(1 for r in answerable if r.relevant_rank and r.relevant_rank <= k) / max(1, len(answerable)) for k in ks]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(ks, recall, marker="o")
    ax1.set_xlabel("k")
    ax1.set_ylabel("Recall@k")
    ax1.set_ylim(0, 1.02)
    ax1.set_xticks(ks)
    ax1.grid(alpha=0.3)
    ax1.set_title(f"Recall@k ({len(answerable)} answerable questions)")
    pos = [r.answer.details.get("p_answerable", 0.0) for r in answerable if r.answer.details]
    neg = [r.answer.details.get("p_answerable", 0.0) for r in results if not r.item.answerable and r.answer.details]
    bins = [i / 20 for i in range(21)]
    ax2.hist(pos, bins=bins, alpha=0.6, label=f"answerable ({len(pos)})")
    ax2.hist(neg, bins=bins, alpha=0.6, label=f"unanswerable ({len(neg)})")
    ax2.set_xlabel("P(answerable) from the abstention model")
    ax2.set_ylabel("questions")
    ax2.legend()
    ax2.set_title("Abstention score distribution")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def failures_markdown(fails: list[dict], title: str) -> str:
    """The failed questions as a Markdown page: question, what was expected, what was answered and retrieved."""
    lines = [f"# {title}", "", f"{len(fails)} questions went wrong.", ""]
    for f in fails:
        lines.append(f"## {f['id']} ({f['kind']}): {f['problem']}")
        if f.get("history"):
            lines.append(f"- earlier question: {' / '.join(f['history'])}")
        lines.append(f"- question: {f['question']}")
        if f.get("expected_doc"):
            lines.append(f"- expected: `{f['expected_doc']}` — “{f['expected_evidence']}”")
        p = f.get("p_answerable")
        lines.append(f"- answer (P(answerable) = {p:.2f}): {f['answer']}" if isinstance(p, float) else
                     f"- answer: {f['answer']}")
        lines.append("- retrieved:")
        for r in f["retrieved"]:
            lines.append(f"  {r['rank']}. `{r['doc_id']}` — {' '.join(r['text'].split())[:140]}")
        lines.append("")
    return "\n".join(lines)
