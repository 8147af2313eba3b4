"""Index and search stage: Swedish analysis, the on-disk index, query processing, dense and lexical retrieval, fusion."""
