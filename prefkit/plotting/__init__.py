"""Plot functions, one module per chapter. Each takes data and an optional ax, and returns the figure."""
