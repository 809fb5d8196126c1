"""Pre-processing: sensor images to model input tensors (normalisation, channel order, layout); pure functions."""
