"""Tests for ble."""
