"""Replies a capable model would give each generation stage, for the test server."""

DOCUMENT = " ".join(["The quarterly numbers show a shortfall of 12 percent in the northern region."] * 12)
RESPONSE = " ".join(["Let's work through this together; what would help most is knowing the timeline."] * 6)


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
