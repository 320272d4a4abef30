"""The `simgan` command line: one verb per module under simgan/commands/."""

__version__ = "0.1.0"
