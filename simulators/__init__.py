"""Simulators: physiology model and virtual devices for a clinic without hardware."""
