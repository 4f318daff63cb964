"""What train/ and evaluate/ both use: the mesh, checkpoints, metric files."""
