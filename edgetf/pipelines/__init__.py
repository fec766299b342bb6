"""One module per task family; each pipeline reads as preprocess -> session -> postprocess."""
