"""TFDS builder `rack_crops` (importing this registers it)."""

from data_builders.rack_crops.rack_crops_dataset_builder import (
  RackCrops,
  RackCropsConfig,
)

__all__ = ['RackCrops', 'RackCropsConfig']
