"""pytest: the modules of optional integrations (and examples that need one) are collected only
where their framework is."""

import importlib.util

collect_ignore = [
    path
    for path, framework in (
        ("landscape/integrations/huggingface.py", "transformers"),
        ("landscape/alignment/gpt2.py", "transformers"),  # its example builds a GPT-2
        ("landscape/integrations/lightning.py", "lightning"),
    )
    if importlib.util.find_spec(framework) is None
]
