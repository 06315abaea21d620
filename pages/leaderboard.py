from pages import route_through_app

route_through_app()

import pandas as pd
import streamlit as st

from pipeline.errors import UserFacingError
from pipeline.evaluation import drift, judge, leaderboard, report, results, service

st.title("Leaderboard")
st.caption(
    "Ratings on the Elo scale (the base contestant at 1000), from pairwise battles, with 95% intervals from "
    "1,000 bootstrap resamples. Ranks only separate contestants whose intervals do not overlap."
)

runs = [job for job in service.runs() if job.status in ("running", "succeeded", "cancelled", "failed")]
if not runs:
    st.info("No evaluation has run yet: start one on the Evaluate page.")
    st.stop()
a, b = st.columns([2, 1])
run_id = a.selectbox(
    "Evaluation",
    [j.id for j in runs],
    key="board_run",
    format_func=lambda i: next(f"#{j.id} · {j.name} · {j.status}" for j in runs if j.id == i),
)
source = b.radio(
    "Battles from", list(results.SOURCES), format_func=results.SOURCES.get, horizontal=True, key="board_source", index=2
)

try:
    board = leaderboard.board(run_id, source)  # cached: rebuilt only when the run's battles or votes change
except UserFacingError as exc:
    st.error(str(exc))
    st.stop()

(st.warning if board.offline else st.info)(board.judge_label)
counts = board.counts()
cols = st.columns(4)
cols[0].metric(
    "Rated battles",
    board.battles,
    help="A battle is one judged comparison of two contestants on one prompt (an LLM judge's two orders are "
    "one battle; each human vote is one). Evaluate, Home and Models count the same.",
)
cols[1].metric("Missing (no reply)", counts.get("missing", 0), help="A contestant failed on the prompt: not a loss.")
cols[2].metric("No verdict", counts.get("unparsed", 0), help="The judge gave no verdict, twice: not a tie.")
cols[3].metric("Human votes", service.votes(run_id))

if board.state == "empty":
    st.info(
        "Not enough rated battles for ratings yet" + (" from people: vote in the Arena." if source == "human" else ".")
    )
    st.stop()

st.caption(f"Ratings {board.basis}; each contestant needs {board.min_battles} battles before it gets a rating.")
if board.state == "too_few":
    name, fewest = board.fewest
    st.warning(
        f"Ratings: {leaderboard.not_enough(fewest, board.min_battles)} for {name}. With so few battles a rating "
        "and its interval say nothing yet (three unanimous battles bootstrap to a huge rating with a zero-width "
        "interval), so none is shown: run more battles on the Evaluate page or vote in the Arena."
    )
else:
    for line in board.statements():
        st.markdown(f"- {line}")
    disagreement = board.disagreement()
    if disagreement:
        st.info(disagreement)
    st.plotly_chart(
        board.figure("ratings"),
        width="stretch",
        key="board_ratings",
    )
st.dataframe(
    pd.DataFrame(board.rows()),
    hide_index=True,
    width="stretch",
    column_config={"contestant": st.column_config.TextColumn("contestant", width="medium")},
)

names = board.overall.contestants if board.state == "rated" else list(board.per_contestant)
tabs = st.tabs(
    [
        "Wins and losses",
        "Traits",
        "Prompt groups",
        "Length",
        "Judge health",
        "Persona likelihood",
        "Prompt fidelity",
        "Drift over turns",
        "Battles",
        "Reports",
    ]
)
with tabs[0]:
    st.plotly_chart(
        board.figure("matrix"),
        width="stretch",
        key="board_matrix",
    )
with tabs[1]:
    if board.by_trait and board.state == "rated":
        st.plotly_chart(
            board.figure("traits"),
            width="stretch",
            key="board_traits",
        )
    if not board.trait_scores.empty:
        st.plotly_chart(
            board.figure("scores"),
            width="stretch",
            key="board_scores",
        )
        st.dataframe(board.trait_scores.round(2), hide_index=True, width="stretch")
    if (not board.by_trait or board.state != "rated") and board.trait_scores.empty:
        st.info("Per-trait ratings and scores come from an LLM judge; this run had none.")
with tabs[2]:
    if board.state != "rated":
        st.info(leaderboard.not_enough(board.fewest[1], board.min_battles).capitalize() + ": no ratings per group.")
    elif board.by_group:
        st.plotly_chart(
            board.figure("groups"),
            width="stretch",
            key="board_groups",
        )
        st.caption(
            "“adversarial” and “keep going” prompts try to break character: a persona that holds there "
            "is in the weights, not only in the prompt."
        )
with tabs[3]:
    if board.state != "rated":
        st.info(leaderboard.not_enough(board.fewest[1], board.min_battles).capitalize() + ": no length view.")
    elif board.length_controlled:
        st.plotly_chart(
            board.figure("length"),
            width="stretch",
            key="board_length",
        )
        st.caption(
            "If the ratings shrink once length is controlled for, the judge was partly rewarding longer replies."
        )
