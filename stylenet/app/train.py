"""The "Train a style" tab: a thin view over the job API (``stylenet.jobs``).

Each page sees, and may cancel, resume or delete, only its owner's jobs (``sessions``); the queue
positions count everyone's. Everything shown comes from the job folders, re-read every few seconds,
so a reload sees the same running job, its curves and previews, and the history. Each refresh (every
``REFRESH_S`` per open page, see ``live_view``) lists the jobs (a job.json is parsed again only when
it changed, ``JobStore.jobs``), checks which model files the finished jobs have (for the style
registry) and reads the shown job's events.jsonl. Each browser session remembers what it last drew
(a ``gr.State``) and sends only the outputs that changed. Previews are copied into the owner's
results area before they are shown: nothing is served from the models folder.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from .. import paths
from ..data import list_images
from ..jobs import Job, JobError, JobStore, estimate
from ..jobs.job import queue_positions, read_events
from ..norms import NORM_KINDS, NORMS, norm_label
from ..train import PRESETS
from ..units import duration
from .errors import hide_paths, user_error
from .queueing import LIGHT
from .sessions import Sessions, client_watch
from .styles import StyleRegistry
from .uploads import ResultFiles, photo_input

REFRESH_S = 2.0  # the live view's refresh period
LOSS_COLUMNS = ("step", "loss", "curve")
def tint(color: str, amount: float = 0.55) -> str:
    """``color`` mixed with white: a norm's content curve beside its darker style curve."""
    rgb = [int(color[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(c + (255 - c) * amount):02x}" for c in rgb)


def curve_colors() -> dict[str, str]:
    colors = {}
    for norm in NORM_KINDS:
        colors[f"{norm_label(norm)} style"] = NORMS[norm].color
        colors[f"{norm_label(norm)} content"] = tint(NORMS[norm].color)
    return colors


def loss_table(events: list[dict[str, Any]]) -> pd.DataFrame | None:
    """Style and content loss of every norm at every reported step, long format for gr.LinePlot;
    None before the first step (a plot first drawn from an empty table never shows later lines)."""
    rows = [(e["step"], losses[part], f"{norm_label(norm)} {part}")
            for e in events if e["event"] == "step"
            for norm, losses in e["losses"].items() for part in ("style", "content")]
    return pd.DataFrame(rows, columns=list(LOSS_COLUMNS)) if rows else None


def status_text(job: Job | None, events: list[dict[str, Any]], position: int | None = None) -> str:
    """One glance: state (``position`` in the queue), step, speed, ETA and the latest losses per norm."""
    if job is None:
        return "No job yet: upload a painting, name it and press **Train**."
    head = f"### {job.name} — {job.state}"
    if job.state == "queued":
        return f"{head}\nposition **{position}** in the queue (one job trains at a time)"
    steps = [e for e in events if e["event"] == "step"]
    lines = [head]
    if steps:
        last = steps[-1]
        line = f"step **{last['step']} / {last['steps']}** · {last['images_per_s']:.1f} images/s"
        if job.state == "running":
            line += f" · ETA **{duration(last['eta_s'])}**"
        lines.append(line)
        lines.append(" · ".join(f"{norm_label(n)}: style {v['style']:.3f}, content {v['content']:.3f}"
                                for n, v in last["losses"].items()))
    elif job.state == "running":
        scans = [e for e in events if e["event"] == "scan"]
        lines.append(f"reading the training photos: {scans[-1]['done']} / {scans[-1]['total']}" if scans
                     else "starting: loading VGG and the painting's style targets…")
    if job.message:
        lines.append(hide_paths(job.message))
    return "\n\n".join(lines)


def preview_gallery(job: Job, events: list[dict[str, Any]]) -> list[tuple[Path, str]]:
    """The newest preview of every norm on every preview photo, captioned with norm and step (files
    in the job's folder: copy them to the owner's area before showing them)."""
    previews = [e for e in events if e["event"] == "preview"]
    if not previews:
        return []
    last = previews[-1]
    return [(job.folder / file, f"{norm_label(norm)} · step {last['step']}")
            for norm, files in last["images"].items() for file in files
            if isinstance(file, str) and (job.folder / file).resolve().is_relative_to(job.folder.resolve())]


def history(jobs: list[Job], positions: dict[str, int]) -> str:
    """Every job, newest first; ``positions`` from ``queue_positions(jobs)``."""
    if not jobs:
        return ""
    rows = ["| style | norms | steps | state |", "|---|---|---|---|"]
    for job in reversed(jobs):
        state = job.state + (f" (position {positions.get(job.id)})" if job.state == "queued" else "")
        state += " — resumable" if job.resumable else ""
        rows.append(f"| {job.name} | {' + '.join(norm_label(n) for n in job.norms)} | "
                    f"{job.settings['steps']} | {state} |")
    return "\n".join(rows)


def default_job(jobs: list[Job]) -> Job | None:
    """What a fresh page shows: the running job, else the next queued one, else the newest."""
    for state in ("running", "queued"):
        for job in jobs:
            if job.state == state:
                return job
    return jobs[-1] if jobs else None


def live_view(store: JobStore, registry: StyleRegistry, files: ResultFiles, owner: str, selected: str | None,
              last: dict[str, Any]) -> tuple:
    """One refresh of ``owner``'s live view: (job dropdown, status, loss plot, previews, history, Cancel,
    Resume and Delete shown or not, the note cleared when the job's state moved on, what was drawn), each
    ``gr.skip()`` where ``last`` (what this session drew) shows it already."""
    everyone = store.jobs()
    registry.refresh(everyone)
    positions = queue_positions(everyone)
    jobs = [j for j in everyone if j.owner == owner]
    by_id = {j.id: j for j in jobs}
    job = by_id.get(selected) or default_job(jobs)
    events = read_events(job.folder) if job else []
    now = {"jobs": [(j.id, j.state, positions.get(j.id)) for j in jobs], "job": job and job.id,
           "events": len(events), "state": job and (job.state, job.message)}
    new_job, jobs_changed = now["job"] != last.get("job"), now["jobs"] != last.get("jobs")
    changed = new_job or now["events"] != last.get("events") or now["state"] != last.get("state")
    # Only an empty or stale selection is replaced: this refresh may have started before the user
    # picked or submitted a job, and must not switch the view back.
    chosen = {"value": now["job"]} if now["job"] != selected else {}
    redraw = changed or jobs_changed
    return (gr.update(choices=job_choices(jobs), **chosen) if jobs_changed or chosen else gr.skip(),
            status_text(job, events, job and positions.get(job.id)) if redraw else gr.skip(),
            loss_table(events) if changed else gr.skip(),
            files.copies(preview_gallery(job, events), owner) if job and changed else ([] if new_job else gr.skip()),
            history(jobs, positions) if jobs_changed else gr.skip(),
            *([gr.update(visible=shown) for shown in actions(job)] if redraw else [gr.skip()] * 3),
            "" if "state" in last and now["state"] != last["state"] else gr.skip(),  # "Cancelling …" is over
            now)


def actions(job: Job | None) -> tuple[bool, bool, bool]:
    """Which of Cancel, Resume and Delete apply to the shown job."""
    active = job is not None and job.state in ("queued", "running")
    return active, job is not None and not active and job.resumable, job is not None and not active


def train_tab(store: JobStore, registry: StyleRegistry, sessions: Sessions, files: ResultFiles, heavy: dict,
              blocks: gr.Blocks | None = None) -> None:
    """Build the tab inside the caller's ``gr.Tab``. ``heavy``: the app-wide concurrency group (a
    submission decodes the painting and the photos); ``blocks``: the app, whose queue says when a
    submission's client left (its photos stop being decoded)."""
    limits = store.limits
    gr.Markdown("Upload a painting and train your own style. Every chosen norm trains **on the same batches** "
                "of photos, side by side: watch Instance Norm find the style while Batch Norm lags. One job "
                "trains at a time (in a background process); others wait in a queue. Finished models appear in "
                f"**Compare** and **Why IN?**.\n\n**Training photos:** {photo_source(store)}", elem_id="train-intro")
    times = gr.Markdown(preset_times(store), elem_id="preset-times")
    with gr.Row():
        with gr.Column(scale=1):
            painting = photo_input("Painting", 200, elem_id="train-painting")
            name = gr.Textbox(label="Style name", placeholder="e.g. my_watercolour", max_length=100)
            photos = gr.File(file_count="multiple", file_types=[".jpg", ".jpeg", ".png", ".webp", ".zip"],
                             label=f"Your training photos (optional: photos or a zip; by default "
                                   f"{photo_count(store)} photos, see above)", elem_id="train-photos", height=90)
            preview = photo_input("Preview photo (optional; previews also use an example photo)", 140,
                                  elem_id="train-preview-photo")
            preset = gr.Radio(store.presets, value="quick", label="Preset", elem_id="train-preset")
            norms = gr.CheckboxGroup([(norm_label(n), n) for n in NORM_KINDS], value=["batch", "instance"],
                                     label="Norms (trained on identical batches)")
            with gr.Accordion("Training settings", open=False):
                steps = gr.Number(PRESETS["quick"]["steps"], precision=0, label=f"Steps (1 to {limits.steps})")
                image_size = gr.Number(PRESETS["quick"]["image_size"], precision=0,
                                       label=f"Training crop size, px (32 to {limits.image_size})")
                width = gr.Number(PRESETS["quick"]["width"], precision=0,
                                  label=f"Network width (4 to {limits.width}; 32 = Johnson)")
            train = gr.Button("Train", variant="primary", elem_id="train-btn")
            note = gr.Markdown(elem_id="train-note")
        with gr.Column(scale=2):
            job_id = gr.Dropdown([], value=None, label="Job", elem_id="job-select", allow_custom_value=True)
            status = gr.Markdown(elem_id="job-status")
            curves = gr.LinePlot(None, x="step", y="loss", color="curve", color_map=curve_colors(),
                                 title="Style and content loss (relative)", height=300, elem_id="loss-plot")
            previews = gr.Gallery(label="Previews (each model in eval mode)", columns=4, fit_columns=False,
                                  height=260, object_fit="contain", format="png", elem_id="job-previews")
            with gr.Row():  # each shown only where it applies to the shown job (``actions``)
                cancel = gr.Button("Cancel", variant="stop", elem_id="cancel-btn", visible=False)
                resume = gr.Button("Resume", elem_id="resume-btn", visible=False)
                delete = gr.Button("Delete job and its models", elem_id="delete-btn", visible=False)
            jobs_md = gr.Markdown(elem_id="job-history")
    seen = gr.State({})
    timer = gr.Timer(REFRESH_S)

    def fill(preset_name: str):
        values = PRESETS[preset_name]
        return values["steps"], values["image_size"], values["width"]

    def submit(painting_path, style_name, preset_name, chosen, n_steps, size, net_width, preview_path=None,
               photo_paths=None, request: gr.Request = None):
        try:
            job = store.submit(painting_path, style_name, list(chosen or []), preset_name,
                               {"steps": n_steps, "image_size": size, "width": net_width}, preview_path,
                               owner=sessions.owner(request), photos=list(photo_paths or []),
                               stop=client_watch(blocks, request))
        except JobError as exc:
            raise user_error(str(exc)) from None
        position = store.position(job)
        message = f"Queued **{job.name}**" + (f" (position {position})" if position else "")
        return job.id, message  # the next refresh lists it among the jobs

    def act(action: Callable[..., Job], verb: str) -> Callable[..., str]:
        def run(selected: str | None, request: gr.Request = None) -> str:
            try:
                job = action(selected or "", sessions.owner(request))
            except JobError as exc:
                raise user_error(str(exc)) from None
            registry.refresh()
            return f"{verb} **{job.name}**"
        return run

    def refresh(selected: str | None, last: dict[str, Any], request: gr.Request = None):
        """Everything the live view shows, skipping outputs this session already has."""
        return live_view(store, registry, files, sessions.owner(request), selected, last)

    live = [job_id, status, curves, previews, jobs_md, cancel, resume, delete, note, seen]
    preset.change(fill, preset, [steps, image_size, width], api_name=False, **LIGHT)
    inputs = [painting, name, preset, norms, steps, image_size, width, preview, photos]
    train.click(submit, inputs, [job_id, note], api_name="train", show_progress="minimal", **heavy)
    cancel.click(act(store.cancel, "Cancelling"), job_id, note, api_name="cancel", show_progress="hidden", **LIGHT)
    resume.click(act(store.resume, "Resumed"), job_id, note, api_name="resume", show_progress="hidden", **LIGHT)
    delete.click(act(store.delete, "Deleted"), job_id, note, api_name="delete_job", show_progress="hidden", **LIGHT)
    timer.tick(refresh, [job_id, seen], live, api_name=False, show_progress="hidden", **LIGHT)
    job_id.input(refresh, [job_id, gr.State({})], live, api_name=False, show_progress="hidden", **LIGHT)
    # active for every page of an app started before the times were measured: such a page replaces the build-time
    # "being measured" within a second, then stops asking
    measuring = gr.Timer(1, active=estimate.read(store.root / estimate.ESTIMATE_FILE) is None)

    def measured():
        """The preset times once the measurement has written them (the timer then stops)."""
        return preset_times(store), gr.Timer(active=estimate.read(store.root / estimate.ESTIMATE_FILE) is None)

    measuring.tick(measured, None, [times, measuring], api_name=False, show_progress="hidden", **LIGHT)

    def jobs(request: gr.Request = None) -> list[dict]:
        """The caller's jobs with their state, queue position and, once done, the norms of their models."""
        found = store.jobs()
        registry.refresh(found)
        positions = queue_positions(found)
        owner = sessions.owner(request)
        return [job_summary(j, positions.get(j.id)) for j in found if j.owner == owner]

    def job_events(job: str, request: gr.Request = None) -> list[dict]:
        """The worker's events for one of the caller's jobs: steps (losses per norm, images/s, ETA),
        previews, the end."""
        try:
            events = store.events(job, sessions.owner(request))
        except JobError as exc:
            raise user_error(str(exc)) from None
        return [{**e, "message": hide_paths(e["message"])} if isinstance(e.get("message"), str) else e
                for e in events]

    gr.api(jobs, api_name="jobs", **LIGHT)
    gr.api(job_events, api_name="job_events", **LIGHT)


def photo_source(store: JobStore) -> str:
    """Where a job's photos come from when the user sends none, said before anything is submitted."""
    count = photo_count(store)
    if store.photos.resolve() == paths.examples_dir().resolve():
        return (f"unless you add your own below, the {count} freely licensed example photos shipped with the app "
                "(a small set: fine for a first style; a larger folder trains better).")
    return f"unless you add your own below, the {count} photos of this server's training folder ({store.photos.name})."


def preset_times(store: JobStore) -> str:
    """How long a BN + IN job of each preset takes on this server, as the trainer times a step
    (``stylenet.jobs.estimate``); a line saying so while that is still being measured."""
    found = estimate.read(store.root / estimate.ESTIMATE_FILE)
    if found is None:
        return "**Time per preset on this server:** being measured (a minute or a few)…"
    if "error" in found:
        return f"**Time per preset on this server:** could not be measured ({hide_paths(found['error'])})."
    shown = " · ".join(f"**{name}** about {duration(found['seconds'][name], estimate=True)}" for name in store.presets
                       if name in found["seconds"])
    return (f"**Time per preset on this server** (BN + IN, timed the way the trainer times its steps; more norms "
            f"take longer): {shown}. The first preview appears after the first step.")


def photo_count(store: JobStore) -> int:
    """How many photos the store's default training folder holds (what a job without photos trains on)."""
    return len(list_images(store.photos)) if store.photos.is_dir() else 0


def job_choices(jobs: list[Job]) -> list[tuple[str, str]]:
    return [(job.summary(), job.id) for job in reversed(jobs)]


def job_summary(job: Job, position: int | None) -> dict[str, Any]:
    """What the API tells a job's owner: no server path (``models``: the norms whose model is written)."""
    return {"id": job.id, "name": job.name, "norms": job.norms, "state": job.state, "message": hide_paths(job.message),
            "position": position, "settings": job.settings, "resumable": job.resumable,
            "models": [n for n in job.norms if job.model_path(n).is_file()]}
