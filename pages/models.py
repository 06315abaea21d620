from pages import route_through_app

route_through_app()


import pandas as pd
import streamlit as st

from pages.parts import lineage as lineage_view
from pipeline import charts, clock, jobs, personas, storage
from pipeline.errors import UserFacingError
from pipeline.evaluation import service as evaluation
from pipeline.registry import export, export_job, figures, gguf_file, lifecycle, retrain
from pipeline.registry import prompts as prompt_versions


@st.fragment(run_every=2)
def export_status(entry_id: int) -> None:
    """The model's latest export: progress while it runs; then its size, time, check, download and commands."""
    view = export_job.latest(entry_id)
    if view is None:
        st.caption("No export of this model yet.")
        return
    label = export_job.FORMATS.get(view.format, view.format).split(" (")[0] + (
        f" {view.file_type}" if view.file_type else ""
    )
    if view.active:
        text = view.message or ("waiting for the background worker" if view.status == "queued" else "starting")
        st.progress(view.fraction, text=f"Job {view.job_id}, {label}: {text}")
        if st.button("Cancel the export", key="models_export_cancel"):
            jobs.request_cancel(view.job_id)
        return
    if view.status == "failed":
        st.error(f"Export job {view.job_id} ({label}) failed: {view.error} Nothing was kept.")
        return
    if view.status == "cancelled" or view.result is None:
        st.info(f"Export job {view.job_id} ({label}) was {view.status}; nothing was kept.")
        return
    made = view.result
    path = export.exported(made["file"])
    st.success(f"Job {view.job_id}: {made['file']}, {made['bytes'] / 1e6:.1f} MB, made in {made['seconds']:.0f} s.")
    check = made.get("check")
    if check:
        c1, c2, c3 = st.columns(3)
        c1.metric("GGUF file", f"{made['gguf_bytes'] / 1e6:.0f} MB",
                  help=f"{made['gguf_bytes'] / made['source_bytes']:.0%} of the model's training weights "
                  f"({made['source_bytes'] / 1e6:.0f} MB)")  # fmt: skip
        c2.metric("Same next token", f"{check['top1_agreement']:.1%}",
                  help=f"over {check['positions']} positions of fixed chat prompts, the file loaded back against the "
                  f"model; needed {check['min_top1']:.0%}; ties broken the other way count against: "
                  f"{check['exact_top1']:.1%}")  # fmt: skip
        c3.metric("Largest logit difference", f"{check['max_logit_difference']:.3g}")
    if path.exists():
        st.download_button(f"Download {made['file']}", data=path.read_bytes, file_name=made["file"],
                           mime="application/zip", on_click="ignore", key="models_download")  # fmt: skip
    else:
        st.warning(f"{made['file']} is no longer in the exports folder ({storage.where()}); export it again.")
    if made.get("ollama"):
        st.markdown("**Run it in Ollama.** Unzip it, open a terminal in the unzipped folder, then:")
        st.code(f"{made['ollama']['create']}\n{made['ollama']['run']}", language="bash")
    if made.get("llama_cpp"):
        st.markdown("**Or serve it with llama.cpp** (an OpenAI-compatible server on this machine):")
        st.code(made["llama_cpp"], language="bash")


st.title("Models")
st.caption(
    "Every model the studio knows: the embedded base, fine-tuned models and prompt-only variants, with their "
    "quality, speed, size, cost and training figures. Deploy one as a persona's model; roll back; archive."
)
who = st.session_state.get("user_name", "")
persona_list = personas.list_personas()
by_name = {p.name: p for p in persona_list}
scope = st.selectbox("Persona", ["(all)", *by_name], key="models_persona")
persona = by_name.get(scope)

entries = lifecycle.list_models(persona.id if persona else None)
rows = figures.summaries(entries)  # cached: rebuilt when a model, its evaluation or its playground use changes
table = pd.DataFrame(rows)
st.dataframe(table[[c for c in figures.HEADLINE if c in table.columns]], hide_index=True, width="stretch")
with st.expander("Every figure"):
    st.dataframe(table, hide_index=True, width="stretch")
if persona is not None:
    active = lifecycle.deployed(persona.id)
    st.markdown(
        f"**Deployed for {persona.name}:** {active.name if active else 'none yet (the embedded model answers)'}"
    )

