"""The typed client and the `opportunities` CLI."""
