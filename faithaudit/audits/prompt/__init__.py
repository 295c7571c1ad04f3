"""Render a request to prompt tokens, keeping every source's token span: ``layout`` (the ``SourceLayout``
interface, ``request_layout``), ``rag`` (documents or sentences), ``agent`` (tool outputs of a trace),
``sentences`` (the sentence splitter). Imports no torch: the API builds layouts with a tokenizer only."""
