from pages import pick_persona, route_through_app

route_through_app()

import streamlit as st

from pipeline import personas, playground, settings
from pipeline.errors import UserFacingError
from pipeline.llm import catalog

NO_PERSONA = "(no persona)"
WITH, WITHOUT = "With the persona's system prompt", "Without it"
NO_FALLBACK = "(no fallback)"

st.title("Playground")
st.caption(
    "Talk to any configured model. A persona with a deployed model opens on it, without the system prompt: "
    "a fine-tuned persona model should carry the persona alone. Type a model name to use one that is not "
    "listed. ★ a reply to send it to Review."
)

models = catalog.available_models()
persona_list = personas.list_personas()
persona_ids = {p.name: p.id for p in persona_list}
state = st.session_state

top = st.columns([2, 2, 1])
persona_name = pick_persona(list(persona_ids), key="playground_persona", where=top[0], last=NO_PERSONA)
persona_id = persona_ids.get(persona_name)
if state.get("playground_defaults_for") != persona_name:  # opened, or another persona picked
    model, with_prompt = playground.defaults(persona_id)  # its deployed model, without the prompt
    state["model_0"], state["prompt_mode"] = model, WITH if with_prompt else WITHOUT
    state["playground_defaults_for"] = persona_name
mode = top[1].radio("System prompt", [WITH, WITHOUT], horizontal=True, disabled=persona_id is None, key="prompt_mode")
compare = top[2].toggle("Side by side", help="Send each message to two models at once (replies come whole).")

slots = 2 if compare else 1
for chosen in (state.get("model_0"), state.get("model_1")):
    if chosen and chosen not in models:  # a deployed or typed model that no picker lists
        models = [chosen, *models]
state.setdefault("model_1", models[min(1, len(models) - 1)])
chains = []
for slot, column in enumerate(st.columns(slots)):
    with column:
        model = st.selectbox(
            f"Model {'AB'[slot]}" if compare else "Model", models, accept_new_options=True, key=f"model_{slot}"
        )
        options = [NO_FALLBACK, *models]
        fallback = st.selectbox(
            "If it fails, fall back to",
            options,
            index=options.index(settings.EMBEDDED_MODEL) if model != settings.EMBEDDED_MODEL else 0,
            key=f"fallback_{slot}",
        )
        chains.append([model] + ([fallback] if fallback not in (NO_FALLBACK, model) else []))

with st.expander("Generation settings"):
    temperature = st.slider("Temperature", 0.0, 1.5, 0.7, 0.05)
    max_tokens = st.slider("Max reply tokens", 16, 1024, 256, 16)

conversations = state.setdefault("conversations", {})
keys = [f"{persona_name}|{mode}|{' > '.join(chain)}" for chain in chains]
if st.button("Clear conversation"):
    for key in keys:
        conversations.pop(key, None)

# A reply still streaming when this run began (Stop, or any other click, interrupted the last run): end it.
live = state.pop("playground_live", None)
if live is not None and not live.done:
    live.stop()
    live.wait(3)  # the partial reply's counts are recorded within a token or so


def caption(meta: dict) -> str:
    parts = [
        f"**{meta['model_used']}**",
        f"{meta['prompt_tokens']} → {meta['completion_tokens']} tokens",
        f"{meta['latency_ms'] / 1000:.1f} s",
        f"${meta['cost_usd']:.5f}",
    ]
    if meta.get("first_token_ms") is not None:
        parts.append(f"first words after {meta['first_token_ms'] / 1000:.1f} s")
    if meta["cached"]:
        parts.append("from cache")
    return " · ".join(parts)


