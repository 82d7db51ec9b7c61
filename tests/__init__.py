"""Tests for .."""
