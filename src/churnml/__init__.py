"""churnml: predict which customers are about to leave, explain why, serve the score."""

from churnml.allocation import avoid_fault_stalls

__version__ = "0.1.0"

avoid_fault_stalls()  # fresh memory otherwise stalls large steps for seconds on most Linux machines
