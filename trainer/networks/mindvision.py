"""mindvision's LeNet-5 as ``--net mindvision-lenet``, imported only when it is built."""

from __future__ import annotations

from trainer.extras import import_mindvision
from trainer.registry import register_network


@register_network("mindvision-lenet", rank=90, image_size=32, channels=1,
                  help="mindvision's LeNet-5 (needs mindvision), 32x32 grayscale inputs")
def lenet(num_classes: int = 10):
    """mindvision's LeNet-5 (``mindvision.classification.models.lenet``), not pretrained.

    Registered as ``--net mindvision-lenet``. It takes 32x32 inputs, like ``--net lenet``.

    Raises:
        ConfigError: mindvision is missing or broken.
    """
    models = import_mindvision("mindvision.classification.models", "--net mindvision-lenet")
    return models.lenet(num_classes=num_classes, pretrained=False)

