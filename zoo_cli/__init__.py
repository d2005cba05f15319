"""zoo_cli: the `zoo` command line. Thin commands that parse options and call the packages."""
