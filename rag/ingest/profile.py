"""The corpus profile: a small `profile.json` beside the documents that says what they are and where else to turn.

Every field has a sensible default, so a folder of documents works without one. A region that runs the assistant
over its own documents writes, for example:

    {"name": "Tandvårdsguiden", "covers": "tandvård för vuxna i Region Exempel",
     "contact": "din tandläkare", "elsewhere": "ring 1177 eller din tandvårdsklinik",
     "examples": ["Vad kostar en undersökning?", "Vad är högkostnadsskyddet för tandvård?"]}
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

PROFILE_FILE = "profile.json"

DEFAULT_NAME = "Cancerkollen"
DEFAULT_COVERS = "källorna i den här samlingen"
DEFAULT_CONTACT = "din läkare eller sjuksköterska"
DEFAULT_ELSEWHERE = "ring 1177 Vårdguiden (dygnet runt) eller läs på 1177.se"


@dataclass(frozen=True)
class CorpusProfile:
    """What the corpus is, for the page, the refusals and the advice notice.

    Attributes
    ----------
    name : str
        The assistant's name on the page.
    covers : str
        One phrase on what the sources cover ("svensk cancervård: ..."), used as "Källorna handlar om {covers}."
    contact : str
        Who to ask about one's own situation ("din kontaktsjuksköterska eller läkare").
    elsewhere : str
        Where to turn when the sources do not answer ("ring 1177 Vårdguiden ...").
    examples : tuple of str
        Example questions offered on the empty page (each must be answerable from the sources: a test checks).
    deduplicate : bool
        Index a document whose text is identical to an earlier one only once (benchmarks with duplicate answers
        switch it off).
    """

    name: str = DEFAULT_NAME
    covers: str = DEFAULT_COVERS
    contact: str = DEFAULT_CONTACT
    elsewhere: str = DEFAULT_ELSEWHERE
    examples: tuple[str, ...] = ()
    deduplicate: bool = True
    problems: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def load(cls, corpus_dir: Path) -> "CorpusProfile":
        """The profile of a corpus folder; a missing file gives the defaults, a bad one the defaults and a problem."""
        path = Path(corpus_dir) / PROFILE_FILE
        if not path.exists():
            return cls()
        try:
            data = json.loads(path.read_bytes().decode("utf-8-sig"))
            if not isinstance(data, dict):
                raise ValueError("the profile must be a JSON object")
        except (OSError, ValueError, UnicodeDecodeError, RecursionError) as exc:
            return cls(problems=(f"{PROFILE_FILE} could not be read ({exc}); the defaults are used",))
        kwargs, problems = {}, []
        for name in ("name", "covers", "contact", "elsewhere"):
            value = data.get(name)
            if isinstance(value, str) and value.strip():
                kwargs[name] = value.strip()
            elif value is not None:
                problems.append(f"{PROFILE_FILE}: {name} must be text; the default is used")
        examples = data.get("examples")
        if isinstance(examples, list):
            kwargs["examples"] = tuple(e.strip() for e in examples if isinstance(e, str) and e.strip())[:8]
        elif examples is not None:
            problems.append(f"{PROFILE_FILE}: examples must be a list of questions")
        if isinstance(data.get("deduplicate"), bool):
            kwargs["deduplicate"] = data["deduplicate"]
        return cls(**kwargs, problems=tuple(problems))

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("problems")
        d["examples"] = list(self.examples)
        return d
