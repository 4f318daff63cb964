"""TFDS builder `image_folder` (importing this registers it)."""

from data_builders.image_folder.image_folder_dataset_builder import (
  ImageFolder,
  ImageFolderConfig,
)

__all__ = ['ImageFolder', 'ImageFolderConfig']
