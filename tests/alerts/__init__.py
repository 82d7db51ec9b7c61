"""Tests for alerts."""
