"""Tests for drivers."""
