from pages import STATUS_COLOURS, route_through_app, status_badge

route_through_app()

import pandas as pd
import streamlit as st

from pipeline import charts, jobs
from pipeline.errors import UserFacingError
from pipeline.jobs import board

st.title("Live monitoring")
st.caption("Every generation, training and evaluation job, live. Jobs keep running if you close the browser.")

# a notification's link (…/monitor?job=12) opens that job; read once, so picking another job afterwards sticks
linked = st.query_params.pop("job", None)
if linked is not None and linked.isdigit():
    st.session_state["monitor_job"] = int(linked)

if st.button("Run a worker check", help="A short job that checks the background worker end to end."):
    job = jobs.submit("probe", {"rate": 5, "seconds": 20}, started_by=st.session_state.get("user_name", ""))
    st.session_state["monitor_job"] = job.id
    st.toast(f"Queued job {job.id}.")


def status_colour(word: str) -> str:
    return f"color: {STATUS_COLOURS.get(word, '#6B7280')}; font-weight: 600"


@st.fragment(run_every=2)
def live_board():
    table = board.rows()
    if not table:
        st.info("No jobs yet. Work you start on the other pages appears here.")
        return
    st.dataframe(
        pd.DataFrame(table).style.map(status_colour, subset=["status"]),  # a cell draws no icon: colour the word
        hide_index=True,
        width="stretch",
        column_config={
            "id": st.column_config.NumberColumn("Job", format="%d", width="small"),
            "progress": st.column_config.ProgressColumn("Progress", min_value=0.0, max_value=1.0, format="percent"),
            "cost": st.column_config.NumberColumn("Cost", format="$%.4f"),
            "kind": "Kind",
            "name": "Name",
            "status": "Status",
            "done": "Done",
            "elapsed": "Elapsed",
            "eta": "ETA",
            "started by": "Started by",
        },
    )
    ids = [row["id"] for row in table]
    labels = {row["id"]: f"#{row['id']} · {row['name']} · {row['status']}" for row in table}
    chosen = st.session_state.get("monitor_job")
    st.session_state["monitor_job"] = chosen if chosen in ids else ids[0]
    job_id = st.selectbox("Show job", ids, format_func=labels.get, key="monitor_job")
    show_job(board.detail(job_id))


def show_job(detail: board.JobDetail) -> None:
    job = detail.job
    a, b, c, d = st.columns(4)
    a.metric("Status", status_badge(detail.badge))
    b.metric("Elapsed", detail.elapsed or "–")
    c.metric("ETA", detail.eta or "–")
    d.metric("Cost so far", f"${detail.cost_usd:.4f}")
    st.caption(detail.where)
    if job.progress_total:
        st.progress(
            min(job.progress_done / job.progress_total, 1.0),
            text=f"{job.progress_done} of {job.progress_total} {job.progress_unit}"
            + (f" · {job.message}" if job.message else ""),
        )
    if job.status == "failed":
        st.error(f"This job failed: {job.error}")
    elif job.status == "cancelled" and job.error:
        st.warning(job.error)
    if detail.can_resume and st.button(
        "Resume this job", key=f"resume_{job.id}", help="Queue it again; it picks up where it stopped."
    ):
        act(jobs.requeue, job.id, "Queued again; the background worker picks it up where it stopped.")
    if detail.can_cancel and st.button("Cancel this job", type="secondary", key=f"cancel_{job.id}"):
        act(jobs.request_cancel, job.id, "Cancel requested; the job saves what it has and stops.")
    if detail.is_training:
        show_training(detail)
    else:
        figure = charts.items_over_time(detail.metrics, job.progress_unit)
        if figure is not None:
            st.plotly_chart(figure, width="stretch", key=f"chart_{job.id}")
    log_tab, params_tab = st.tabs(["Log", "Parameters"])
    said, technical = board.split_log(detail.log)
    log_tab.code(said or "(nothing logged yet)", language=None)
    if technical:
        with log_tab.expander("Technical details (warnings and progress output)"):
            st.code(technical, language=None)
    params_tab.json(job.params)


def show_training(detail: board.JobDetail) -> None:
    """The loss curves (the best step marked) beside the persona score; why training stopped; the gallery."""
    job_id = detail.job.id
    if detail.stopping:
        st.info(f"Why training stopped: {detail.stopping}.", icon=":material/flag:")
    if detail.warning:
        st.warning(detail.warning, icon=":material/trending_up:")
    loss = charts.training_curves(detail.metrics, detail.best_step)
    persona = charts.persona_scores(detail.gallery_scores, detail.best_step)
    left, right = st.columns([2, 1]) if persona is not None else (st.container(), None)
    if loss is not None:
        left.plotly_chart(loss, width="stretch", key=f"chart_{job_id}")
    if right is not None:
        right.plotly_chart(persona, width="stretch", key=f"persona_{job_id}")
        right.caption("How close the replies below sound to the persona's own (MiniLM similarity; higher: closer).")
    if detail.gallery:
        st.subheader("Checkpoint gallery")
        st.caption("The same prompts, answered without the system prompt at each check: is the persona appearing?")
        probes = detail.gallery_side_by_side
        tabs = st.tabs([f"Prompt {i + 1}: {p['title']}" for i, p in enumerate(probes)]) if probes else []
        for tab, probe in zip(tabs, probes, strict=True):
            with tab.expander("The prompt"):
                st.text(probe["prompt"])
            for column, reply in zip(tab.columns(len(probe["replies"])), probe["replies"], strict=True):
                column.markdown(f"**{reply['label']}**")
                if reply["persona_similarity"] is not None:
                    column.caption(f"persona similarity {reply['persona_similarity']:.2f}")
                column.container(border=True).write(reply["reply"])
        with st.expander("Every checkpoint's replies, as a table"):
            st.dataframe(pd.DataFrame(detail.gallery_table), hide_index=True, width="stretch", key=f"gallery_{job_id}")


def act(action, job_id: int, done: str) -> None:
    """Ask something of a job; say why if it cannot be done, else show the new state at once."""
    try:
        action(job_id)
    except UserFacingError as exc:
        st.error(str(exc))
    else:
        st.toast(done)
        st.rerun()  # show the new state now, not at the next refresh


live_board()
