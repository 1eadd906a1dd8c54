"""Random container names, docker style: adjective_surname."""

from __future__ import annotations

import os

ADJECTIVES = ("brave", "calm", "clever", "eager", "gentle", "happy", "jolly", "keen", "lucid",
              "merry", "nimble", "quiet", "sharp", "steady", "sunny", "tender", "vivid", "witty",
              "bold", "cosmic", "dreamy", "fervent", "hopeful", "kind", "modest", "patient")
# People whose work made containers possible, or computing in general.
NAMES = ("torvalds", "ritchie", "thompson", "hopper", "lovelace", "turing", "kernighan",
         "mccarthy", "hamilton", "liskov", "knuth", "dijkstra", "lamport", "allen", "shannon",
         "babbage", "johnson", "noether", "curie", "goldberg", "wirth", "tanenbaum", "pike")


def random_name(taken: object = None) -> str:
    """A free adjective_surname; with a digit added when many are in use (as docker)."""
    for attempt in range(20):
        r = os.urandom(3)
        name = f"{ADJECTIVES[r[0] % len(ADJECTIVES)]}_{NAMES[r[1] % len(NAMES)]}"
        if attempt >= 5:
            name += str(r[2])
        if taken is None or not taken(name):
            return name
    return f"minibox_{os.urandom(4).hex()}"
