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


def random_name() -> str:
    r = os.urandom(2)
    return f"{ADJECTIVES[r[0] % len(ADJECTIVES)]}_{NAMES[r[1] % len(NAMES)]}"
