"""The index manifest's shape: a manifest this code cannot trust (wrong types, missing fields) means a damaged index,
which is rebuilt, never served and never a traceback."""

from __future__ import annotations

REQUIRED = {"model": str, "corpus_hash": str, "document_count": int, "passage_count": int, "built_at": str}


def manifest_problem(manifest: dict) -> str:
    """Why the manifest cannot be trusted ("" when it can)."""
    for key, kind in REQUIRED.items():
        value = manifest.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            return f"the index manifest's {key!r} is missing or not a {kind.__name__}"
    analyzer = manifest.get("analyzer", {})
    if not isinstance(analyzer, dict):
        return "the index manifest's 'analyzer' is not an object"
    files, sizes = manifest.get("files", {}), manifest.get("sizes", {})
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        return "the index manifest's 'files' are not a table of file names and checksums"
    if not isinstance(sizes, dict) or not all(isinstance(v, int) and not isinstance(v, bool) for v in sizes.values()):
        return "the index manifest's 'sizes' are not a table of file sizes"
    problems = manifest.get("problems", [])
    if not isinstance(problems, list) or not all(
            isinstance(q, dict) and isinstance(q.get("path"), str) and isinstance(q.get("message"), str)
            and isinstance(q.get("skipped", True), bool) and set(q) <= {"path", "message", "skipped"}
            for q in problems):
        return "the index manifest's 'problems' are not a list of problem records"
    return ""
