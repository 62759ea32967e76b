"""After training: evaluate a checkpoint, predict users' images, export for serving."""
