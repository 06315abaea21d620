from pages import route_through_app

route_through_app()

import pandas as pd
import streamlit as st

from pipeline import charts
from pipeline.errors import UserFacingError
from pipeline.training import compare, data_curve, runs

st.title("Experiments")
st.caption(
    "Run a past job again with a change, try a few values of a setting (a sweep), compare training runs side by "
    "side, and measure how much data a persona needs."
)


def user() -> str:
    return st.session_state.get("user_name", "")


def pick_source(key: str, training_only: bool = False) -> runs.Source | None:
    """A past job or saved settings to start from."""
    options = {f"saved:{name}": f"Saved settings: {name}" for name in runs.saved_configs()}
    for job in runs.rerunnable_jobs():
        if training_only and job.kind == "generation":
            continue
        options[f"job:{job.id}"] = f"#{job.id} · {job.name} · {job.status}"
    if not options:
        st.info("Nothing to start from yet: train a model (Train page) or generate examples (Generate page) first.")
        return None
    choice = st.selectbox("Start from", list(options), format_func=options.get, key=key)
    where, _, name = choice.partition(":")
    try:
        return runs.from_job(int(name)) if where == "job" else runs.from_saved(name)
    except UserFacingError as exc:
        st.error(str(exc))
        return None


def settings_form(source: runs.Source, key: str) -> dict:
    """Every setting of the source's config, prefilled; returns what the widgets hold now."""
    values = {}
    columns = st.columns(3)
    for place, setting in enumerate(runs.settings_of(source)):
        where, widget_key = columns[place % 3], f"{key}_{setting.name}"
        value = setting.value
        if setting.kind == "bool":
            values[setting.name] = where.checkbox(setting.name, bool(value), key=widget_key)
        elif setting.kind == "int":
            values[setting.name] = where.number_input(setting.name, value=int(value), step=1, key=widget_key)
        elif setting.kind == "choice":
            index = setting.choices.index(str(value)) if str(value) in setting.choices else 0
            values[setting.name] = where.selectbox(setting.name, setting.choices, index=index, key=widget_key)
        else:
            shown = ", ".join(map(str, value)) if isinstance(value, list | tuple) else ("" if value is None else value)
            values[setting.name] = where.text_input(setting.name, str(shown), key=widget_key)
    return values


rerun_tab, sweep_tab, compare_tab, curve_tab = st.tabs(
    ["Run again with changes", "Sweep", "Compare runs", "Data-size curve"]
)

with rerun_tab:
    st.caption("Opens a past training or generation job's whole settings (or saved settings): change what you like.")
    source = pick_source("runs_source")
    if source is not None:
        form_key = f"runs_form_{st.session_state['runs_source']}"
        with st.expander("All settings", expanded=True):
            edits = settings_form(source, form_key)
        try:
            revision = runs.revise(source, edits)
        except UserFacingError as exc:
            st.error(str(exc))
        else:
            if revision.changed:
                st.markdown(f"**What changes** ({len(revision.changed)}):")
                st.dataframe(pd.DataFrame(revision.changed), hide_index=True, width="stretch")
            else:
                st.caption("Nothing changed yet: the run would repeat the same settings.")
            a, b, c = st.columns([1, 1, 1])
            if a.button("Run again", type="primary", key="runs_start"):
                try:
                    job = runs.start_revision(revision, started_by=user())
                except UserFacingError as exc:
                    st.error(str(exc))
                else:
                    changed = len(revision.changed)
                    st.success(f"Queued job {job.id} with {changed} change(s). Follow it on Live monitoring.")
            if source.kind == "training":
                name = b.text_input("Save these settings as", key="runs_save_name", placeholder="e.g. collab-fast")
                if c.button("Save settings", key="runs_save", disabled=not name):
                    try:
                        runs.save_config(name, revision.config)
                    except UserFacingError as exc:
                        st.error(str(exc))
                    else:
                        command = f"python -m pipeline train --config {name}"
                        st.success(f"Saved as {name!r}: start from it here, or `{command}`.")

