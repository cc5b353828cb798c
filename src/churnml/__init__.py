"""churnml: predict which customers are about to leave, explain why, serve the score."""

__version__ = "0.1.0"
