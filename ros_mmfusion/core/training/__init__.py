"""Training of the suite's default weights on the synthetic world (ROS-free; CPU or CUDA)."""
