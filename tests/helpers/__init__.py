"""Tests for helpers."""
