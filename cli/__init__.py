"""The ``sparseidx`` command line (installed as the ``sparseidx_cli`` package)."""
