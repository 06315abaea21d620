from pages import route_through_app

route_through_app()

import pandas as pd
import streamlit as st

from pipeline.datasets import build, targets
from pipeline.errors import UserFacingError
from pipeline.jobs import board
from pipeline.training import hardware, providers, service
from pipeline.training.config import DEFAULT_BASE, PRESETS, from_preset, preset_values

st.title("Train")
st.caption(
    "Fine-tune a model on a dataset so it carries the persona in its weights: a LoRA adapter trained here, "
    "or a fine-tuning job at Together (the cloud choice) or OpenAI (closing)."
)

datasets = build.list_datasets()
if not datasets:
    st.info("Build a dataset first, on the Datasets page.")
    st.stop()

with st.container(border=True):
    a, b = st.columns([1, 2])
    dataset = a.selectbox("Dataset", [d.name for d in datasets], key="train_dataset")
    backend = b.radio(
        "Where",
        ["local", *providers.CLOUD],  # Together first: the cloud default
        horizontal=True,
        key="train_backend",
        format_func=lambda name: providers.LABELS[name] + (" (needs a key)" if service.missing_key(name) else ""),
        help=providers.OPENAI_CLOSING,
    )
    if backend == "openai":
        st.warning(providers.OPENAI_CLOSING, icon=":material/event_busy:")
    method = st.radio(
        "How it learns",
        list(service.METHODS),
        horizontal=True,
        key="train_method",
        format_func=service.METHODS.get,
        help="; ".join(f"{service.METHODS[m]}: {service.METHOD_HELP[m]}" for m in service.METHODS),
    )
    suggested, why = service.recommended_method(backend)
    st.caption(f"Recommended here: **{service.METHODS[suggested]}**. {why}")
    method_extra = {}
    if method == "bake":
        method_extra["bake_replies"] = st.radio(
            "Learn on",
            list(service.BAKE_REPLIES),
            format_func=service.BAKE_REPLIES.get,
            horizontal=True,
            key="train_bake_replies",
            help="; ".join(f"{service.BAKE_REPLIES[k]}: {service.BAKE_REPLIES_HELP[k]}" for k in service.BAKE_REPLIES),
        )
        with st.expander("More prompts to bake on (no replies needed)"):
            typed = st.text_area("Prompts, separated by a blank line", key="train_bake_prompts", height=120)
            method_extra["bake_prompts"] = [block.strip() for block in typed.split("\n\n") if block.strip()]
            method_extra["bake_failed_documents"] = st.checkbox(
                "Also the documents of examples whose reply failed", key="train_bake_failed"
            )
    if method != "dpo" and backend == "local":
        method_extra["then_dpo"] = st.checkbox(
            "Then prefer the persona's replies (a DPO stage on the dataset's preference pairs)",
            key="train_then_dpo",
            help="One job, two stages: after this method, DPO continues the same adapter on the preference pairs, "
            "against a frozen copy of where the first stage left it (Open Character Training's recipe).",
        )
    known = [t.base_model for t in targets.TARGETS if t.backend == backend]
    a, b = st.columns([2, 1])
    base = a.selectbox(
        "Base model", known or [DEFAULT_BASE[backend]], accept_new_options=True, key=f"train_base_{backend}"
    )
    preset = b.segmented_control("Preset", list(PRESETS), default="standard", key="train_preset") or "standard"
    values = preset_values(preset, backend)
    with st.expander("Advanced settings"):
        st.caption("The preset chooses these well; change one only for a reason.")
        a, b, c = st.columns(3)
        values["epochs"] = a.number_input(
            "Epochs",
            1,
            50,
            values["epochs"],
            key=f"train_epochs_{preset}",
            help="How many times it reads every example.",
        )
        values["learning_rate"] = b.number_input(
            "Learning rate",
            1e-6,
            1e-2,
            values["learning_rate"],
            format="%.6f",
            key=f"train_lr_{preset}_{backend}",
            help="How big each correction is: too high forgets what the model knew, too low learns little.",
        )
        values["batch_size"] = c.number_input("Batch size", 1, 64, 4, key="train_batch")
        values["gradient_accumulation"] = a.number_input("Gradient accumulation", 1, 64, 1, key="train_accum")
        values["max_seq_length"] = b.number_input("Max sequence length", 64, 32768, 1024, step=64, key="train_len")
        values["lora_r"] = c.number_input(
            "Adapter size (LoRA r)",
            1,
            256,
            values["lora_r"],
            key=f"train_r_{preset}",
            help="How much the add-on can learn: bigger learns more and needs more examples.",
        )
        values["lora_alpha"] = a.number_input(
            "Adapter strength (LoRA alpha)",
            1,
            512,
            values["lora_alpha"],
            key=f"train_alpha_{preset}",
            help="How strongly the add-on changes the model; usually twice the size.",
        )
        values["lora_dropout"] = b.number_input("LoRA dropout", 0.0, 0.5, 0.05, key="train_dropout")
        values["eval_every"] = c.number_input("Validation loss every N steps", 1, 10_000, 10, key="train_eval")
        values["save_every"] = a.number_input("Checkpoint every N steps", 1, 10_000, 20, key="train_save")
        values["early_stopping_patience"] = b.number_input(
            "Stop early after N checks without improvement",
            0,
            100,
            3,
            key="train_patience",
            disabled=backend != "local",
            help="This machine, with a validation split: once the validation loss has not improved for this many "
            "checks in a row, training stops and the best checkpoint becomes the model. 0 turns it off.",
        )
        values["gallery_probes"] = c.number_input(
            "Gallery prompts",
            0,
            8,
            3,
            key="train_gallery",
            disabled=backend != "local",
            help="This machine: at every check the model answers this many held-out prompts without the system "
            "prompt, shown side by side on Live monitoring with a persona score. 0 turns it off.",
        )
        values["seed"] = a.number_input("Seed", 0, 2**31 - 1, 42, key="train_seed")
        values["merge"] = b.checkbox("Also write merged weights", key="train_merge", disabled=backend != "local")
        values["name"] = c.text_input("New model's name", key="train_name", placeholder="made from the dataset and job")

