"""Command-line interface: thin wrappers around the Python API (``mednet-pvs --help``)."""
