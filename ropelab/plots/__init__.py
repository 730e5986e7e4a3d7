"""Plot functions: each takes data and returns a matplotlib Figure (saved with ropelab.figures.save_figure);
``ruler_report`` draws a run's whole set of RULER figures and tables through the save functions it is given."""
