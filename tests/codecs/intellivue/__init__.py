"""Tests for codecs/intellivue."""
