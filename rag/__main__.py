"""Command line: `python -m rag build` builds/refreshes the index, `ask` answers questions, `add`/`remove` change
one document at a time."""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from dataclasses import replace
from typing import Sequence

from embeddings import DEFAULT_MODEL, ModelLoadError
from rag.search.index import IndexInvalid
from rag.search.location import IndexLocationError
from rag.ingest.loader import CorpusError
from rag.inputs import UserInput, from_json_line, from_values, split_lines
from rag.pipeline import Pipeline, PipelineConfig
from rag.search.retrieve import MODES
from rag.search.stores import STORES, StoreUnavailable
from rag.types import Answer


ERROR_MESSAGE = ("Något gick fel när frågan skulle besvaras. Försök igen, eller ring 1177 för sjukvårdsrådgivning. "
                 "Vid akuta besvär: ring 112.")


def _progress_bar():
    """A tqdm progress callback for index builds, one bar per stage, on stderr."""
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}

    def progress(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            labels = {"documents": "Reading documents", "passages": "Embedding passages", "sentences": "Embedding sentences", "lexical": "BM25 index"}
            bar = bars[stage] = tqdm(total=total, desc=labels.get(stage, stage), unit="", file=sys.stderr, leave=True)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return progress


def _config(args: argparse.Namespace) -> PipelineConfig:
    kwargs = {"model": args.model, "mode": args.mode, "k": args.k, "store": getattr(args, "store", "faiss")}
    if args.corpus:
        kwargs["corpus_dir"] = args.corpus
    if args.index:
        kwargs["index_dir"] = args.index
    return PipelineConfig(**kwargs)


def format_answer(answer: Answer) -> str:
    """Human-readable answer with its numbered sources, for the terminal."""
    lines = []
    if answer.notice:
        lines += [f"VIKTIGT: {answer.notice}", ""]
    if answer.details.get("followup_of"):
        lines += [f"(Tolkad som följdfråga till: {answer.details['followup_of']})", ""]
    lines.append(answer.text)
    if answer.citations:
        lines += ["", "Källor:"]
        for c in answer.citations:
            meta = ", ".join(x for x in (c.publisher, c.date) if x)
            lines.append(f"[{c.n}] {c.title} ({meta}) {c.url}")
            lines.append(f"    ”{' '.join(c.quote.split())}”  (passage {c.passage_id}, score {c.score:.3f})")
    return "\n".join(lines)


def json_line(obj) -> str:
    """One JSON object on one line, with the characters that some readers take for line ends (U+2028, U+2029,
    NEL, and the other str.splitlines separators) escaped, so output lines stay aligned with input lines."""
    text = json.dumps(obj, ensure_ascii=False)
    for ch in ("\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e"):
        text = text.replace(ch, f"\\u{ord(ch):04x}")
    return text


def _read_inputs(stream) -> list[UserInput]:
    """One question per input line (split at "\n" only); a line may be a JSON object {"question", "history"}.
    A bad line becomes an input with an error message, so every input line gets exactly one output line."""
    return [from_json_line(line) for line in split_lines(stream.read())]


def _error_answer(user_input: UserInput, message: str, reason: str) -> Answer:
    return Answer(user_input.question, message, (), (), True, reason=reason)


def answer_one(pipeline: Pipeline, user_input: UserInput, log) -> Answer:
    """Answer one input; never raises: an unexpected failure becomes a message (the trace goes to the log)."""
    if user_input.error:
        return _error_answer(user_input, user_input.error, "bad_input")
    try:
        answer = pipeline.ask(user_input.question, history=user_input.history)
    except Exception:  # one failing question must not end the batch
        log("error while answering: " + traceback.format_exc())
        return _error_answer(user_input, ERROR_MESSAGE, "error")
    if user_input.problems:
        answer = replace(answer, details={**answer.details, "input_problems": list(user_input.problems)})
    return answer


def staff_command(args: argparse.Namespace) -> int:
    """`python -m rag staff add|remove|list`: manage the staff accounts (bcrypt hashes; no default account)."""
    import getpass

    from rag.staff import StaffAccounts

    accounts = StaffAccounts()
    try:
        if args.action == "list":
            for user in accounts.users():
                print(f"{user.username}\t{user.name}")
            return 0
        if not args.username:
            print("error: give a user name", file=sys.stderr)
            return 2
        if args.action == "remove":
            gone = accounts.remove(args.username)
            print(f"{args.username}: {'removed' if gone else 'no such account'}", file=sys.stderr)
            return 0 if gone else 1
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = getpass.getpass("Password: ")
            if getpass.getpass("Password again: ") != password:
                print("error: the passwords differ", file=sys.stderr)
                return 2
        accounts.add(args.username, password, name=args.name)
        print(f"{args.username}: saved in {accounts.path}", file=sys.stderr)
        return 0
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rag", description="Swedish cancer-care question answering.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("build", "build or refresh the index"), ("ask", "answer questions")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--corpus", help="corpus folder (default: the built-in corpus/)")
        p.add_argument("--model", default=DEFAULT_MODEL, help=f"embedding model: registry name or path (default {DEFAULT_MODEL})")
        p.add_argument("--index", help="index folder (default: .rag_index/<model>)")
        p.add_argument("--mode", choices=MODES, default="hybrid", help="retrieval mode (default hybrid)")
        p.add_argument("--k", type=int, default=5, help="passages to retrieve (default 5)")
        p.add_argument("--store", choices=STORES, default=os.environ.get("RAG_STORE") or "faiss",
                       help="where passages are stored and searched: faiss (embedded files, default) or pgvector "
                            "(PostgreSQL at $RAG_STORE_URL); default $RAG_STORE or faiss")
        if name == "build":
            p.add_argument("--force", action="store_true", help="rebuild even when the index is up to date")
        else:
            p.add_argument("question", nargs="?", help="the question; without it, questions are read from stdin")
            p.add_argument("--json", action="store_true", help="one JSON object per input line on stdout")
    staff = sub.add_parser("staff", help="staff accounts for the workspace (file: $RAG_STAFF_FILE)")
    staff.add_argument("action", choices=("add", "remove", "list"))
    staff.add_argument("username", nargs="?")
    staff.add_argument("--name", default="", help="the person's name, shown when logged in")
    staff.add_argument("--password-stdin", action="store_true", help="read the password from stdin (for scripts)")
    for name, help_text in (("add", "index files (from outside the corpus: copied into its uploads/); only they are read and embedded"),
                            ("remove", "take documents out of the index (an uploaded file is deleted, any other listed in removed.json)")):
        p = sub.add_parser(name, help=help_text)
        if name == "add":
            p.add_argument("paths", nargs="+", metavar="PATH", help="files to add (.txt .md .html .pdf .docx)")
        else:
            p.add_argument("doc_ids", nargs="+", metavar="DOC_ID", help="document ids (as in citations: doc_id)")
        p.add_argument("--corpus", help="corpus folder (default: the built-in corpus/)")
        p.add_argument("--model", default=DEFAULT_MODEL, help=f"embedding model (default {DEFAULT_MODEL})")
        p.add_argument("--index", help="index folder (default: .rag_index/<model>)")
        p.set_defaults(mode="hybrid", k=5)
    args = parser.parse_args(argv)
    if args.command == "staff":
        return staff_command(args)
    if args.command in ("add", "remove"):
        return _change(args)
    if args.k <= 0:
        parser.error("--k must be a positive number")
    log = lambda msg: print(msg, file=sys.stderr)  # noqa: E731
    try:
        pipeline = Pipeline(_config(args))
        pipeline.warm_up(rebuild=getattr(args, "force", False), log=log, progress=_progress_bar())
    except (ModelLoadError, CorpusError, IndexInvalid, IndexLocationError, StoreUnavailable) as exc:
        log(f"error: {exc}")
        return 2
    if args.command == "build":
        m = pipeline.index.manifest
        where = pipeline.config.index_dir if pipeline.config.store == "faiss" else f"PostgreSQL ({m.get('index_type')})"
        log(f"Index {where}: model {m['model']}, {m['passage_count']} passages from "
            f"{m['document_count']} documents, built {m['built_at']}, search {m.get('index_type', 'flat')}.")
        return 0
    if args.question is not None:
        inputs = [from_values(args.question)]
    else:
        inputs = _read_inputs(sys.stdin.buffer)
    for user_input in inputs:
        answer = answer_one(pipeline, user_input, log)
        if args.json:
            sys.stdout.write(json_line(answer.to_contract()) + "\n")
            sys.stdout.flush()
        else:
            print(format_answer(answer) + "\n")
    return 0


def _change(args: argparse.Namespace) -> int:
    """`add` / `remove`: bring the index up to date first (built if missing), then change only the named documents."""
    from embeddings import load_encoder
    from rag.search.index import open_index
    from rag.search.updates import add_paths, remove_documents

    log = lambda msg: print(msg, file=sys.stderr)  # noqa: E731
    config = _config(args)
    encoders = []

    def encoder():
        if not encoders:
            encoders.append(load_encoder(config.model))
        return encoders[0]

    try:
        open_index(config.corpus_dir, config.index_dir, encoder, config.model, log=log, progress=_progress_bar())
        if args.command == "add":
            report = add_paths(config.corpus_dir, config.index_dir, args.paths, encoder, config.model, log=log)
        else:
            report = remove_documents(config.corpus_dir, config.index_dir, args.doc_ids, log=log)
    except (ModelLoadError, CorpusError, IndexInvalid, IndexLocationError) as exc:
        log(f"error: {exc}")
        return 2
    for line in report.lines():
        print(line)
    log(f"done in {report.seconds} s")
    return 0 if (report.added or report.replaced or report.removed or not report.problems) else 1


if __name__ == "__main__":
    sys.exit(main())
