"""Point-in-time features: a declared catalogue of specs and a vectorised engine that computes them.

``feature_catalogue`` says which features a dataset supports; ``build_features`` computes them for
(customer, cutoff) pairs using only what was known strictly before each cutoff.
"""

from churnml.features.catalogue import FAMILIES, FeatureSpec, catalogue_table, feature_catalogue
from churnml.features.engine import build_features

__all__ = ["FAMILIES", "FeatureSpec", "build_features", "catalogue_table", "feature_catalogue"]
