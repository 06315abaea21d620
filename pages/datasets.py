from pages import pick_persona, route_through_app

route_through_app()

import pandas as pd
import streamlit as st

from pages.parts import lineage as lineage_view
from pipeline import charts, clock, personas
from pipeline.datasets import build, checks, formats, importer, persona_pairs, preferences, purge, targets
from pipeline.errors import UserFacingError
from pipeline.review.filters import ExampleFilter

st.title("Datasets")
st.caption(
    "A dataset is a checked, immutable snapshot of reviewed examples, split into training and validation, "
    "in every common fine-tuning format."
)

persona_list = personas.list_personas()
if not persona_list:
    st.info("Create a persona first, on the Personas page.")
    st.stop()
by_name = {p.name: p for p in persona_list}
persona = by_name[pick_persona(list(by_name), key="datasets_persona")]


def show_report(report, limit: int | None = None) -> None:
    """The check report: verdict, problems by line, token distribution, cost per backend."""
    cols = st.columns(4)
    cols[0].metric("Valid examples", f"{report.valid:,}")
    cols[1].metric("Errors", len(report.errors))
    cols[2].metric("Warnings", len(report.warnings))
    cols[3].metric("Tokens", f"{report.token_stats.get('total', 0):,}")
    if report.problems:
        st.dataframe(
            pd.DataFrame(
                [
                    {"where": p.where(), "field": p.field, "kind": p.kind, "severity": p.severity, "what": p.message}
                    for p in report.problems
                ]
            ),
            hide_index=True,
            width="stretch",
        )
    if report.backends:
        figure = charts.token_histogram(report.tokens, limit)
        if figure is not None:
            st.plotly_chart(figure, width="stretch")
        st.markdown("**Training cost, estimated** (billed tokens = tokens × epochs; ● the base model checked against)")
        st.dataframe(cost_table(report.backends), hide_index=True, width="stretch")


def cost_table(backends: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "": "●" if row["chosen"] else "",
                "backend": row["backend"],
                "base model": row["base_model"],
                "epochs": row["epochs"],
                "billed tokens": f"{row['billed_tokens']:,}",
                "cost": checks.money(row["cost_usd"]),
                "too long": row["too_long"],
                "eligible": "yes" if row["eligible"] else "no",
            }
            for row in backends
        ]
    )


tab_build, tab_saved, tab_import = st.tabs(["Build", "Saved datasets", "Import a file"])

with tab_build:
    a, b, c = st.columns(3)
    statuses = a.multiselect("Statuses", ["accepted", "pending", "rejected"], default=["accepted"], key="build_status")
    gold_only = b.checkbox("Gold-starred only", key="build_gold")
    min_rating = c.selectbox("Rating at least", ["Any", 1, 2, 3, 4, 5], key="build_rating")
    a, b, c = st.columns(3)
    share = a.slider("Validation share", 0.0, 0.5, 0.1, 0.05, key="build_share")
    seed = b.number_input("Seed", 0, 1_000_000, 13, key="build_seed")
    with_prompt = c.checkbox(
        "Include the system prompt", key="build_prompt", help="Off (recommended): the model learns the persona itself."
    )
    labels = [t.label for t in targets.TARGETS]
    a, b = st.columns(2)
    target = targets.get(a.selectbox("Check against", labels, key="build_target"))
    with_flagged = b.checkbox(
        "Include replies the quality gate flagged",
        key="build_flagged",
        help="Off (recommended): degenerate, off-topic or out-of-character replies stay out.",
    )
    flt = ExampleFilter(
        persona_id=persona.id,
        statuses=statuses,
        gold_star=True if gold_only else None,
        min_rating=None if min_rating == "Any" else min_rating,
    )
    settings_key = (flt.describe(), share, seed, with_prompt, target.label, with_flagged)
    if st.button("Check these examples", type="primary", key="build_check"):
        try:
            st.session_state["build_preview"] = (
                settings_key,
                build.preview(flt, share, int(seed), with_prompt, target, include_flagged=with_flagged),
            )
        except UserFacingError as exc:
            st.session_state.pop("build_preview", None)
            st.error(str(exc))
    held = st.session_state.get("build_preview")
    if held and held[0] == settings_key:
        plan = held[1]
        st.markdown(
            f"**{len(plan.train)} training and {len(plan.validation)} validation examples** "
            f"(stratified by document type, seed {plan.seed})."
            + (f" {plan.flagged_left_out} flagged by the quality gate left out." if plan.flagged_left_out else "")
        )
        show_report(plan.report, target.context_tokens)
        name = st.text_input(
            "Dataset name", f"{persona.name}-v{len(build.list_datasets(persona.id)) + 1}", key="build_name"
        )
        if st.button("Save dataset", disabled=not plan.report.ok, key="build_save"):
            try:
                saved = build.save(name, plan, st.session_state.get("user_name", ""))
            except UserFacingError as exc:
                st.error(str(exc))
            else:
                st.session_state.pop("build_preview", None)
                st.success(
                    f"Saved {saved.name}: {saved.counts['train']} train, {saved.counts['validation']} validation."
                )
    elif held:
        st.caption("The settings changed: check again.")