with sweep_tab:
    st.caption(
        f"One run per combination of values, up to {runs.MAX_SWEEP_SETTINGS} settings and {runs.MAX_SWEEP_RUNS} runs, "
        "queued and run one at a time. Each run's settings stay with its job: run any of them again from here."
    )
    source = pick_source("sweep_source", training_only=True)
    if source is not None:
        grid = {}
        for number, default in ((1, "learning_rate"), (2, "(none)")):
            a, b = st.columns([1, 2])
            options = ["(none)", *runs.SWEEPABLE] if number == 2 else list(runs.SWEEPABLE)
            setting = a.selectbox(f"Setting {number}", options, index=options.index(default), key=f"sweep_key_{number}")
            typed = b.text_input(
                f"Values of setting {number}, separated by commas",
                key=f"sweep_values_{number}",
                placeholder="e.g. 1e-4, 2e-4",
                disabled=setting == "(none)",
            )
            if setting != "(none)" and typed.strip():
                grid[setting] = [v.strip() for v in typed.split(",") if v.strip()]
        if grid:
            size = runs.sweep_size(grid)
            if size > runs.MAX_SWEEP_RUNS:
                st.error(f"This sweep would queue {size} runs; at most {runs.MAX_SWEEP_RUNS} are allowed.")
            else:
                st.markdown(f"**{size} runs**: " + " × ".join(f"{k} ({len(set(v))})" for k, v in grid.items()))
            if st.button("Queue the sweep", type="primary", key="sweep_start", disabled=size > runs.MAX_SWEEP_RUNS):
                try:
                    sweep = runs.start_sweep(runs.training_config(source), grid, started_by=user())
                except UserFacingError as exc:
                    st.error(str(exc))
                else:
                    queued = ", ".join(str(j.id) for j in sweep.jobs)
                    st.success(f"Queued sweep {sweep.id}: {len(sweep.jobs)} runs (jobs {queued}), one at a time.")

with compare_tab:
    trained = compare.training_runs()
    labels = {j.id: f"#{j.id} · {j.name} · {j.status}" for j in trained}
    picked = st.multiselect(
        "Training runs to compare (2 to 6)",
        list(labels),
        format_func=labels.get,
        max_selections=compare.MAX_RUNS,
        key="compare_runs",
    )
    if len(picked) < compare.MIN_RUNS:
        st.info("Pick two to six training runs.")
    else:
        try:
            found = compare.compare(picked)
        except UserFacingError as exc:
            st.error(str(exc))
        else:
            st.markdown("**Settings that differ**")
            if found.differing:
                st.dataframe(pd.DataFrame(found.differing), hide_index=True, width="stretch")
            else:
                st.caption("None: these runs used the same settings.")
            figure = charts.compared_curves(found.curves)
            if figure is None:
                st.caption("No losses logged yet.")
            else:
                st.plotly_chart(figure, width="stretch", key="compare_chart")
            st.markdown("**Final figures**")
            st.dataframe(pd.DataFrame(found.finals), hide_index=True, width="stretch")
            extra = st.text_area(
                "Extra prompts for the evaluation (optional, separated by a blank line)", key="compare_prompts"
            )
            if st.button("Evaluate these models against each other", key="compare_evaluate"):
                asked = [block.strip() for block in extra.split("\n\n") if block.strip()]
                try:
                    job = compare.evaluate(picked, asked)
                except UserFacingError as exc:
                    st.error(str(exc))
                else:
                    st.success(f"Queued evaluation job {job.id} (offline judge: no key, no cost).")
                    st.page_link("pages/leaderboard.py", label="Open the Leaderboard", icon=":material/trophy:")

with curve_tab:
    st.caption(
        "Trains the same settings on nested shares of the dataset (the smaller inside the larger, same seed and "
        "epochs), scores each on the held-out replies without the system prompt (persona likelihood), and shows "
        "where more data stops helping. Imitation (SFT) on this machine."
    )
    source = pick_source("curve_source", training_only=True)
    if source is not None:
        shares = st.text_input("Shares of the dataset", "0.25, 0.5, 1", key="curve_shares")
        try:
            fractions = [float(v) for v in shares.split(",") if v.strip()]
            checked = data_curve.plan(runs.training_config(source), fractions)
        except (ValueError, UserFacingError) as exc:
            st.error(str(exc) if isinstance(exc, UserFacingError) else f"Write the shares as numbers: {shares!r}.")
        else:
            st.caption(f"Trains on {', '.join(map(str, checked.sizes))} examples; scores on {checked.validation}.")
            for problem in checked.problems:
                st.error(problem)
            blocked = not checked.can_start
            if st.button("Start the data-size curve", type="primary", key="curve_start", disabled=blocked):
                try:
                    job = data_curve.start(checked.config, checked.fractions, started_by=user())
                except UserFacingError as exc:
                    st.error(str(exc))
                else:
                    st.success(f"Queued data-size curve job {job.id}. Follow it on Live monitoring.")
    curves = data_curve.runs()
    if curves:
        st.divider()
        names = {j.id: f"#{j.id} · {j.name} · {j.status}" for j in curves}
        shown = st.selectbox("Show the curve of", list(names), format_func=names.get, key="curve_show")
        curve = data_curve.result(shown)
        points = ([curve.base] if curve.base else []) + curve.points
        figure = charts.data_size_curve(points, curve.plateau_at)
        if figure is None:
            st.caption("No size scored yet.")
        else:
            st.plotly_chart(figure, width="stretch", key="curve_chart")
            st.markdown(curve.verdict)
            table = pd.DataFrame(points)[["examples", "mean", "lower", "upper"]]
            st.dataframe(table.rename(columns={"mean": "persona likelihood"}), hide_index=True, width="stretch")
