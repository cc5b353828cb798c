"""Customer history in: the data contract's tables loaded and validated (``load``), held as a ``Dataset``, or
simulated with a known truth (``simulate``)."""
