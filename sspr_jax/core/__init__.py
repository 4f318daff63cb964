"""Shared by the packages above: mesh, checkpoints, metric files, array ops."""
