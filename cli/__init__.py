"""The `omnirec` command line, on top of every layer: it may import all of them, none imports it."""
