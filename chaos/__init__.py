"""chaos: a careful chaos-engineering experiment runner."""

__version__ = "0.1.0"
