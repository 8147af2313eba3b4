"""The numba kernels behind `kernels` (imported only by `kernels.load`, so nothing else pays numba's import)."""

from __future__ import annotations

import numba
import numpy as np
from numba.core import cgutils, types
from numba.extending import intrinsic

# Every function is compiled once per machine and cached beside this file (or in numba's user cache directory
# where that is read-only); `cache=True` makes later processes load machine code instead of compiling (~3 s).


@numba.njit(cache=True, nogil=True)
def score_postings(values, tf, lengths, lo, hi, base, idf, norm0, norm1, live, has_live, rows, scores):
    """See `kernels.score_postings`."""
    count = 0
    for j in range(lo, hi):
        r = values[j]
        if has_live and live[r + base] == 0:
            continue
        a = idf * tf[j]
        scores[count] = np.float32(np.float64(a) / (np.float64(tf[j]) + (norm0 + norm1 * np.float64(lengths[r]))))
        rows[count] = r + base
        count += 1
    return count


@intrinsic
def _pointer(typingctx, address):
    """An int64 address as a void pointer (for `numba.carray`)."""
    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)
    return types.voidptr(address), codegen


@numba.njit(cache=True, nogil=True)
def _postings(row_at, score_at, lengths, p):
    """The rows and scores of the token at place p, read in place through their addresses."""
    m = lengths[p]
    return (numba.carray(_pointer(row_at[p]), (m,), np.int64),
            numba.carray(_pointer(score_at[p]), (m,), np.float32))


@numba.njit(cache=True, nogil=True)
def _gather(dst, r_, s_, add, sparse, mark, stamp, touched, count, r0, n):
    """dst[r] += s (`add`) or dst[r] = max(dst[r], s) over one token's postings; a sparse group lists the rows it
    touches, once each (`mark`, `stamp`). Returns the list's length, or -1 (nothing read out of bounds) if the rows
    are not strictly ascending within [r0, n) or a contribution is negative or NaN. Called once per token: the same
    bookkeeping in a helper called once per *posting* cost ~40 ns a posting (measured), and the loop compiled on its
    own here runs ~2x faster at p95 than written out inside `term_scores` (measured at 10^5 and 10^6 passages)."""
    previous = r0 - 1
    for j in range(len(r_)):
        r = r_[j]
        if r <= previous or r >= n or not s_[j] >= 0:  # NaN too
            return -1
        previous = r
        if sparse and mark[r] != stamp:
            mark[r] = stamp
            touched[count] = r
            count += 1
        if add:
            dst[r] += s_[j]
        elif s_[j] > dst[r]:
            dst[r] = s_[j]
    return count


@numba.njit(cache=True, nogil=True)
def _add_best(total, best, r_, s_, weight, r0, n):
    """total[r] += weight x max(best[r], s), best back to 0, over one token's postings: the last form of a term
    of forms only, read straight into the sum. Returns 0, or -1 as `_gather` for bad postings."""
    previous = r0 - 1
    for j in range(len(r_)):
        r = r_[j]
        if r <= previous or r >= n or not s_[j] >= 0:  # NaN too
            return -1
        previous = r
        value = s_[j] if s_[j] > best[r] else best[r]  # as `_gather`'s max
        total[r] += weight * value
        best[r] = 0
    return 0


@numba.njit(cache=True, nogil=True)
def _abandon(r0, n, total, best, acc, most, stamps, stamp_term, stamp_group, stamp_word):
    """Bad postings: the scratch arrays back to zero over the rows [r0, n) and the stamps used so far kept (so every
    mark stays below them) for the next call; returns -1."""
    stamps[0], stamps[1], stamps[2] = stamp_term, stamp_group, stamp_word
    total[r0:n] = 0
    best[r0:n] = 0
    acc[r0:n] = 0
    most[r0:n] = 0
    return -1


