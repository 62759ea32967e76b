"""User-side modules the end-to-end tests load through --callback and YAML ``callbacks``."""
