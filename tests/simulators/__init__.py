"""Tests for simulators."""
