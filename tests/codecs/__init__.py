"""Tests for codecs."""
