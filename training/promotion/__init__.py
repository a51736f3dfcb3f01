"""From a trained run to the served model: comparing runs, the promotion gate, the registry, artifacts."""
