"""From findings to the report: ``sources`` (one row per source), ``labels``, ``summary`` (figures and flags),
``citations``, ``gate`` (thresholds), ``reading`` (one line per tool output), ``build`` (the ``AuditReport``).
Prose and policy (label rules, the surrogate-fit floor) live here, never in the stages."""