names = [e.name for e in entries]
chosen_name = st.selectbox("Model", names, key="models_pick")
entry = next(e for e in entries if e.name == chosen_name)
tabs = st.tabs(
    ["Deploy", "Compare", "Export", "Performance", "History", "Prompt versions", "Lineage", "Retrain on an open base"]
)

with tabs[0]:
    a, b = st.columns([2, 1])
    target = a.selectbox("Serve persona", list(by_name), key="models_deploy_persona",
                         index=list(by_name).index(persona.name) if persona else 0)  # fmt: skip
    notes = b.text_input("Notes", key="models_notes", placeholder="why")
    c1, c2, c3 = st.columns(3)
    try:
        if c1.button("Deploy", type="primary", key="models_deploy", disabled=entry.status == "archived"):
            lifecycle.deploy(entry.id, by_name[target].id, who, notes)
            st.success(f"{entry.name} now serves {target}.")
        if c2.button(f"Roll back {target}", key="models_rollback"):
            back = lifecycle.rollback(by_name[target].id, who, notes)
            st.success(f"Rolled back: {back.name} serves {target} again.")
        if entry.status == "archived":
            if c3.button("Restore as a candidate", key="models_restore"):
                lifecycle.restore(entry.id, who, notes)
                st.success(f"{entry.name} is a candidate again.")
        elif c3.button("Archive", key="models_archive"):
            lifecycle.archive(entry.id, who, notes)
            st.success(f"Archived {entry.name}.")
    except UserFacingError as exc:
        st.error(str(exc))

with tabs[1]:
    picked = st.multiselect("Compare two or three models", names, max_selections=3, key="models_compare",
                            default=names[:2] if len(names) >= 2 else names)  # fmt: skip
    compared = [r for r in rows if r["name"] in picked]
    figure = charts.model_comparison(compared, figures.COMPARED)
    if figure is None:
        st.info("Pick two or three models that have figures (run an evaluation or measure performance first).")
    else:
        st.plotly_chart(figure, width="stretch", key="models_compare_chart")
    left_out = charts.comparison_left_out(compared, figures.COMPARED)
    if len(compared) >= 2 and left_out:
        st.caption("Not drawn, 0 for every model picked: " + ", ".join(left_out) + ".")
    st.caption(
        "Rating and win rate are drawn only for models with enough battles, as on the Leaderboard; "
        "a model without one is missing from those charts."
    )

with tabs[2]:
    st.caption(
        "Take the model out of the studio. An export runs in the background (you can leave this page); "
        "a GGUF file is loaded back and checked against the model before it is offered."
    )
    gguf_type = st.selectbox("Precision of the GGUF file (Ollama, llama.cpp)", list(gguf_file.TYPES),
                             format_func=gguf_file.TYPE_LABELS.get, key="models_export_type",
                             index=list(gguf_file.TYPES).index(gguf_file.DEFAULT_TYPE))  # fmt: skip
    buttons = export_job.BUTTONS.items()
    for column, (export_format, label) in zip(st.columns(len(buttons)), buttons, strict=True):
        if column.button(label, key=f"models_export_{export_format}",
                         type="primary" if export_format == "ollama" else "secondary",
                         help=export_job.FORMATS[export_format]):  # fmt: skip
            try:
                queued = export_job.start(entry.id, export_format, gguf_type, started_by=who)
            except UserFacingError as exc:
                st.error(str(exc))
            else:
                st.success(f"Export queued as job {queued.id}: follow it here or on Live monitoring.")
    export_status(entry.id)
    serving = None
    try:
        serving = export.vllm_command(entry)
    except UserFacingError:
        pass  # a cloud or prompt-only model: the export button above says why
    if serving:
        with st.expander("Serve it with vLLM (an OpenAI-compatible endpoint)"):
            st.code(serving["command"], language="bash")
            st.markdown(f"Endpoint: `{serving['endpoint']}`. Add it to the studio in `.streamlit/secrets.toml`:")
            st.code(serving["secrets_snippet"], language="toml")

with tabs[3]:
    st.caption(f"Measured on a fixed set of {len(figures.PROMPTS)} prompts, so models compare fairly.")
    if st.button("Measure performance", key="models_bench"):
        with st.spinner("Measuring…"):
            try:
                figures.measure_performance(entry.id)
            except UserFacingError as exc:
                st.error(str(exc))
            else:
                st.rerun()
    st.json(entry.metrics.get("performance") or {"performance": "not measured yet"})

