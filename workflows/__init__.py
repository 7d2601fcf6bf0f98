"""The workflow shell: receives commands, applies them through the pure core, and carries out
their effects as activities."""
