"""mindvision's pieces under their earlier name: the dataset is in :mod:`trainer.data.mindvision`,
the network in :mod:`trainer.networks.mindvision` and the callback in ``callbacks``; this name
stays so that ``trainer.mindvision_source:ValAccMonitor`` keeps working."""

from callbacks.val_acc_monitor import ValAccMonitor  # noqa: F401
from trainer.data.mindvision import build_dataset, mindvision_root  # noqa: F401
from trainer.networks.mindvision import lenet  # noqa: F401