def show(history: list[dict], key: str) -> None:
    for index, turn in enumerate(history):
        with st.chat_message(turn["role"]):
            if turn["content"]:
                st.markdown(turn["content"])
            if turn.get("stopped"):
                st.caption("⏹ Stopped: the reply so far." if turn["content"] else "⏹ Stopped before the reply began.")
            if turn.get("meta"):
                st.caption(caption(turn["meta"]))
                if turn.get("starred"):
                    st.caption("★ sent to Review as a gold-starred example")
                elif turn["content"] and st.button(
                    "★", key=f"star_{key}_{index}", help="A great reply: send it to Review, gold-starred."
                ):
                    try:
                        playground.star_reply(
                            persona_id, turn["meta"]["model_used"], history[:index], turn["content"],
                            state.get("user_name", ""),
                        )  # fmt: skip
                    except UserFacingError as exc:
                        st.error(str(exc))
                    else:
                        turn["starred"] = True
                        st.rerun()
                for attempt in turn["meta"]["attempts"]:
                    st.warning(
                        f"{attempt['model']} failed, so {turn['meta']['model_used']} answered: {attempt['error']}"
                    )
            if turn.get("error"):
                st.error(turn["error"])


def as_meta(result) -> dict:
    return {**result.__dict__, "attempts": [a.__dict__ for a in result.attempts]}


def finish(turn: dict):
    """Called by the reply's own thread when it ends, however it ends."""

    def done(reply: playground.LiveReply) -> None:
        turn.pop("streaming", None)
        if reply.result is not None:
            turn["content"], turn["meta"] = reply.result.text, as_meta(reply.result)
            turn["stopped"] = reply.result.stopped
        elif reply.error is not None:
            turn["content"], turn["error"] = reply.text, reply.error
        turn["failed"] = not turn["content"]  # an empty turn is never sent back to the model

    return done


message = st.chat_input("Message")
histories = [conversations.setdefault(k, []) for k in keys]
# A failed turn is shown but never sent back to the model.
clean = [[{"role": t["role"], "content": t["content"]} for t in h if not t.get("failed")] for h in histories]
if message:
    for history in histories:
        history.append({"role": "user", "content": message})  # shown at once, before any reply

columns = st.columns(slots)
for column, key, chain, history in zip(columns, keys, chains, histories, strict=True):
    with column:
        if compare:
            st.markdown(f"##### {chain[0]}")
        show(history, key)

if message:
    settings_ = {
        "persona_id": persona_id,
        "with_system_prompt": persona_id is not None and mode == WITH,
        "temperature": temperature,
        "max_tokens": max_tokens,
    }
    if compare:
        with columns[0], st.spinner("Both models are answering…"):
            try:
                replies = playground.side_by_side(chains, message, histories=clean, **settings_)
            except UserFacingError as exc:
                replies = [playground.Reply(chain[0], error=str(exc)) for chain in chains]
        for history, answer in zip(histories, replies, strict=True):
            history[-1]["failed"] = answer.result is None
            if answer.result:
                history.append({"role": "assistant", "content": answer.result.text, "meta": as_meta(answer.result)})
            else:
                history.append({"role": "assistant", "content": "", "error": answer.error, "failed": True})
        st.rerun()
    history = histories[0]
    turn = {"role": "assistant", "content": "", "streaming": True}
    try:
        reply = playground.stream_reply(chains[0], message, history=clean[0], **settings_)
    except UserFacingError as exc:
        history[-1]["failed"] = True
        history.append({"role": "assistant", "content": "", "error": str(exc), "failed": True})
        st.rerun()
    history.append(turn)
    live = state["playground_live"] = playground.LiveReply(reply, on_done=finish(turn))
    with columns[0], st.chat_message("assistant"):
        shown = st.empty()
        st.button("⏹ Stop", key="playground_stop", help="End the reply here; what has arrived is kept.")
        try:
            for item in live.events(every=0.25):
                if item is None and not live.text:
                    shown.markdown(f"_Waiting for {chains[0][0]}… {live.elapsed:.0f} s_")
                elif isinstance(item, str):
                    turn["content"] = live.text
                    shown.markdown(live.text + " ▌")
        except UserFacingError:
            pass  # finish() put the error on the turn
        finally:
            if not live.done:  # interrupted: Stop, or another click started a new run
                live.stop()
                turn["content"], turn["stopped"] = live.text, True
    live.wait(3)
    state.pop("playground_live", None)
    if turn.get("failed") and not live.text:
        history[-2]["failed"] = True
    st.rerun()
