"""Running the notebooks headless: ``python -m bliss_utils reproduce`` and its one-notebook runner."""
