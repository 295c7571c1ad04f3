"""Corpora (all-MiniLM-L6-v2 embeddings in LangChain FAISS indexes, on disk) and retriever replay.

Nothing heavy is imported here: LangChain, FAISS and torch load inside the functions that need them.
"""
