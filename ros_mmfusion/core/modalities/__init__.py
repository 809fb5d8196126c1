"""X-modality encoders: turn depth, thermal and LiDAR inputs into camera-aligned images a fusion model consumes."""
