"""Neural network models (PyTorch): one file per architecture family, ROS-free, written to export to ONNX."""