with tabs[4]:
    events = lifecycle.history(model_id=entry.id)
    if events:
        st.dataframe(pd.DataFrame(events).drop(columns=["config"]), hide_index=True, width="stretch")
    else:
        st.info("No deploy, rollback or archive yet.")

with tabs[5]:
    if persona is None:
        st.info("Pick a persona above to see and improve its system prompt versions.")
    else:
        if "models_flash" in st.session_state:
            st.success(st.session_state.pop("models_flash"))
        versions = prompt_versions.versions(persona.id)
        st.dataframe(
            pd.DataFrame([{"version": v.version, "active": "●" if v.active else "", "source": v.source,
                           "created": clock.local(v.created_at), "prompt": v.system_prompt} for v in versions]),
            hide_index=True, width="stretch",
        )  # fmt: skip
        a, b = st.columns([2, 1])
        proposer = a.selectbox("Propose an improved prompt with", evaluation.model_choices(), key="models_proposer")
        if b.button("Propose from the best examples", key="models_propose"):
            try:
                made = prompt_versions.propose(persona.id, proposer, by=who)
            except UserFacingError as exc:
                st.error(str(exc))
            else:
                st.session_state["models_flash"] = f"Saved as version {made.version}."
                st.rerun()  # the table above shows the new version
        text = st.text_area("Or write a version", key="models_prompt_text", height=100)
        if st.button("Save as a new version", key="models_prompt_save"):
            try:
                made = prompt_versions.add_version(persona.id, text, by=who)
            except UserFacingError as exc:
                st.error(str(exc))
            else:
                st.session_state["models_flash"] = f"Saved as version {made.version}."
                st.rerun()  # the table above shows the new version
        numbers = [v.version for v in versions]
        a, b, c = st.columns(3)
        version = a.selectbox("Version", numbers, index=len(numbers) - 1, key="models_version")
        base = b.selectbox("Base model for a prompt-only variant", evaluation.model_choices(), key="models_base")
        few_shot = c.checkbox("With few-shot examples", key="models_fewshot")
        a, b = st.columns(2)
        if a.button("Activate this version", key="models_activate"):
            prompt_versions.activate(persona.id, version)
            st.success(f"Version {version} is now {persona.name}'s system prompt.")
        if b.button("Add as a prompt-only model", key="models_variant"):
            variant = prompt_versions.create_variant(persona.id, base, version, few_shot)
            st.success(f"{variant.name} is in the registry and can be a contestant on the Evaluate page.")
        if len(numbers) > 1:
            st.code(prompt_versions.diff(persona.id, numbers[-2], numbers[-1]) or "(no difference)", language="diff")

with tabs[6]:  # persona → run → examples → dataset → training → this model → evaluations → deployments
    lineage_view.show_model(entry.name)

with tabs[-1]:  # Retrain on an open base: the same snapshot and settings on a base that stays
    st.caption(
        "Train this model again from the same dataset snapshot (checked by its content hash) with the same "
        "settings, on this machine or at Together; then the two are evaluated side by side."
    )
    a, b = st.columns([1, 2])
    where = a.radio("Where", list(retrain.BACKENDS), format_func=retrain.BACKENDS.get, key="models_retrain_backend")
    on = b.selectbox("Open base", retrain.open_bases()[where], accept_new_options=True, key=f"models_retrain_{where}")
    try:
        again = retrain.plan_retrain(entry.id, where, on or "")
    except UserFacingError as exc:
        st.info(str(exc))
    else:
        st.markdown(
            f"Dataset **{again.dataset}**, content hash `{again.dataset_hash[:12]}` (matches the snapshot) → new "
            f"model **{again.config.name}** on `{again.config.resolved_base()}`, then evaluated {again.evaluation}."
        )
        settings_table = [{"setting": k, "value": str(v)} for k, v in again.config.model_dump(mode="json").items()]
        st.dataframe(pd.DataFrame(settings_table), hide_index=True, key="models_retrain_config")
        for problem in again.summary()["problems"]:
            st.error(problem)
        for note in again.summary()["notes"]:
            st.warning(note)
        if st.button("Retrain on this base", type="primary", disabled=not again.can_start, key="models_retrain"):
            try:
                job = retrain.start_retrain(entry.id, where, on or "", started_by=who)
            except UserFacingError as exc:
                st.error(str(exc))
            else:
                st.success(
                    f"Queued training job {job.id}. When it succeeds, {again.config.name} is evaluated "
                    f"{again.evaluation} by itself (see the Evaluate page)."
                )
