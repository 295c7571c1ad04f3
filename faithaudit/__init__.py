"""faithaudit: does an LLM pipeline rely on the sources it shows?

Attention tells where the model looked (provenance); interventions tell what the answer depends on (reliance).
Nothing heavy is imported here: the engine lives in ``faithaudit.audits``, contracts in ``faithaudit.api_schemas``.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
