"""NumPy float64 reference (filled in by the reference module)."""