@numba.njit(cache=True, nogil=True)
def _add_word(acc, most, rows, count, r0, n, dense, sparse, mark, stamp, touched, group_count):
    """acc += most, most back to 0, over a word's rows (all of [r0, n) when dense); rows new to a sparse group join
    its list. Returns the group list's length."""
    for j in range(r0 if dense else 0, n if dense else count):
        r = j if dense else rows[j]
        if sparse and mark[r] != stamp:
            mark[r] = stamp
            touched[group_count] = r
            group_count += 1
        acc[r] += most[r]
        most[r] = 0
    return group_count


@numba.njit(cache=True, nogil=True)
def _fold(dst, src, k, credit, rows, count, r0, n, dense, term, stamp, term_touched, term_count, term_dense):
    """dst = max(dst, credit x mean of k summed values in src), src back to 0, over a group's rows (all of [r0, n)
    when dense); rows new to a sparse term join its list. Returns the term list's length."""
    for j in range(r0 if dense else 0, n if dense else count):
        r = j if dense else rows[j]
        if not term_dense and term[r] != stamp:
            term[r] = stamp
            term_touched[term_count] = r
            term_count += 1
        mean = src[r] if k == 1 else src[r] / np.float32(k)
        value = credit * mean
        if value > dst[r]:
            dst[r] = value
        src[r] = 0
    return term_count


@numba.njit(cache=True, nogil=True)
def term_scores(r0, n, row_at, score_at, lengths, weights, form, part, alt, alt_word, word_token, form_tokens,
                part_tokens, word_tokens, term_dense, part_dense, alt_dense, word_dense, parts_credit,
                alternative_credit, top, total, best, acc, most, term_mark, group_mark, word_mark, term_touched,
                group_touched, word_touched, stamps, out_rows, out_scores):
    """See `kernels.term_scores` and `kernels.plan`."""
    # Rows [r0, n) only (every posting given lies in them). total, best, acc, most come zeroed there and are left
    # zeroed; the marks only hold stamps at or below `stamps`, which rise across calls. The result goes to
    # out_rows / out_scores.
    stamp_term, stamp_group, stamp_word = stamps[0], stamps[1], stamps[2]
    for t in range(len(weights)):
        stamp_term += 1
        if form[t, 1] > form[t, 0] and part[t, 1] == part[t, 0] and alt[t, 1] == alt[t, 0]:
            # forms only: the others' max gathered at the rows they touch, the longest read last straight into
            # total (total += weight x max), then the rows only the others hold (no pass over every row)
            longest = form[t, 0]
            for f in range(form[t, 0], form[t, 1]):
                if lengths[form_tokens[f]] > lengths[form_tokens[longest]]:
                    longest = f
            term_count = 0
            for f in range(form[t, 0], form[t, 1]):
                if f != longest:
                    r_, s_ = _postings(row_at, score_at, lengths, form_tokens[f])
                    term_count = _gather(best, r_, s_, False, True, term_mark, stamp_term, term_touched, term_count,
                                         r0, n)
                    if term_count < 0:
                        return _abandon(r0, n, total, best, acc, most, stamps, stamp_term, stamp_group, stamp_word)
            r_, s_ = _postings(row_at, score_at, lengths, form_tokens[longest])
            if _add_best(total, best, r_, s_, weights[t], r0, n) < 0:
                return _abandon(r0, n, total, best, acc, most, stamps, stamp_term, stamp_group, stamp_word)
            w_ = weights[t]
            for j in range(term_count):  # rows the longest lacks (the others are back to 0: adding 0 changes nothing)
                r = term_touched[j]
                total[r] += w_ * best[r]
                best[r] = 0
            continue
        sparse_term = term_dense[t] == 0
        term_count = 0
        for f in range(form[t, 0], form[t, 1]):  # best = the max over the term's own forms
            r_, s_ = _postings(row_at, score_at, lengths, form_tokens[f])
            term_count = _gather(best, r_, s_, False, sparse_term, term_mark, stamp_term, term_touched, term_count,
                                 r0, n)
            if term_count < 0:
                return _abandon(r0, n, total, best, acc, most, stamps, stamp_term, stamp_group, stamp_word)
        k = part[t, 1] - part[t, 0]
        if k > 0:  # best = max(best, parts_credit x the mean of its parts)
            stamp_group += 1
            sparse = part_dense[t] == 0
            count = 0
            for p in range(part[t, 0], part[t, 1]):
                r_, s_ = _postings(row_at, score_at, lengths, part_tokens[p])
                count = _gather(acc, r_, s_, True, sparse, group_mark, stamp_group, group_touched, count, r0, n)
                if count < 0:
                    return _abandon(r0, n, total, best, acc, most, stamps, stamp_term, stamp_group, stamp_word)
            term_count = _fold(best, acc, k, parts_credit, group_touched, count, r0, n, not sparse, term_mark,
                               stamp_term, term_touched, term_count, not sparse_term)
        for a in range(alt[t, 0], alt[t, 1]):  # best = max(best, credit x the mean over the words of the
            stamp_group += 1                   # alternative of each word's best form)
            sparse = alt_dense[a] == 0
            count = 0
            for w in range(alt_word[a, 0], alt_word[a, 1]):
                stamp_word += 1
                sparse_word = word_dense[w] == 0
                word_count = 0
                for wt in range(word_token[w, 0], word_token[w, 1]):
                    r_, s_ = _postings(row_at, score_at, lengths, word_tokens[wt])
                    word_count = _gather(most, r_, s_, False, sparse_word, word_mark, stamp_word, word_touched,
                                         word_count, r0, n)
                    if word_count < 0:
                        return _abandon(r0, n, total, best, acc, most, stamps, stamp_term, stamp_group, stamp_word)
                count = _add_word(acc, most, word_touched, word_count, r0, n, not sparse_word, sparse, group_mark,
                                  stamp_group, group_touched, count)
            kw = alt_word[a, 1] - alt_word[a, 0]
            term_count = _fold(best, acc, kw, alternative_credit, group_touched, count, r0, n, not sparse,
                               term_mark, stamp_term, term_touched, term_count, not sparse_term)
        w_ = weights[t]
        for j in range(0 if sparse_term else r0, term_count if sparse_term else n):  # total += weight x best
            r = term_touched[j] if sparse_term else j
            total[r] += w_ * best[r]
            best[r] = 0  # back to 0
    count = 0
    if top > 0:  # only the best `top` rows
        count = _top_k(total, r0, n, top, out_rows, out_scores)
    else:
        for r in range(r0, n):
            if total[r] > 0:  # as `sparse_term_bm25`: rows with a score of 0 are left out
                out_rows[count] = r
                out_scores[count] = total[r]
                count += 1
            total[r] = 0
    stamps[0], stamps[1], stamps[2] = stamp_term, stamp_group, stamp_word
    return count


