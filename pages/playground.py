from pages import route_through_app

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
    "Talk to any configured model (the persona's deployed model first). Type a model name to use one that is "
    "not listed. ★ a reply to send it to Review."
)

models = catalog.available_models()
persona_list = personas.list_personas()
persona_ids = {p.name: p.id for p in persona_list}

top = st.columns([2, 2, 1])
persona_name = top[0].selectbox("Persona", [*persona_ids, NO_PERSONA])
mode = top[1].radio("System prompt", [WITH, WITHOUT], horizontal=True, disabled=persona_name == NO_PERSONA)
compare = top[2].toggle("Side by side", help="Send each message to two models at once.")

slots = 2 if compare else 1
active = playground.default_model(persona_ids.get(persona_name))  # the persona's deployed model, if any
if active not in models:
    models = [active, *models]
chains = []
pick_columns = st.columns(slots)
for slot, column in enumerate(pick_columns):
    with column:
        model = st.selectbox(
            f"Model {'AB'[slot]}" if compare else "Model",
            models,
            index=models.index(active) if slot == 0 else min(slot, len(models) - 1),
            accept_new_options=True,
            key=f"model_{slot}",
        )
        fallback = st.selectbox(
            "If it fails, fall back to",
            [NO_FALLBACK, *models],
            index=1 if model != settings.EMBEDDED_MODEL else 0,
            key=f"fallback_{slot}",
        )
        chains.append([model] + ([fallback] if fallback not in (NO_FALLBACK, model) else []))

with st.expander("Generation settings"):
    temperature = st.slider("Temperature", 0.0, 1.5, 0.7, 0.05)
    max_tokens = st.slider("Max reply tokens", 16, 1024, 256, 16)

conversations = st.session_state.setdefault("conversations", {})
keys = [f"{persona_name}|{mode}|{' > '.join(chain)}" for chain in chains]
if st.button("Clear conversation"):
    for key in keys:
        conversations.pop(key, None)


def caption(turn: dict) -> str:
    meta = turn["meta"]
    parts = [
        f"**{meta['model_used']}**",
        f"{meta['prompt_tokens']} → {meta['completion_tokens']} tokens",
        f"{meta['latency_ms'] / 1000:.1f} s",
        f"${meta['cost_usd']:.5f}",
    ]
    if meta["cached"]:
        parts.append("from cache")
    return " · ".join(parts)


def show(history: list[dict], key: str) -> None:
    for index, turn in enumerate(history):
        with st.chat_message(turn["role"]):
            st.markdown(turn["content"])
            if turn.get("meta"):
                st.caption(caption(turn))
                if turn.get("starred"):
                    st.caption("★ sent to Review as a gold-starred example")
                elif st.button("★", key=f"star_{key}_{index}", help="A great reply: send it to Review, gold-starred."):
                    try:
                        playground.star_reply(
                            persona_ids.get(persona_name),
                            turn["meta"]["model_used"],
                            history[:index],
                            turn["content"],
                            st.session_state.get("user_name", ""),
                        )
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


message = st.chat_input("Message")
if message:
    histories = [conversations.setdefault(k, []) for k in keys]
    # A turn that failed is shown but never sent back to the model.
    clean = [[{"role": t["role"], "content": t["content"]} for t in h if not t.get("failed")] for h in histories]
    persona_id = persona_ids.get(persona_name)
    with st.spinner("Thinking…"):
        try:
            replies = playground.side_by_side(
                chains,
                message,
                persona_id=persona_id,
                with_system_prompt=persona_id is not None and mode == WITH,
                histories=clean,
                temperature=temperature,
                max_tokens=max_tokens,
            )
        except UserFacingError as exc:
            st.error(str(exc))
            replies = []
    for history, answer in zip(histories, replies, strict=False):
        history.append({"role": "user", "content": message, "failed": answer.result is None})
        if answer.result:
            meta = answer.result
            history.append(
                {
                    "role": "assistant",
                    "content": meta.text,
                    "meta": {**meta.__dict__, "attempts": [a.__dict__ for a in meta.attempts]},
                }
            )
        else:
            history.append({"role": "assistant", "content": "", "error": answer.error, "failed": True})

columns = st.columns(slots)
for column, key, chain in zip(columns, keys, chains, strict=True):
    with column:
        if compare:
            st.markdown(f"##### {chain[0]}")
        show(conversations.get(key, []), key)
