from pages import pick_persona, route_through_app

route_through_app()

import pandas as pd
import streamlit as st

from pipeline import jobs, personas
from pipeline.datasets import build
from pipeline.errors import UserFacingError
from pipeline.evaluation import contestants, leaderboard, prompts, service
from pipeline.jobs import board
from pipeline.llm import embedded

st.title("Evaluate")
st.caption(
    "Does the fine-tuned model carry the persona without the system prompt, better than the base model prompted "
    "with it? Contestants answer held-out prompts; a judge (or you, in the Arena) compares them in pairs."
)

persona_list = personas.list_personas()
if not persona_list:
    st.info("Create a persona first, on the Personas page.")
    st.stop()
by_name = {p.name: p for p in persona_list}
persona = by_name[pick_persona(list(by_name), key="eval_persona")]

models = service.model_choices()
options = [contestants.Contestant(m, mode).name for m in models for mode in contestants.MODES]
options += service.prompt_variants(persona.id)  # the registry's prompt-only baselines
tuned = [m for m in contestants.fine_tuned_models() if m in models]
base = f"local/{embedded.EMBEDDED_NAME}"
default = [c.name for c in contestants.default_set(base, tuned[-1] if tuned else None) if c.name in options]

with st.container(border=True):
    chosen = st.multiselect(
        "Contestants (a model, and how it is prompted)",
        options,
        default=default,
        key="eval_contestants",
        help="“+ prompt”: with the persona's system prompt; “+ few-shot”: also two gold-starred exchanges first.",
    )
    a, b = st.columns(2)
    persona_datasets = [d.name for d in build.list_datasets(persona.id)]
    dataset = a.selectbox(
        "Held-out prompts from",
        persona_datasets + ["(none)"],
        key="eval_dataset",
        help="The validation split's documents: never trained on.",
    )
    held_out = b.slider("Held-out prompts, at most", 1, 50, 12, key="eval_held_out")
    a, b = st.columns(2)
    adversarial = a.checkbox(
        f"Add a break-character variant of each: “{prompts.ADVERSARIAL_SUFFIX}”", True, key="eval_adversarial"
    )
    keep_going = b.checkbox("Add a “Keep going.” second turn to each", True, key="eval_keep_going")
    typed = st.text_area("Custom prompts (separate them with a blank line)", key="eval_custom", height=90)
    upload = st.file_uploader(
        "…or upload them (.txt, .jsonl with `prompt`)", type=["txt", "jsonl", "json", "csv"], key="eval_upload"
    )
    a, b, c = st.columns(3)
    judge_model = a.selectbox(
        "Judge",
        service.judge_choices(),
        key="eval_judge",
        format_func=lambda m: "Offline (no key): persona similarity + likelihood" if m == "offline" else m,
    )
    if note := service.judge_note():
        a.caption(note)
    max_battles = b.number_input(
        "Budget: battles",
        1,
        5000,
        60,
        key="eval_battles",
        help="A battle is two contestants on one prompt, judged in both orders.",
    )
    max_cost = c.number_input("Budget: dollars (0 = no limit)", 0.0, 1000.0, 0.0, step=0.5, key="eval_cost")
    with st.expander("More settings"):
        a, b, c = st.columns(3)
        criteria_traits = a.checkbox("Judge each trait too", True, key="eval_traits")
        trait_scores = b.checkbox("Score each reply 1–5 per trait", True, key="eval_scores")
        target_width = c.number_input(
            "Stop when every interval is narrower than (points; 0 = off)", 0, 1000, 0, key="eval_width"
        )
        max_tokens = a.number_input("Longest reply (tokens)", 16, 4096, 256, key="eval_tokens")
        drift_turns = b.number_input(
            "Persona drift: turns per conversation (0 = off)",
            0,
            20,
            0,
            key="eval_drift",
            help="A simulated user continues two of the prompts for this many turns, with follow-ups, push-back "
            "and a change of topic; each reply is scored for the persona, turn by turn (offline, and by the "
            "judge when it is a model).",
        )
        drift_user = c.selectbox(
            "Simulated user (persona drift)",
            service.drift_user_choices(),
            key="eval_drift_user",
            disabled=not drift_turns,
            help="The model that plays the user in the drift conversations.",
        )

