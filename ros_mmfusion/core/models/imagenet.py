"""ImageNet statistics: the per-channel mean and standard deviation (on the 0..1 scale, R,G,B order) that the
ImageNet-pretrained backbones (MiT of CMX, EfficientNet of ViNT) normalise their inputs with. Shared by the task
folders and the X encoders, so none of them imports another task for two constants."""
from __future__ import annotations

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
