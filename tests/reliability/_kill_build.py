"""Run the real `python -m rag build --force ...` and SIGKILL the process at one exact moment (for the crash tests).

    python -m tests.reliability._kill_build POINT [build arguments ...]

POINT is where the process kills itself with signal 9 (no cleanup, no finally, no atexit: like `kill -9`):
  after-documents-jsonl  while saving: the temporary folder holds some index files, not all
  before-swap            the temporary folder is complete, the swap has not started
  between-renames        the old index was renamed away (`.NAME.old-*`), the new one is not in place yet
Nothing else is changed: the build, the save and the swap are the project's own code.
"""

from __future__ import annotations

import os
import signal
import sys


def die(point: str) -> None:
    sys.stderr.write(f"[kill_build] SIGKILL at {point}\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def main(argv: list[str]) -> int:
    point, args = argv[0], argv[1:]
    import rag.search.index as index_module
    import rag.search.location as location

    if point == "after-documents-jsonl":
        real_write = index_module._write_jsonl

        def write_then_die(path, rows):
            real_write(path, rows)
            if os.path.basename(path) == "documents.jsonl":
                die(point)

        index_module._write_jsonl = write_then_die
    elif point == "before-swap":
        index_module.swap_in = lambda *a, **k: die(point)
    elif point == "between-renames":
        real_replace = os.replace

        def replace_then_die(src, dst, *a, **k):
            real_replace(src, dst, *a, **k)
            if ".old-" in os.path.basename(os.fspath(dst)):
                die(point)

        location.os.replace = replace_then_die  # `location.os` is the os module: only this process is affected
    else:
        raise SystemExit(f"unknown kill point {point!r}")
    from rag.__main__ import main as rag_main

    return rag_main(["build", "--force", *args])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
