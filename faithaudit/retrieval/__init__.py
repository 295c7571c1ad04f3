"""Corpora, embeddings and retriever replay (FAISS + LangChain). Planned: see the integrations issue."""
