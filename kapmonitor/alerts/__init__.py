"""The alarm engine: pure, arrays and a clock in, events out."""
