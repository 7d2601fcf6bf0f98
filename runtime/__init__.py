"""Process plumbing shared by the worker, the starter and the tests: settings, connections,
and the embedded servers of the local commands."""
