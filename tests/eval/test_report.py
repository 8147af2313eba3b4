from eval.gold import load_gold
from eval.report import failures_markdown, format_table, plot
from eval.run_gold import evaluate_gold, failures


def test_format_table_shows_rates_and_milliseconds():
    text = format_table({"recall@5": 0.9444, "latency_p95_ms": 31.26, "n": 71, "x": float("nan")}, "T")
    assert text.splitlines()[0] == "T"
    assert "0.944" in text and "31.3" in text and "71" in text and "n/a" in text


def test_failure_page_and_plot_from_a_real_run(pipeline, tmp_path):
    items = [it for it in load_gold(split="tune") if it.kind in ("lay", "uncovered")][:8]
    report = evaluate_gold(pipeline, items)
    passages = {p.passage_id: p for p in pipeline.index.passages}
    fails = failures(report.results, passages)
    page = failures_markdown(fails, "Failures")
    assert page.startswith("# Failures") and f"{len(fails)} questions went wrong." in page
    for f in fails:
        assert f"## {f['id']}" in page
    png = plot(report.results, tmp_path / "plot.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
