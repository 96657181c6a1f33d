"""The headless core of blender-deepfake: extract, train, swap, evaluate (see docs/ARCHITECTURE.md)."""

VERSION = "0.1.0"
"""The tool's version, as the add-on's manifest (addon_manifest.toml) says; provenance labels carry it."""
