"""Answer stage: rank source sentences, decide whether the sources answer the question, compose the cited answer."""
