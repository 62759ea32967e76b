# ruff: noqa: E402, E501, I001
"""The training code of MindSpore's "Model Training" tutorial, as printed there (mindvision 0.1.0).

Run by tests/test_mindvision.py to check that the installed environment runs learners' code
unchanged. Only two things differ from the tutorial: the command line may give the data folder,
the epochs, the batch size and the learning rate (the test uses generated digits and a short run), in which case the
download is off (mindvision's download server no longer serves MNIST); and an evaluation of the
test split follows the training, printed as ``eval: {'acc': ...}``.

Usage: python mindvision_tutorial.py [DATA_DIR EPOCHS BATCH_SIZE LEARNING_RATE]
"""

import sys

epochs = 10
batch_size = 32
momentum = 0.9
learning_rate = 1e-2

path, download = "./mnist", True
if len(sys.argv) == 5:
    path, download = sys.argv[1], False
    epochs, batch_size, learning_rate = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])

import mindspore.nn as nn
from mindspore.train import Model

from mindvision.classification.dataset import Mnist
from mindvision.classification.models import lenet
from mindvision.engine.callback import LossMonitor

# 1. Build a dataset.
download_train = Mnist(path=path, split="train", batch_size=batch_size, repeat_num=1, shuffle=True, resize=32, download=download)
dataset_train = download_train.run()

# 2. Define a neural network.
network = lenet(num_classes=10, pretrained=False)
# 3.1 Define a loss function.
net_loss = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction='mean')
# 3.2 Define an optimizer function.
net_opt = nn.Momentum(network.trainable_params(), learning_rate=learning_rate, momentum=momentum)
# 3.3 Initialize model parameters.
model = Model(network, loss_fn=net_loss, optimizer=net_opt, metrics={'acc'})

# 4. Train the neural network.
model.train(epochs, dataset_train, callbacks=[LossMonitor(learning_rate, 1875)])

# Evaluate on the test split (the tutorial's next page does this).
download_eval = Mnist(path=path, split="test", batch_size=batch_size, resize=32, download=download)
dataset_eval = download_eval.run()
print("eval:", model.eval(dataset_eval), flush=True)
