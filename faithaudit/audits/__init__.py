"""The science: prompt rendering with source spans, interventions, scoring, provenance, reliance, labels.

Pure functions over data plus one strategy passed in: the model adapter (``audits.model.ModelAdapter``).
Import submodules directly; this package imports nothing heavy.
"""
