"""Seeded synthetic shelf data in the exact formats of the real data, no download needed.

- `generate_shelves`: SKU110K archive layout (`SKU110K_fixed/images`, headerless CSVs).
- `generate_racks`: labeled rack photos with Pascal VOC XML, every class on >= 2 photos.
- `pack_archive`: `SKU110K_fixed.tar.gz` like the real archive.
"""

from data_builders.synthetic.generate import (
  ARCHIVE_ROOT,
  DEFAULT_RACK_BOXES,
  DEFAULT_RACK_PHOTO_SIZE,
  DEFAULT_SHELF_PHOTO_SIZE,
  DEFAULT_SHELF_PHOTOS,
  RACK_FOLDER,
  SPLITS,
  generate_racks,
  generate_shelves,
  pack_archive,
)
from data_builders.synthetic.products import ProductSpec, make_catalogue

__all__ = [
  'ARCHIVE_ROOT',
  'DEFAULT_RACK_BOXES',
  'DEFAULT_RACK_PHOTO_SIZE',
  'DEFAULT_SHELF_PHOTO_SIZE',
  'DEFAULT_SHELF_PHOTOS',
  'RACK_FOLDER',
  'SPLITS',
  'ProductSpec',
  'generate_racks',
  'generate_shelves',
  'make_catalogue',
  'pack_archive',
]
