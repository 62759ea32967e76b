"""After training: evaluate a checkpoint, predict users' images, export for serving."""

#: The formats of ``mstrain export`` (here, so the command line lists them without importing
#: what exports them).
FORMATS = ("mindir", "onnx")
