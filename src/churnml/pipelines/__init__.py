"""The pipelines, each one short function composed from churnml's steps (installed as ``churnml.pipelines``)."""
