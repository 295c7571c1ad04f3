"""Integrations with the frameworks pipelines are written in (LangChain). Each imports its framework lazily."""
