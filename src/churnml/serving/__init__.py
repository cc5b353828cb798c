"""The prediction service, split by concern: ``loading`` (which model, read as data), ``scorer`` (what each
endpoint computes), ``fast_path`` (its pandas-free scoring, checked against ChurnModel at start-up),
``schemas`` (request and response models generated from the model), ``http`` (ASGI middleware and the
OpenAPI document), ``launch`` (``churnml serve`` / ``churnml bento``) and ``service`` (the BentoML service,
which loads the model when imported)."""
