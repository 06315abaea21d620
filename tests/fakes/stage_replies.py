"""Replies a capable model would give each generation stage, for the test server."""

DOCUMENT = " ".join(["The quarterly numbers show a shortfall of 12 percent in the northern region."] * 12)
RESPONSE = " ".join(["Let's work through this together; what would help most is knowing the timeline."] * 6)


def stage_aware(body: dict) -> str:
    asked = body["messages"][-1]["content"]
    if asked.startswith("Invent one realistic situation"):
        return "Title: Northern region shortfall\nSituation: The finance lead writes to the board about a gap."
    if asked.startswith("Write the full text"):
        return DOCUMENT
    return RESPONSE