plan = None
try:
    custom = [block.strip() for block in typed.split("\n\n") if block.strip()]
    if upload is not None:
        custom += prompts.parse_prompt_file(upload.name, upload.getvalue())
    if dataset == "(none)" and not custom:
        st.info(
            "Prompts come from a dataset's validation split (build one on the Datasets page) or from you: "
            "type or upload some above."
        )
    else:
        plan = service.plan(
            persona=persona.id,
            contestants=chosen,
            judge_model=judge_model,
            dataset=None if dataset == "(none)" else dataset,
            custom_prompts=custom,
            adversarial=adversarial,
            keep_going=keep_going,
            held_out_limit=held_out,
            max_battles=int(max_battles),
            max_cost=float(max_cost),
            target_width=float(target_width),
            criteria_traits=criteria_traits,
            trait_scores=trait_scores,
            max_tokens=int(max_tokens),
            drift_turns=int(drift_turns),
            drift_user=drift_user or "",
        )
except UserFacingError as exc:
    st.error(str(exc))

if plan is not None:
    cols = st.columns(5)
    cols[0].metric("Prompts", len(plan.prompt_set.prompts))
    cols[1].metric("Pairs", plan.pairs)
    cols[2].metric("Replies to make", plan.replies())
    cols[3].metric("Battles (budget)", min(plan.max_battles, plan.possible_battles))
    cols[4].metric("Judge calls, at most", plan.judge_calls() if plan.judge != "offline" else "none")
    st.caption(
        "Prompt groups: "
        + ", ".join(f"{k} {v}" for k, v in plan.prompt_set.groups().items())
        + f" · base contestant held at 1000: **{plan.anchor}**"
    )
    for warning in plan.warnings:
        st.warning(warning)
    if st.button("Start evaluation", type="primary", key="eval_start"):
        job = service.start(plan)
        st.success(f"Queued evaluation {job.id}. Follow it below or on Live monitoring; see it on the Leaderboard.")

st.divider()
st.subheader("Evaluation runs")


@st.fragment(run_every=3)
def runs_table() -> None:
    runs = service.runs()
    if not runs:
        st.info("No evaluations yet.")
        return
    spent = board.costs([job.id for job in runs])  # cached until a call is recorded
    table = pd.DataFrame(
        [
            {
                "run": job.id,
                "name": job.name,
                "status": board.badge(job),
                "progress": (job.progress_done / job.progress_total) if job.progress_total else 0.0,
                "done": f"{job.progress_done} of {job.progress_total} {job.progress_unit}",
                "battles": leaderboard.counted(job.id),  # as the Leaderboard counts them (judge and votes)
                "now": job.message,
                "cost so far": spent.get(job.id, 0.0),
                "error": job.error or "",
            }
            for job in runs
        ]
    )
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config={
            "progress": st.column_config.ProgressColumn("Progress", min_value=0.0, max_value=1.0, format="percent"),
            "cost so far": st.column_config.NumberColumn("Cost so far", format="$%.4f"),
        },
    )
    a, b, c = st.columns([2, 1, 1])
    pick = a.selectbox("Run", [job.id for job in runs], key="eval_run_pick")
    job = next(j for j in runs if j.id == pick)
    if b.button("Stop", key="eval_stop", disabled=job.status not in jobs.ACTIVE):
        jobs.request_cancel(job.id)
        st.toast("Stopping: judgements so far are kept.")
    if c.button("Resume", key="eval_resume", disabled=job.status not in ("failed", "cancelled")):
        jobs.requeue(job.id)
        st.toast("Resumed: nothing judged already is asked again.")


runs_table()
st.page_link("pages/leaderboard.py", label="Open the Leaderboard", icon=":material/trophy:")
