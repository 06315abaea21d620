from pages import pick_persona, route_through_app

route_through_app()

import pandas as pd
import streamlit as st

from pipeline import jobs, personas, settings
from pipeline.errors import UserFacingError
from pipeline.generation import service
from pipeline.generation.config import DOCUMENT_TYPES, EMBEDDED_REASON, defaults_for, uses_embedded
from pipeline.jobs import board
from pipeline.llm import catalog

st.title("Generate")
st.caption(
    "Each example is made in three steps: a realistic scenario, the document it calls for (memo, email, "
    "report, proposal, analysis), and the persona's response showing its traits."
)

persona_list = personas.list_personas()
if not persona_list:
    st.info("Create a persona first, on the Personas page.")
    st.stop()
models = catalog.available_models()
advice = catalog.recommended_for_generation()  # the largest Ollama model when a server answers

with st.container(border=True):
    left, right = st.columns(2)
    persona_name = pick_persona([p.name for p in persona_list], key="gen_persona", where=left)
    examples = right.number_input(
        "How many examples", min_value=1, max_value=10_000, value=10, step=5, key="gen_examples"
    )
    types = st.multiselect("Document types", DOCUMENT_TYPES, default=DOCUMENT_TYPES)
    st.markdown("**Models for each step**, first choice first; the next is tried if one fails.")
    if advice.model == settings.EMBEDDED_MODEL:
        st.caption(advice.why)
    else:
        st.info(advice.why, icon=":material/lightbulb:")
    chains = {}
    for column, stage in zip(st.columns(3), ("scenario", "document", "response"), strict=True):
        default = [advice.model] if stage in ("document", "response") else [settings.EMBEDDED_MODEL]
        chains[stage] = column.multiselect(
            stage.capitalize(), models, default=default, accept_new_options=True, key=f"chain_{stage}"
        )
    built_in = uses_embedded(chains)
    fit = defaults_for(chains)
    if built_in:
        st.caption(EMBEDDED_REASON)
    with st.expander("More settings"):
        a, b = st.columns(2)
        # keyed by the kind of chain: switching to or from the built-in model brings its own defaults
        kind = "embedded" if built_in else "hosted"
        document_words = a.slider(
            "Document length (words)", 50, 2000, fit["document_words"], step=10, key=f"document_words_{kind}"
        )
        response_words = b.slider(
            "Response length (words)", 30, 1500, fit["response_words"], step=10, key=f"response_words_{kind}"
        )
        concurrency = a.slider("Examples in parallel", 1, 32, fit["concurrency"], key=f"concurrency_{kind}")
        temperature = b.slider("Temperature", 0.0, 1.5, 0.8, 0.05)
        min_document_words = a.number_input(
            "Shortest acceptable document (words)", 1, 2000, fit["min_document_words"], key=f"min_document_{kind}"
        )
        min_response_words = b.number_input(
            "Shortest acceptable response (words)", 1, 2000, fit["min_response_words"], key=f"min_response_{kind}"
        )
        include_prompt = st.checkbox(
            "Keep the system prompt in the training examples",
            help="Off (recommended): the fine-tuned model learns to act as the persona without being told.",
        )

params = {
    "persona_id": next(p.id for p in persona_list if p.name == persona_name),
    "examples": int(examples),
    "document_types": types,
    "scenario_models": chains["scenario"],
    "document_models": chains["document"],
    "response_models": chains["response"],
    "document_words": document_words,
    "response_words": response_words,
    "concurrency": concurrency,
    "temperature": temperature,
    "include_system_prompt": include_prompt,
    "min_document_words": int(min_document_words),
    "min_response_words": int(min_response_words),
}
try:
    _, guess = service.plan(params)
except UserFacingError as exc:
    st.error(str(exc))
    guess = None

if guess:
    cols = st.columns(4)
    cols[0].metric("Model calls", f"{guess.calls:,}")
    cols[1].metric("Tokens (about)", f"{guess.prompt_tokens + guess.completion_tokens:,}")
    cols[2].metric("Cost (about)", "unknown price" if guess.cost_usd is None else f"${guess.cost_usd:,.2f}")
    cols[3].metric("Time (about)", board.duration(guess.seconds))
    st.caption(guess.speed_note())
    confirmed = True
    if guess.needs_confirmation:
        confirmed = st.checkbox(
            f"Yes, start a run of about {guess.seconds / 3600:.1f}".removesuffix(".0") + " h",
            key="generation_confirm_long",
            help="Shorter documents and replies, fewer examples or a hosted model make it quicker.",
        )
    if st.button("Start generating", type="primary", disabled=not confirmed):
        try:
            job = service.start(params, started_by=st.session_state.get("user_name", ""))
        except UserFacingError as exc:
            st.error(str(exc))
        else:
            st.session_state["generation_run"] = job.id
            st.toast(f"Queued generation job {job.id}.")

