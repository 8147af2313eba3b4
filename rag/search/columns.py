"""Columnar, memory-mapped building blocks of an index: string columns (one blob + offsets) and ragged rows (CSR)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np


def save_array(path: Path, array: np.ndarray) -> None:
    """Write an array as .npy (never pickled)."""
    np.save(path, np.ascontiguousarray(array), allow_pickle=False)


def open_array(path: Path, random_access: bool = False) -> np.ndarray:
    """Map an .npy file read-only: nothing is read until rows are used (an empty file is read normally).

    `random_access`: rows are read one here, one there (vectors): the kernel is told not to read ahead, so a row
    costs one page of memory, not the hundreds of kilobytes around it (measured at 10^6 passages: 3.8 GB of
    sentence-vector pages resident after 20 questions with read-ahead, for ~0.2 GB of rows used).
    """
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError:  # a zero-length array cannot be mapped
        return np.load(path, allow_pickle=False)
    if random_access:
        advise_random(array)
    return plain(array)


def plain(array: np.ndarray) -> np.ndarray:
    """A plain ndarray view of a memory map (the map stays open through the view's base): indexing an np.memmap
    runs Python code on every access (~18 us; ~10 ms per question over the rows of a large index)."""
    return array.view(np.ndarray) if isinstance(array, np.memmap) else array


def _madvise(array, advice: str) -> bool:
    """madvise(`advice`, a name such as "MADV_RANDOM") on the memory map behind `array` (an np.memmap or a view of
    one); False when it is not mapped or the platform lacks the advice."""
    import mmap

    base = array
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "_mmap", None) or getattr(base, "base", None)
    if base is None or not hasattr(mmap, advice):
        return False
    try:
        base.madvise(getattr(mmap, advice))
    except (OSError, ValueError):
        return False
    return True


def advise_random(array: np.ndarray) -> None:
    """madvise(MADV_RANDOM) on a memory-mapped array (where the platform has it)."""
    _madvise(array, "MADV_RANDOM")


def resident_mb() -> float | None:
    """This process's resident set in MB (/proc/self/statm, ~10 us), or None where there is no /proc."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def release_pages(*arrays) -> int:
    """madvise(MADV_DONTNEED) on the memory maps behind `arrays` (plain views, np.memmaps, or columns with a
    `mapped()` list): their pages leave this process's resident set and stay in the page cache, so the next access
    maps them again without reading the disk. A row access maps more than its row, whatever MADV_RANDOM says: the
    kernel's fault-around maps 64 kB of cached pages around it, or a whole large folio (up to 2 MB, as sequential
    reads leave in the page cache): with the page cache warm, the rows of 284 questions at 10^6 passages left 5.8 GB
    of sentence vectors and 1.5 GB of passage vectors resident, for ~0.2 GB of rows used. Safe under concurrent
    readers (a read-only shared file mapping: a dropped page faults back in). Returns the maps released.
    """
    return sum(_madvise(part, "MADV_DONTNEED") for array in arrays
               for part in (array.mapped() if hasattr(array, "mapped") else (array,)))


class StringColumn(Sequence[str]):
    """Strings stored as one UTF-8 blob plus an int64 offsets array (n + 1 entries); row i decodes on access.

    Example
    -------
    >>> StringColumn.write(path, ["a", "bö"]); StringColumn.open(path)[1]
    'bö'
    """

    def __init__(self, blob: np.ndarray, offsets: np.ndarray) -> None:
        self._blob = blob
        self._offsets = offsets

    @staticmethod
    def write(path: Path, values: Iterable[str]) -> None:
        """Write `path` (the blob) and `path` + ".off.npy" (the offsets)."""
        offsets = [0]
        with open(path, "wb") as f:
            for value in values:
                data = value.encode("utf-8")
                f.write(data)
                offsets.append(offsets[-1] + len(data))
        save_array(Path(f"{path}.off.npy"), np.asarray(offsets, dtype=np.int64))

    @classmethod
    def open(cls, path: Path, random_access: bool = False) -> "StringColumn":
        path = Path(path)
        blob = np.memmap(path, dtype=np.uint8, mode="r") if path.stat().st_size else np.zeros(0, dtype=np.uint8)
        if random_access:
            advise_random(blob)
        return cls(plain(blob), open_array(Path(f"{path}.off.npy")))

    @staticmethod
    def files(name: str) -> tuple[str, str]:
        return name, f"{name}.off.npy"

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def mapped(self) -> list[np.ndarray]:
        """The arrays behind the column (for `release_pages`)."""
        return [self._blob, self._offsets]

    def bytes_at(self, lo: int, hi: int) -> bytes:
        """Raw bytes of the blob between two byte offsets."""
        return self._blob[lo:hi].tobytes()

    def byte_range(self, i: int) -> tuple[int, int]:
        return int(self._offsets[i]), int(self._offsets[i + 1])

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        lo, hi = self.byte_range(i)
        return self.bytes_at(lo, hi).decode("utf-8")


class RaggedColumn(Sequence[np.ndarray]):
    """Variable-length integer rows stored as CSR: `indptr` (n + 1 offsets) and `values`."""

    def __init__(self, indptr: np.ndarray, values: np.ndarray) -> None:
        self.indptr = indptr
        self.values = values

    @staticmethod
    def from_rows(rows: Iterable[Sequence[int]], dtype=np.int32) -> "RaggedColumn":
        indptr, values = [0], []
        for row in rows:
            values.extend(row)
            indptr.append(len(values))
        return RaggedColumn(np.asarray(indptr, dtype=np.int64), np.asarray(values, dtype=dtype))

    def save(self, prefix: Path) -> None:
        save_array(Path(f"{prefix}.indptr.npy"), self.indptr)
        save_array(Path(f"{prefix}.values.npy"), self.values)

    @classmethod
    def open(cls, prefix: Path, random_access: bool = False) -> "RaggedColumn":
        return cls(open_array(Path(f"{prefix}.indptr.npy"), random_access),
                   open_array(Path(f"{prefix}.values.npy"), random_access))

    @staticmethod
    def files(name: str) -> tuple[str, str]:
        return f"{name}.indptr.npy", f"{name}.values.npy"

    def mapped(self) -> list[np.ndarray]:
        """The arrays behind the column (for `release_pages`)."""
        return [self.indptr, self.values]

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def __getitem__(self, i):  # type: ignore[override]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return np.asarray(self.values[int(self.indptr[i]) : int(self.indptr[i + 1])])
