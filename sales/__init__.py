"""The pure sales-process domain: models and rules, no Temporal and no I/O."""
