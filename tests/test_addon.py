"""The add-on package registers in the real `bpy` module (its system libraries are installed)."""
from __future__ import annotations

import tomllib

from conftest import ROOT


def test_addon_registers_and_unregisters_in_bpy():
    import bpy

    import blender_deepfake

    blender_deepfake.register()
    blender_deepfake.unregister()
    assert bpy.app.version >= (4, 2, 0)


def test_manifest_names_the_extension():
    manifest = tomllib.loads((ROOT / "addon_manifest.toml").read_text())
    assert manifest["id"] == "blender_deepfake" and manifest["type"] == "add-on"
    assert manifest["blender_version_min"] == "4.2.0"
