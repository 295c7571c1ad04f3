"""Mechanism audits: where a relied-on source's effect flows through the network (opt-in ``mechanism`` method).

architectures  per-architecture module names (attention, MLP, router), as inseq keeps them; torch-free
budget        the passes one traced source costs, and the checks a request must pass before any pass; torch-free
patching      hooks that record and restore activations (residual, attention, MLP, heads, routers); torch
trace         one source: corrupt it, trace the span layer by layer, split attention from MLP, patch heads, routers
readout       pure functions over the measured log-probs: fractions, readout layers, head lists, the sentence
"""
