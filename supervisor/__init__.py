"""hyos-supervisor: runs the HyOS stack hardened and keeps it healthy."""

__version__ = "0.1.0"
