"""From scores to the paper's tables and figures: the experiment grid, metrics, analyses, plots and reports."""