with tabs[4]:
    health = board.health
    a, b, c, d = st.columns(4)
    fmt = lambda v, pct=True: "–" if v is None else (f"{v:.0%}" if pct else f"{v:+.2f}")  # noqa: E731
    a.metric(
        "Position consistency",
        fmt(health["position_consistency"]),
        help="Share of pairs whose verdict survives swapping the two responses (warn under 65%).",
    )
    b.metric("Tie rate", fmt(health["tie_rate"]))
    c.metric(
        "Length correlation",
        fmt(health["length_correlation"], pct=False),
        help="Does the longer reply tend to win? Near 0 is good.",
    )
    d.metric(
        "Agreement with people",
        fmt(health["human_agreement"]),
        help=f"On the {health['human_compared']} pairs both the judge and people judged.",
    )
    for warning in health["warnings"]:
        st.warning(warning)
with tabs[5]:
    if board.likelihood:
        st.plotly_chart(board.figure("likelihood"), width="stretch", key="board_likelihood")
        st.caption("Offline measure: how likely each contestant finds the held-out gold replies (local models only).")
        if board.disagreement():
            st.info(board.disagreement())
    else:
        st.info("Persona likelihood is measured for local models on held-out prompts with gold replies.")
with tabs[6]:
    if board.fidelity:
        st.plotly_chart(board.figure("fidelity"), width="stretch", key="board_fidelity")
        st.caption(
            f"Offline measure on {board.fidelity[0]['prompts']} held-out prompts: how close each local contestant, "
            "as it is asked, comes to its base model with the persona's prompt (KL divergence per token of the "
            "prompted base's own replies). 0% = the base without the prompt, 100% = the base with it."
        )
        st.dataframe(leaderboard.fidelity_rows(board.fidelity), hide_index=True)
    else:
        st.info(
            "Prompt fidelity is measured for local models on held-out prompts when the persona has a system prompt."
        )
with tabs[7]:
    if board.drift:
        st.plotly_chart(board.figure("drift"), width="stretch", key="board_drift")
        conversations = max(r["n"] for r in drift.by_scorer(board.drift, "offline"))
        st.caption(
            f"Offline measure from {conversations} simulated conversation(s) per contestant: a simulated user "
            "follows up, pushes back and changes topic; each reply's persona similarity, turn by turn. A line "
            "that falls means the persona fades as the conversation goes on."
        )
        judged = drift.by_scorer(board.drift, "judge")
        if judged:
            st.plotly_chart(board.figure("drift_judge"), width="stretch", key="board_drift_judge")
            st.caption(
                f"The judge ({board.judge_label}) scored the same replies on each trait (1–5); the line is their "
                f"mean, from {max(r['n'] for r in judged)} conversation(s) per contestant."
            )
    else:
        st.info("Persona drift is measured when an evaluation is started with drift turns (Evaluate → More settings).")
with tabs[8]:
    a, b, c = st.columns(3)
    first = a.selectbox("Contestant", names, key="board_drill_a")
    second = b.selectbox("against", [n for n in names if n != first], key="board_drill_b")
    criteria = ["overall"] + list(board.by_trait)
    criterion = c.selectbox("Criterion", criteria, key="board_drill_criterion")
    shown = leaderboard.drill(board, first, second, criterion if criterion != "overall" else judge.OVERALL)
    st.caption(f"{len(shown)} battles between {first} and {second}.")
    for outcome in shown[:30]:
        winner = {"a": outcome.a, "b": outcome.b}.get(outcome.winner, outcome.winner)
        with st.expander(f"[{outcome.group}] {outcome.prompt[:80]} → {winner}"):
            st.markdown(outcome.prompt)
            left, right = st.columns(2)
            left.markdown(f"**{outcome.a}**\n\n{outcome.response_a}")
            right.markdown(f"**{outcome.b}**\n\n{outcome.response_b}")
            for reason in outcome.reasons:
                st.caption(f"{outcome.judge}: {reason}")
with tabs[9]:
    if st.button("Write the reports", key="board_write"):
        st.session_state["board_reports"] = {k: str(v) for k, v in report.write(run_id).items()}
    written = st.session_state.get("board_reports")
    if written:
        for kind, mime in (
            ("json", "application/json"),
            ("battles", "application/jsonl"),
            ("markdown", "text/markdown"),
            ("html", "text/html"),
        ):
            path = written[kind]
            with open(path, "rb") as handle:
                st.download_button(
                    f"Download {path.rsplit('/', 1)[-1]}",
                    handle.read(),
                    file_name=path.rsplit("/", 1)[-1],
                    mime=mime,
                    key=f"board_download_{kind}",
                )
