"""The built-in stages, one module per family; importing this package registers them (``audits.plan``).

attention     the full-context pass reads attention (no extra pass); attention_baseline: neutral text in place
removal       leave_one_out, no_context
controls      orders (document permutations), placebos (the noise floor)
ablation      context_ablation: random keep-masks and the linear surrogate
flips         answer_flip: regenerate without the most relied-on sources
stability     sampled responses and query paraphrases, each with attention and leave-one-out (opt-in)
tools         tool_unavailable, tool_counterfactual, policy_replay (agent traces)
mechanism     where a relied-on source's effect flows: span trace, attention vs MLP, heads, routers (opt-in)
"""

from faithaudit.audits.stages import (  # noqa: F401
    ablation,
    attention,
    controls,
    flips,
    mechanism,
    removal,
    stability,
    tools,
)
