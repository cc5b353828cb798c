"""The prediction service: the model loaded as data, the scorer and its fast path, the HTTP schemas and the
BentoML service."""
