"""Backbones and pre-training heads."""

from sspr_jax.models.heads import JigsawHead, LinearHead, ProjectionHead
from sspr_jax.models.resnet import ResNet, get_backbone

__all__ = [
  'JigsawHead',
  'LinearHead',
  'ProjectionHead',
  'ResNet',
  'get_backbone',
]
