"""Evaluation of the pipeline: the gold Swedish Q&A set, IR/citation/abstention metrics and public benchmarks."""