with tab_saved:
    saved = build.list_datasets(persona.id)
    if not saved:
        st.info("No datasets for this persona yet: build one in the first tab.")
    else:
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "name": d.name,
                        "train": d.counts.get("train", 0),
                        "validation": d.counts.get("validation", 0),
                        "pairs": d.counts.get("preference_pairs", 0),
                        "tokens": d.counts.get("tokens", 0),
                        "system prompt": "yes" if d.include_system_prompt else "no",
                        "filter": ", ".join(f"{k}={v}" for k, v in d.filter.items() if k != "persona_id"),
                        "hash": d.content_hash[:12],
                        "created": clock.local(d.created_at),
                    }
                    for d in saved
                ]
            ),
            hide_index=True,
            width="stretch",
        )
        chosen = next(d for d in saved if d.name == st.selectbox("Dataset", [d.name for d in saved], key="saved_pick"))
        a, b, c = st.columns(3)
        fmt = a.selectbox(
            "Format",
            list(formats.FORMATS) + ["dpo"],
            format_func=lambda f: formats.FORMATS.get(f, "DPO preference pairs"),
            key="saved_format",
        )
        part = b.selectbox("Part", ["train", "validation"] if fmt != "dpo" else ["train"], key="saved_part")
        path = build.file_path(chosen, fmt, part)
        c.download_button(
            "Download",
            path.read_bytes(),
            file_name=f"{chosen.name}.{part}.{fmt}.jsonl",
            mime="application/jsonl",
            key="saved_download",
        )
        with st.expander("Preference pairs: the persona's replies over the plain model's", icon=":material/thumb_up:"):
            st.caption(
                "For training with *Prefer the persona's replies*: a model answers each prompt of this dataset "
                "without the persona's prompt; each pair prefers the dataset's reply over that plain one. "
                f"This dataset has {chosen.counts.get('persona_pairs', 0)} such pairs"
                f" and {chosen.counts.get('preference_pairs', 0)} pairs in all."
            )
            plain = st.selectbox("Plain replies from", persona_pairs.model_choices(), key="saved_pairs_model")
            if st.button("Make the pairs", key="saved_pairs_start"):
                try:
                    job = persona_pairs.start(chosen.name, plain, started_by=st.session_state.get("user_name", ""))
                except UserFacingError as exc:
                    st.error(str(exc))
                else:
                    st.success(
                        f"Queued job {job.id}: it answers {chosen.counts.get('train', 0)} prompts, then adds the pairs."
                    )
                    st.page_link("pages/monitor.py", label="Follow it on Live monitoring", icon=":material/monitoring:")
        lineage_view.show_dataset(chosen.name)
        with st.expander("Delete this dataset"):
            typed = st.text_input(f"Type {chosen.name} to confirm", key="saved_confirm")
            if st.button("Delete for good", key="saved_delete"):
                try:
                    purge.delete_dataset(chosen.name, typed)
                except UserFacingError as exc:
                    st.error(str(exc))
                else:
                    st.rerun()
    pairs = preferences.pairs_for_persona(persona.id)
    st.markdown(f"**Preference pairs**: {len(pairs)} edited responses (edited preferred over original), for DPO.")
    if pairs:
        st.download_button(
            "Download DPO pairs",
            formats.dumps_jsonl(pairs),
            file_name=f"{persona.name}.dpo.jsonl",
            mime="application/jsonl",
            key="pairs_download",
        )
    with st.expander(f"Delete all of {persona.name}'s examples and datasets"):
        st.warning("This removes every example, edit and dataset of this persona, files included. It cannot be undone.")
        lineage_view.show_impact(persona.id)
        typed = st.text_input(f"Type {persona.name} to confirm", key="purge_confirm")
        if st.button("Delete everything", key="purge_go"):
            try:
                removed = purge.delete_persona_data(persona.id, typed)
            except UserFacingError as exc:
                st.error(str(exc))
            else:
                st.success(f"Deleted {removed['examples']} examples and {removed['datasets']} datasets.")

with tab_import:
    st.caption(
        "JSONL, a JSON array or CSV, in OpenAI chat, ShareGPT, Alpaca, prompt/completion or ChatML form. Valid rows "
        "become examples for review; each bad line is listed with its number and the reason."
    )
    upload = st.file_uploader("Dataset file", type=["jsonl", "json", "csv", "ndjson", "txt"], key="import_file")
    fmt = st.selectbox(
        "Format",
        ["detect", *formats.FORMATS],
        format_func=lambda f: formats.FORMATS.get(f, "Detect from each row"),
        key="import_format",
    )
    limit = st.selectbox(
        "Refuse examples longer than the context of",
        targets.TARGETS,
        index=targets.TARGETS.index(importer.LONGEST),
        format_func=lambda t: f"{t.label} ({t.context_tokens:,} tokens)",
        key="import_target",
    )
    if st.button("Import", disabled=upload is None, key="import_go"):
        result = importer.import_file(
            upload.getvalue(), upload.name, persona.id, None if fmt == "detect" else fmt, limit
        )
        (st.warning if result.report.problems else st.success)(result.summary())
        show_report(result.report)
