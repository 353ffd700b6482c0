"""mamlkit: the tested code behind the MAML course."""

__version__ = "0.1.0"
