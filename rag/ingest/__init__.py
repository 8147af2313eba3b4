"""Ingest stage: read a corpus folder into normalized Documents and split them into Passages and Sentences."""
