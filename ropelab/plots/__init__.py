"""Plot functions: each takes data and returns a matplotlib Figure (saved with ropelab.figures.save_figure)."""
