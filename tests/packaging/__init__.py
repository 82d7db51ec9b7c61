"""Tests of the distribution: what the wheel contains and what an installed copy can run."""
