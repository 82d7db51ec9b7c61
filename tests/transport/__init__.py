"""Tests for transport."""
