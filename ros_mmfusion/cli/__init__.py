"""The ``mmfusion`` command line: one entry point, one module per subcommand (``HELP``, ``add_arguments``, ``run``)."""