@numba.njit(cache=True, nogil=True)
def _top_k(total, r0, n, k, heap_rows, heap_scores):
    """The k rows of [r0, n) with the largest total above 0 (ties: the lower row, as `top_indices`), in a min-heap
    (its root the worst kept: the lowest score, of equal ones the highest row), total back to 0. Rows come
    ascending, so the incoming row is worse than every kept row of its score: it never displaces the root on a tie,
    and it settles below kept rows of equal score. Returns how many (in heap order)."""
    size = 0
    for r in range(r0, n):
        s = total[r]
        total[r] = 0
        if not s > 0:
            continue
        if size < k:  # sift up
            j = size
            size += 1
            while j > 0:
                parent = (j - 1) // 2
                if heap_scores[parent] < s:
                    break
                heap_rows[j], heap_scores[j] = heap_rows[parent], heap_scores[parent]
                j = parent
            heap_rows[j], heap_scores[j] = r, s
        elif s > heap_scores[0]:  # replace the root, sift down
            j = 0
            while True:
                child = 2 * j + 1
                if child >= size:
                    break
                other = child + 1
                if other < size and (heap_scores[other] < heap_scores[child] or (
                        heap_scores[other] == heap_scores[child] and heap_rows[other] > heap_rows[child])):
                    child = other
                if s <= heap_scores[child]:
                    break
                heap_rows[j], heap_scores[j] = heap_rows[child], heap_scores[child]
                j = child
            heap_rows[j], heap_scores[j] = r, s
    return size