with st.expander("Import conversations you already have"):
    st.caption(
        "Chat transcripts of the persona: 'Name: message' lines, or JSON exports (OpenAI, ShareGPT, ChatGPT). "
        "Each reply with the message before it becomes an example for review."
    )
    uploads = st.file_uploader("Transcript files", accept_multiple_files=True, type=["txt", "json", "jsonl", "md"])
    pasted = st.text_area("…or paste a conversation", placeholder="Sam: Can you look at my memo?\nAda: Gladly.")
    speaker = st.text_input("In 'Name: message' files, the persona's name", placeholder="the second speaker")
    extractor = st.multiselect("For other formats, let a model read them", models, accept_new_options=True)
    files = [(u.name, u.getvalue()) for u in uploads or []] + ([("pasted text", pasted.encode())] if pasted else [])
    if st.button("Import", disabled=not files):
        report = service.import_transcripts(params["persona_id"], files, speaker or None, extractor or None)
        st.dataframe(pd.DataFrame(report), hide_index=True, width="stretch")
    shots = service.few_shot(params["persona_id"])
    if shots:
        st.download_button(
            "Download a few-shot set from the imported conversations",
            service.few_shot_json(shots),
            file_name=f"{persona_name}_few_shot.json",
            mime="application/json",
            help="A few of the fullest exchanges, for prompting a model.",
        )

st.divider()
st.subheader("Runs")


@st.fragment(run_every=2)
def live_run():
    runs = service.runs()
    if not runs:
        st.info("No generation runs yet.")
        return
    ids = [r.id for r in runs]
    labels = {r.id: f"#{r.id} · {r.name} · {board.badge(r)}" for r in runs}
    if st.session_state.get("generation_run") not in ids:
        st.session_state["generation_run"] = ids[0]
    run = service.view(st.selectbox("Run", ids, format_func=labels.get, key="generation_run"))
    job = run.job
    stages = run.stages
    done = run.ready + run.failed
    st.progress(
        min(done / run.planned, 1.0) if run.planned else 0.0,
        text=f"{done} of {run.planned} examples · {run.ready} ready · {run.failed} failed"
        + (f" · {run.flagged} flagged as near-duplicates" if run.flagged else "")
        + (f" · {run.gate['flagged']} flagged by the quality gate" if run.gate["flagged"] else "")
        + (f" · ETA {board.duration(run.eta_s)}" if run.eta_s is not None else ""),
    )
    total = stages.total or run.planned
    cols = st.columns(3)
    for column, stage in zip(cols, ("scenario", "document", "response"), strict=True):
        column.metric(f"{stage.capitalize()}s", f"{getattr(stages, stage)} / {total}")
    if run.gate["flagged"]:
        st.caption(
            f":material/flag: {service.gate_summary(run.gate)}. They stay reviewable (Review → Quality gate) "
            "and are left out of datasets unless you include them."
        )
    if stages.cancelled:
        st.warning(
            f"{stages.cancelled} examples were left unfinished when this run stopped (status *cancelled*): "
            "Resume finishes them, or delete them."
        )
        if job.status in jobs.FINISHED and st.button("Delete the cancelled examples", key=f"delete_cancelled_{job.id}"):
            st.toast(f"Deleted {service.delete_cancelled(job.id)} cancelled example(s).")
            st.rerun()
    if job.status == "failed":
        st.error(f"The run stopped: {job.error}")
    can_stop = job.status in jobs.ACTIVE and not job.cancel_requested
    can_resume = job.status in jobs.FINISHED and (done < run.planned or run.failed > 0)
    if can_stop and st.button("Stop", key=f"stop_{job.id}"):
        jobs.request_cancel(job.id)
        st.rerun()
    if can_resume and st.button("Resume", key=f"resume_{job.id}", help="Finish what is missing; retry failures."):
        jobs.requeue(job.id)
        st.rerun()
    if run.latest:
        st.markdown(
            f"**Latest:** {run.latest.document_title} · {run.latest.document_type} · "
            f"stresses {', '.join(run.latest.traits_stressed)}"
        )
        doc, reply = st.columns(2)
        doc.markdown("**Document**")
        doc.container(height=320).markdown(run.latest.document)
        reply.markdown("**Response**")
        reply.container(height=320).markdown(run.latest.response)
    if run.failures:
        st.markdown(f"**Failed examples** ({run.failed}): they are retried when you resume.")
        st.dataframe(pd.DataFrame(run.failures), hide_index=True, width="stretch")


live_run()
