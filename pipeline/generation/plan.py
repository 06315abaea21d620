"""The coverage plan: which document type, trait, domain and tension each example gets.

Spread on purpose, not left to chance: every (trait, document type) pair is used once before any
is used twice, and domains and tensions rotate through their lists, all seeded.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import asdict, dataclass

DOMAINS = [
    "a hospital's nursing operations",
    "a mid-size software company",
    "a city transport department",
    "a family-owned manufacturing firm",
    "a university research lab",
    "a retail chain's logistics team",
    "a non-profit food bank",
    "a regional bank's compliance office",
    "a game studio",
    "a law firm",
    "a renewable-energy start-up",
    "a public school district",
    "a hotel group",
    "a biotech company",
]
STAKEHOLDERS = [
    "a team lead and two senior engineers",
    "a department head and the finance director",
    "a project manager and an external client",
    "the board and the chief executive",
    "a new hire and their mentor",
    "a vendor and the procurement team",
    "front-line staff and their manager",
    "a product owner and the legal team",
]
TENSIONS = [
    "a deadline that cannot be met without cutting corners",
    "a budget cut that forces a hard choice",
    "data that contradicts what leadership wants to hear",
    "a colleague's mistake that affects customers",
    "two teams with incompatible plans",
    "a promising idea with an unclear risk",
    "a request that is legal but may not be fair",
    "an incident whose cause is still uncertain",
    "pressure to announce results before they are verified",
    "a reorganisation that worries staff",
]


@dataclass(frozen=True)
class Slot:
    index: int
    document_type: str
    trait: str
    trait_description: str
    domain: str
    stakeholders: str
    tension: str

    def as_scenario(self) -> dict:
        return asdict(self)


def coverage_plan(traits: list[dict], document_types: list[str], count: int, seed: int = 0) -> list[Slot]:
    rng = random.Random(seed)
    trait_list = traits or [{"name": "the persona", "description": "the persona's whole manner"}]
    pairs = list(itertools.product(trait_list, document_types))
    domains, stakeholders, tensions = DOMAINS[:], STAKEHOLDERS[:], TENSIONS[:]
    for items in (domains, stakeholders, tensions):
        rng.shuffle(items)
    slots = []
    for index in range(count):
        if index % len(pairs) == 0:
            rng.shuffle(pairs)  # each full pass covers every pair once, in a fresh order
        trait, document_type = pairs[index % len(pairs)]
        slots.append(
            Slot(
                index=index,
                document_type=document_type,
                trait=trait["name"],
                trait_description=trait.get("description", ""),
                domain=domains[index % len(domains)],
                stakeholders=stakeholders[index % len(stakeholders)],
                tension=tensions[(index * 3) % len(tensions)],
            )
        )
    return slots
