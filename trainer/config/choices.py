"""The lists of choices, each written once: flags, YAML checks, help and the code that acts on
them all read them from here."""

NETWORKS = ("lenet", "mlp", "mindvision-lenet")
DATA_SOURCES = ("mnist", "synthetic", "mindvision")
OPTIMIZERS = ("momentum", "sgd", "adam", "adamw", "rmsprop", "adagrad")
# Initialisers of convolution and dense weights; "default" keeps each layer's own.
INITS = ("default", "normal", "xavier", "he", "uniform")
DEVICES = ("CPU", "GPU", "Ascend")
MODES = ("graph", "pynative")
# Who computes the training step's convolutions and pooling on CPU (trainer/networks/native).
KERNELS = ("native", "mindspore")
# Mixed-precision levels of mindspore.amp.auto_mixed_precision, and the loss scaling of the step.
AMP_LEVELS = ("O0", "O1", "O2", "O3", "auto")
LOSS_SCALES = ("none", "fixed", "dynamic")
MONITOR_MODES = ("min", "max")
# What a run logs every epoch that --monitor may watch (val_* are measured on the validation data).
MONITORS = ("val_accuracy", "val_loss", "accuracy", "loss")
LR_SCHEDULES = ("constant", "step", "multistep", "exponential", "cosine", "polynomial", "onecycle")
EXPORT_FORMATS = ("mindir", "onnx")
# Where --report-to sends a run's record besides its own files (comma-separated, or "none").
TRACKERS = ("tensorboard", "mlflow")
