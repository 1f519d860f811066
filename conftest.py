"""pytest: the modules of optional integrations are collected only where their framework is."""

import importlib.util

collect_ignore = [
    path
    for path, framework in (
        ("landscape/integrations/huggingface.py", "transformers"),
        ("landscape/integrations/lightning.py", "lightning"),
    )
    if importlib.util.find_spec(framework) is None
]
