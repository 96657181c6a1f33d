"""The "Deepfake" tab in the Video Sequence Editor's sidebar (N panel): job state and the three
steps' buttons, then a sub-panel of settings per step, in the order a user runs them."""
from __future__ import annotations

from typing import Any

import bpy

from . import evaluation, props, render_label, runner, vse


class DEEPFAKE_PT_panel(bpy.types.Panel):
    """The job, what is selected, and the three steps' buttons, at the top: at the Video Editing
    workspace's default split the sidebar shows about 350 px, and a Swap button under the
    settings of all three steps was below the fold. The settings follow in a sub-panel per step,
    which a user can fold away."""
    bl_idname = "DEEPFAKE_PT_panel"
    bl_label = "Deepfake"
    bl_space_type = "SEQUENCE_EDITOR"
    bl_region_type = "UI"
    bl_category = "Deepfake"

    def draw(self, context: Any) -> None:
        layout, scene = self.layout, context.scene
        settings = scene.deepfake
        busy = runner.busy()
        strip = vse.active_strip(scene)
        selected = vse.selected_strips(scene)
        col = layout.column(align=True)
        col.label(text=f"Active: {strip.name}" if strip is not None else "Select movie or image strips",
                  icon="SEQUENCE")
        if len(selected) > 1:
            col.label(text=f"{len(selected)} strips selected", icon="SEQ_STRIP_DUPLICATE")
        col = layout.column(align=True)
        col.enabled = not busy
        col.scale_y = 1.3
        col.operator("deepfake.extract", text="1. Extract Faces", icon="IMPORT")
        col.operator("deepfake.train", text="2. Train Model", icon="PLAY")
        col.operator("deepfake.swap", text="3. Swap Face", icon="SEQ_SEQUENCER")
        self._draw_job(layout, settings)  # below the buttons: a running job's five lines must not push them down

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
        if not settings.job_status and not runner.busy():
            return
        box = layout.box()
        running = runner.busy()
        if running and hasattr(box, "progress"):
            box.progress(factor=settings.job_progress, type="BAR", text=f"{settings.job_progress:.0%}")
        parts = (settings.job_status or "starting").split(", ")
        box.label(text=parts[0], icon="TIME" if running else "INFO")
        for part in parts[1:]:
            box.label(text=part, icon="BLANK1")
        if running:
            box.operator("deepfake.cancel", icon="CANCEL")


class _StepPanel:
    bl_space_type = "SEQUENCE_EDITOR"
    bl_region_type = "UI"
    bl_category = "Deepfake"
    bl_parent_id = "DEEPFAKE_PT_panel"

    def draw(self, context: Any) -> None:
        layout = self.layout
        layout.use_property_split, layout.use_property_decorate = True, False
        layout.enabled = not runner.busy()
        self.draw_settings(layout, context.scene)


class DEEPFAKE_PT_extract(_StepPanel, bpy.types.Panel):
    bl_idname = "DEEPFAKE_PT_extract"
    bl_label = "1. Extract"

    @staticmethod
    def draw_settings(layout: Any, scene: Any) -> None:
        layout.prop(scene.deepfake, "aligner")
        strip = vse.active_strip(scene)
        link = props.strip_link(scene, strip, rekey=False) if strip is not None else None
        if link is not None:
            layout.label(text=f"Faceset: {bpy.path.basename(link.faceset.rstrip('/'))}", icon="LINKED")


class DEEPFAKE_PT_train(_StepPanel, bpy.types.Panel):
    bl_idname = "DEEPFAKE_PT_train"
    bl_label = "2. Train"

    @staticmethod
    def draw_settings(layout: Any, scene: Any) -> None:
        settings = scene.deepfake
        for side, items in (("A", settings.facesets_a), ("B", settings.facesets_b)):
            col = layout.column(align=True)
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
        for name in ("model_folder", "init_model", "layout", "preset", "iterations"):
            layout.prop(settings, name)


class DEEPFAKE_PT_swap(_StepPanel, bpy.types.Panel):
    bl_idname = "DEEPFAKE_PT_swap"
    bl_label = "3. Swap"

    @staticmethod
    def draw_settings(layout: Any, scene: Any) -> None:
        settings = scene.deepfake
        row = layout.row(align=True)
        row.prop(settings, "swap_mode", expand=True)
        layout.prop(settings, "color")
        layout.prop(settings, "swap_format")
        row = layout.row(align=True)
        row.prop(settings, "swap_existing", expand=True)
        layout.prop(settings, "markers")
        layout.prop(settings, "evaluate")
        layout.prop(settings, "farm_chunk_size")
        row = layout.row(align=True)  # own row: beside the chunk size the sidebar cut both labels
        row.operator("deepfake.farm_job", text="Farm Job", icon="NETWORK_DRIVE")
        row.operator("deepfake.farm_result", text="Load Result", icon="IMPORT")
        line = render_label.status_line(scene)
        if line:
            layout.label(text=line, icon="LOCKED" if "off" not in line else "ERROR")
        DEEPFAKE_PT_panel._draw_evaluation(layout, props.swap_result(scene, vse.active_strip(scene)))


classes: tuple[type, ...] = (DEEPFAKE_PT_panel, DEEPFAKE_PT_extract, DEEPFAKE_PT_train, DEEPFAKE_PT_swap)
