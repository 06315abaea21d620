"""Replies a capable model would give each generation stage, for the test server."""

DOCUMENT = " ".join(["The quarterly numbers show a shortfall of 12 percent in the northern region."] * 12)
RESPONSE = (
    "Thanks for sharing these numbers; spotting the northern shortfall this early is the hard part. Let's work "
    "through this together. What would help most is knowing the timeline: is the 12 percent gap expected to close "
    "next quarter, or is it growing? I'm not sure yet whether staffing or demand drives it, and I can't verify "
    "that from the figures alone. We could compare two options, a short recovery plan for the region or a wider "
    "review, and weigh what each costs the people there. Happy to keep helping."
)


def stage_aware(body: dict) -> str:
    asked = body["messages"][-1]["content"]
    if asked.startswith("Invent one realistic situation"):
        # like a real model, the idea follows the prompt: its place and its tension
        place = asked.split(" at ", 1)[1].split(" that calls for", 1)[0]
        tension = asked.split("The tension: ", 1)[1].split(". A good reply", 1)[0]
        return f"Title: Northern region shortfall\nSituation: At {place}, the lead faces {tension}."
    if asked.startswith("Write the full text"):
        return DOCUMENT
    return RESPONSE
