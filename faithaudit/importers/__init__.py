"""Turn what teams already record into audit requests: OTLP/JSON traces with OpenInference or OpenTelemetry GenAI
attributes (``otlp``), RAGAS and DeepEval datasets (``datasets``). Pure parsing over JSON: no model, no torch, so
the API can import them. Problems raise ``ImportFormatError`` naming the span (or line) and the attribute."""
