"""Reports that read run records only (never the trainer): tables and sweep summaries."""
