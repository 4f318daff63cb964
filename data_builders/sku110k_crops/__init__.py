"""TFDS builder `sku110k_crops` (importing this registers it)."""

from data_builders.sku110k_crops.sku110k_crops_dataset_builder import (
  Sku110kCrops,
  Sku110kCropsConfig,
)

__all__ = ['Sku110kCrops', 'Sku110kCropsConfig']
