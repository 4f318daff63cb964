"""TFDS builder `grocery_store` (importing this registers it)."""

from data_builders.grocery_store.grocery_store_dataset_builder import (
  GroceryStore,
  GroceryStoreConfig,
)

__all__ = ['GroceryStore', 'GroceryStoreConfig']
