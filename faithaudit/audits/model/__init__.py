"""The model behind an audit: ``adapter`` (protocols and result types, no torch), ``chat`` (messages), ``hf`` (any
Hugging Face causal LM), ``registry`` (built-in names, local folders, GGUF files; a per-process cache), ``fake``
(scripted log-probs for unit tests), ``split_attention`` (the exact prefix/suffix attention kernel of cached passes),
``device`` (device, dtype and batch size), ``cache_names`` (the KV cache's argument name in the installed transformers).
Import the submodules directly: this package imports nothing heavy."""
