"""The `charforge` command line."""
