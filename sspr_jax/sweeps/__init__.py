"""Sweeps: many runs of one experiment, and one report over many runs.

A sweep file (configs/sweeps/*.py) names a base config and the overrides of
each run (`spec`); `run` checks them all, then runs each with main.py into
ROOT/<run name>; `report` tabulates and plots the metrics of any workdirs.
On top of the modes: nothing below imports this package.
"""
