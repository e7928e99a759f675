"""The I/O edge: the `idf` CLI, the HTTP service, notebook magics, Kubernetes, the demo.

Nothing in `idf_jax` outside this package imports it (checked by import-linter).
"""