try:
    config = from_preset(
        preset, **values, **method_extra, dataset=dataset, backend=backend, method=method, base_model=base
    )
    plan = service.plan(config)
except UserFacingError as exc:
    st.error(str(exc))
    st.stop()

cols = st.columns(5)
cols[0].metric("Examples", f"{plan.examples:,}")
cols[1].metric("Text per pass (tokens)", f"{plan.tokens_per_epoch:,}", help="A token is about ¾ of a word.")
cols[2].metric("Tokens paid for" if backend != "local" else "Tokens trained", f"{plan.billed_tokens:,}")
cols[3].metric("Cost (estimate)", "unknown" if plan.cost_usd is None else f"${plan.cost_usd:,.2f}")
cols[4].metric("Time (estimate)", board.duration(plan.seconds) if plan.seconds else "set by the provider")
if backend == "local":
    st.caption(
        f"Trains a small add-on to the model (a LoRA adapter) on {hardware.detect().in_words}. "
        f"Technical: {hardware.detect().description}, adapter size {config.lora_r}."
    )
for problem in [*plan.problems, *([plan.missing_key] if plan.missing_key else [])]:
    st.error(problem)
for note in plan.notes:
    st.warning(note)
if plan.rough:
    st.caption("First run: rough estimate. Later estimates use what local training measured on this machine.")
confirmed = True
if plan.needs_confirmation:
    hours = f"{plan.seconds / 3600:.1f}".removesuffix(".0")
    confirmed = st.checkbox(f"Yes, start a run of about {hours} h", key="train_confirm_long")
if st.button("Start training", type="primary", disabled=not (plan.can_start and confirmed), key="train_start"):
    try:
        job = service.start(config, started_by=st.session_state.get("user_name", ""))
    except UserFacingError as exc:
        st.error(str(exc))
    else:
        st.success(f"Queued training job {job.id}. Follow it on Live monitoring.")
        st.page_link("pages/monitor.py", label="Open Live monitoring", icon=":material/monitoring:")

st.divider()
st.subheader("Training jobs")
st.page_link(
    "pages/experiments.py",
    label="Run one again with changes, sweep a setting, compare runs, or measure how much data is needed",
    icon=":material/science:",
)
history = service.past_jobs()
if not history:
    st.info("No training jobs yet.")
else:
    table = pd.DataFrame(history)
    for column in ("train loss", "validation loss"):  # "—", not "None", for a job that logged none
        table[column] = table[column].map(lambda v: "—" if v is None or pd.isna(v) else f"{v:.3f}")
    st.dataframe(table, hide_index=True, width="stretch")
    resumable = [r["job"] for r in history if r["status"] in ("failed", "cancelled")]
    if resumable:
        a, b = st.columns([2, 1])
        pick = a.selectbox("Resume a stopped job from its last checkpoint", resumable, key="train_resume_pick")
        if b.button("Resume", key="train_resume"):
            try:
                service.resume(pick)
            except UserFacingError as exc:
                st.error(str(exc))
            else:
                st.rerun()
