"""The "Deepfake" tab in the Video Sequence Editor's sidebar (N panel): job state, then the three
steps top to bottom in the order a user runs them."""
from __future__ import annotations

from typing import Any

import bpy

from . import evaluation, ops, props, vse


class DEEPFAKE_PT_panel(bpy.types.Panel):
    bl_idname = "DEEPFAKE_PT_panel"
    bl_label = "Deepfake"
    bl_space_type = "SEQUENCE_EDITOR"
    bl_region_type = "UI"
    bl_category = "Deepfake"

    def draw(self, context: Any) -> None:
        layout, scene = self.layout, context.scene
        layout.use_property_split, layout.use_property_decorate = True, False
        settings = scene.deepfake
        busy = ops.current_job() is not None
        self._draw_job(layout, settings)
        strip = vse.active_strip(scene)
        selected = vse.selected_strips(scene)

        box = layout.box()
        box.enabled = not busy
        box.label(text="1. Extract", icon="USER")
        box.prop(settings, "aligner")
        box.label(text=f"{len(selected)} strip(s) selected" if selected else "Select movie or image strips",
                  icon="SEQ_STRIP_DUPLICATE")
        link = props.strip_link(scene, strip, rekey=False) if strip is not None else None
        if link is not None:
            box.label(text=f"Faceset: {bpy.path.basename(link.faceset.rstrip('/'))}", icon="LINKED")
        box.operator("deepfake.extract", icon="IMPORT")

        box = layout.box()
        box.enabled = not busy
        box.label(text="2. Train", icon="PLAY")
        for side, items in (("A", settings.facesets_a), ("B", settings.facesets_b)):
            col = box.column(align=True)
            row = col.row()
            row.label(text=f"Faceset {side}" + (" (footage)" if side == "A" else " (new face)"))
            add = row.operator("deepfake.faceset_add", text="", icon="ADD")
            add.side = side
            if not items:
                col.label(text="  + adds the selected strips' facesets", icon="BLANK1")
            for index, item in enumerate(items):
                row = col.row(align=True)
                row.use_property_split = False
                row.prop(item, "path", text="")
                remove = row.operator("deepfake.faceset_remove", text="", icon="X")
                remove.side, remove.index = side, index
        box.prop(settings, "model_folder")
        box.prop(settings, "init_model")
        box.prop(settings, "layout")
        box.prop(settings, "preset")
        box.prop(settings, "iterations")
        box.operator("deepfake.train", icon="PLAY")

        box = layout.box()
        box.enabled = not busy
        box.label(text="3. Swap", icon="UV_SYNC_SELECT")
        box.label(text=f"Active: {strip.name}" if strip is not None else "Make a strip active", icon="SEQUENCE")
        row = box.row(align=True)
        row.prop(settings, "swap_mode", expand=True)
        box.prop(settings, "color")
        box.prop(settings, "swap_format")
        row = box.row(align=True)
        row.prop(settings, "swap_existing", expand=True)
        box.prop(settings, "markers")
        box.prop(settings, "evaluate")
        box.operator("deepfake.swap", icon="SEQ_SEQUENCER")
        row = box.row(align=True)
        row.prop(settings, "farm_chunk_size")
        row.operator("deepfake.farm_job", text="Farm Job", icon="NETWORK_DRIVE")
        row.operator("deepfake.farm_result", text="Load Result", icon="IMPORT")
        self._draw_evaluation(box, props.swap_result(scene, strip))

    @staticmethod
    def _draw_evaluation(box: Any, result: Any) -> None:
        """The active swap's figures beside their controls, and the way to the full report."""
        if result is None:
            return
        col = box.column(align=True)
        col.label(text=f"Evaluation: {result.name}", icon="GRAPH")
        lines = evaluation.summary_lines(result.summary)
        for line in lines or ["Not evaluated yet"]:
            col.label(text=line, icon="BLANK1")
        row = box.row(align=True)
        row.operator("deepfake.evaluate", text="Evaluate" if not lines else "Re-evaluate", icon="FILE_REFRESH")
        sub = row.row(align=True)
        sub.enabled = bool(result.report)
        sub.operator("deepfake.open_report", icon="URL")

    @staticmethod
    def _draw_job(layout: Any, settings: Any) -> None:
        """The running or last job: a bar, then the status one part per line (the sidebar is
        ~300 px wide; one long line was cut in the middle, hiding progress and ETA)."""
        if not settings.job_status and ops.current_job() is None:
            return
        box = layout.box()
        running = ops.current_job() is not None
        if running and hasattr(box, "progress"):
            box.progress(factor=settings.job_progress, type="BAR", text=f"{settings.job_progress:.0%}")
        parts = (settings.job_status or "starting").split(", ")
        box.label(text=parts[0], icon="TIME" if running else "INFO")
        for part in parts[1:]:
            box.label(text=part, icon="BLANK1")
        if running:
            box.operator("deepfake.cancel", icon="CANCEL")


classes: tuple[type, ...] = (DEEPFAKE_PT_panel,)
