"""Using a trained model: loading, prediction, ensembles, checkpoint averaging, exports and serving them."""
