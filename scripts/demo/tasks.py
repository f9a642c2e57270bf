"""Task families for the demo model: a task is what the user asks plus the world it runs in, and a gold
policy (the assistant messages a correct agent sends, computed from the real tool results).

Families: ``python`` (arithmetic and data via the python tool), ``files`` (list and read workspace files via
python), ``browser`` (search, open, find on a local site, answer with a citation), ``json`` (structured answer
for a response-format schema), ``function`` (call a declared function, then answer).

Held-out evaluation tasks come from a different seed *and* from name pools that training never uses as
answers (``split="eval"``); their tokens still occur in training as filler text, so the model has embeddings
for them.

Written for what a tiny model can learn in an hour: it copies token for token (induction) and cannot spell.
BPE splits a word differently after a space than after a quote (`` Amir`` is one token, ``"Amir`` is
``"``, ``Am``, ``ir``), so every value the model must copy appears in its source with the same neighbours it
gets in the model's output: function arguments are quoted in the question, a JSON record lists its fields as
``"key":value`` (the key two tokens before the value, as in the answer), number lists are written ``[a,b,c]``
(each item two tokens after the one before it, where ``a, b, c`` puts the same comma and space before every
item), browser queries and answers put a space before the town, the python program prints ``The answer is N``
and the final answer repeats that line, the files answer repeats the file's ``Label: value`` line.

Every task carries its own random current date for the system message, so the model does not depend on one.
"""

from __future__ import annotations

import datetime
import json
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from scripts.demo import wordings

FAMILIES = ("python", "files", "browser", "json", "function")
EFFORTS = ("low", "medium", "high")

_FIRST = ["Alice", "Bruno", "Chen", "Dana", "Elena", "Farid", "Greta", "Hugo", "Ines", "Jonas", "Kira", "Liam", "Maya", "Nils", "Omar", "Paula", "Quinn", "Rosa", "Sven", "Tara", "Umar", "Vera", "Wanda", "Xavier", "Yara", "Zoe", "Anton", "Bianca", "Carlos", "Diego", "Emma", "Felix", "Hanna", "Ivan", "Julia", "Karl", "Lena", "Marco", "Nora", "Oscar", "Petra", "Rafael", "Sara", "Tomas", "Ursula", "Viktor", "Willa", "Yusuf", "Zara", "Amir", "Beatrice", "Cyrus", "Delia"]
_CITIES = ["Oslo", "Lima", "Cairo", "Quito", "Porto", "Riga", "Turin", "Dakar", "Hanoi", "Perth", "Accra", "Bergen", "Lyon", "Graz", "Malmo", "Tartu", "Cork", "Split", "Bilbao", "Ghent", "Leeds", "Krakow", "Nantes", "Padua", "Basel", "Aarhus", "Tromso", "Sevilla", "Utrecht", "Vilnius", "Kyoto", "Osaka", "Denver", "Austin", "Boston", "Halifax", "Regina", "Hobart", "Dunedin", "Nagoya"]
_PROJECTS = ["orion", "apollo", "falcon", "harbor", "maple", "cedar", "nova", "atlas", "comet", "delta", "ember", "fjord", "granite", "helix", "indigo", "juniper", "kestrel", "lumen", "meteor", "nectar", "onyx", "pelican", "quartz", "raven", "sierra", "tundra", "umbra", "vortex", "willow", "zenith", "aurora", "beacon", "cobalt", "dune", "echo"]
_PRODUCTS = ["lamp", "kettle", "backpack", "helmet", "keyboard", "blender", "tripod", "compass", "lantern", "notebook", "teapot", "stapler", "monitor", "scooter", "toaster", "umbrella", "whistle", "jacket", "camera", "speaker"]
_TOWN_HEADS = ["Ash", "Birch", "Brack", "Carn", "Cold", "Dun", "Dove", "East", "Els", "Fen", "Fox", "Glen", "Har", "Ivy", "Kel", "Lark", "Mer", "North", "Oak", "Pen", "Quarry", "Red", "Salt", "Thorn", "Up", "Vale", "West", "Yarrow", "Zen", "Amble"]
_TOWN_TAILS = ["ford", "wood", "moor", "mere", "worth", "wick", "holt", "bridge", "field", "ham", "hurst", "bank", "mire", "bury", "ley", "cote", "harbour", "side", "by", "ton"]
# 600 made-up towns in a fixed shuffled order: too many to memorise, so the model learns to copy a town's name
# (with 24 towns it memorised them and wrote a known town for a held-out one); the last 20% are held out
_TOWNS = random.Random("towns").sample([h + t for h in _TOWN_HEADS for t in _TOWN_TAILS], 600)
_SURNAMES = ["Baker", "Castillo", "Dunn", "Ellery", "Fischer", "Garrow", "Holm", "Iverson", "Jansen", "Kowal", "Lindqvist", "Moreau", "Novak", "Okafor", "Pryce", "Quist", "Rowe", "Sato", "Tanaka", "Vance"]
_FILLER = ["the", "report", "was", "reviewed", "by", "the", "team", "last", "week", "and", "several", "small", "issues", "were", "fixed", "before", "release", "please", "keep", "this", "file", "up", "to", "date", "when", "anything", "changes", "in", "the", "plan", "or", "schedule", "for", "the", "next", "quarter"]


def _split_pool(pool: list[str], split: str) -> list[str]:
    """Train uses the first 80% of a pool as answers, eval the rest (unseen as answers)."""
    cut = max(1, int(len(pool) * 0.8))
    return pool[:cut] if split == "train" else pool[cut:]


@dataclass(frozen=True)
class Function:
    name: str
    description: str
    parameters: dict[str, Any]
    impl: Callable[[dict[str, Any]], str]


@dataclass
class Step:
    """One gold assistant message. ``text`` may depend on the tool results seen so far."""

    channel: str  # analysis | commentary | final
    text: str | Callable[[list[str]], str]
    recipient: str | None = None
    content_type: str | None = None


@dataclass
class Task:
    family: str
    effort: str
    user: str
    builtin_tools: tuple[str, ...] = ()  # "python", "browser"
    functions: tuple[Function, ...] = ()
    instructions: str | None = None
    response_format: tuple[str, dict[str, Any]] | None = None
    files: dict[str, str] = field(default_factory=dict)
    pages: dict[str, tuple[str, str]] = field(default_factory=dict)  # url -> (title, text)
    steps: list[Step] = field(default_factory=list)
    expected: tuple[str, ...] = ()  # substrings the final answer must contain (case-insensitive)
    expected_json: dict[str, Any] | None = None
    expected_call: tuple[str, dict[str, Any]] | None = None
    # training data only: restart the python process before this call number (0-based) so the transcript
    # shows the real tool's state-lost note; the model learns to carry on (the files are kept)
    python_restart_before: int | None = None
    date: str = "2026-11-30"  # the current date in the system message (make_task draws one per task)


def _compact(value: Any) -> str:
    """JSON as the model writes it: compact, as gpt-oss does and as the constrained decoder enforces
    (``agent/schema.py`` JSON_OPTIONS); spaced JSON in the data would put every constrained run off-distribution."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _think(rng: random.Random, effort: str, low: str, medium: str, high: str) -> str:
    """Analysis text: one clause at low, a short plan at medium, a restated plan at high."""
    return {"low": low, "medium": medium, "high": high}[effort]


# --------------------------------------------------------------------------------------------- python

def _python_task(rng: random.Random, effort: str, split: str, mix: float = 0.0) -> Task:
    kind = rng.choice(["expr", "expr", "mean", "sum", "max"])
    if kind == "expr":
        a, b, c = rng.randint(12, 999), rng.randint(3, 99), rng.randint(1, 999)
        op = rng.choice(["*", "+", "-"])
        expr = f"{a} {op} {b} * {c}" if rng.random() < 0.5 else f"({a} {op} {b}) * {c}"
        user = rng.choice(
            [
                f"What is {expr}?",
                f"Compute {expr}.",
                f"Please calculate {expr} for me.",
                f"Use python to evaluate {expr}.",
                f"I need the value of {expr}.",
            ]
        )
        if mix and rng.random() < mix:
            user = wordings.expr_question(rng, a, op, b, c, expr.startswith("("))
        code = f'print("The answer is", {expr})'
        what = f"the value of {expr}"
    else:
        xs = [rng.randint(1, 500) for _ in range(rng.randint(4, 7))]
        listed = "[" + ",".join(map(str, xs)) + "]"
        word = {"mean": "average", "sum": "total", "max": "largest value"}[kind]
        user = rng.choice(
            [
                f"What is the {word} of these numbers: {listed}?",
                f"Here are some measurements: {listed}. What is their {word}?",
                f"Find the {word} of {listed}.",
            ]
        )
        if mix and rng.random() < mix:
            user = wordings.list_question(rng, xs, kind)
        fn = {"mean": "sum(xs) / len(xs)", "sum": "sum(xs)", "max": "max(xs)"}[kind]
        code = f'xs = {listed}\nprint("The answer is", {fn})'
        what = f"the {word} of the list"
    plan = _think(
        rng,
        effort,
        "Use python.",
        f"The user wants {what}. I will compute it with python.",
        f"The user wants {what}. Doing this by hand is error-prone, so I will write a short python program "
        f"that prints the result, then read the output and report it.",
    )
    steps = [
        Step("analysis", plan),
        Step("analysis", code, recipient="python"),
    ]
    if effort == "high":
        steps.append(Step("analysis", "The program printed the result, so I can report it."))
    steps.append(Step("final", lambda obs: f"{obs[-1].strip()}."))
    # expected answer is computed by really running the code (see realgen.gold_sequence / evaluation)
    return Task("python", effort, user, builtin_tools=("python",), steps=steps, expected=(_py_value(code),))


def _py_value(code: str) -> str:
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(code, {})  # our own generated arithmetic, no input from outside
    return buf.getvalue().strip().removeprefix("The answer is ")


# ---------------------------------------------------------------------------------------------- files


def _files_task(rng: random.Random, effort: str, split: str, mix: float = 0.0) -> Task:
    projects = rng.sample(_PROJECTS, 4)
    target = projects[0]
    names = _split_pool(_FIRST, split)
    files: dict[str, str] = {}
    facts: dict[str, dict[str, str]] = {}
    for p in projects:
        owner = rng.choice(names)
        facts[p] = {
            "owner": owner,
            "budget": str(rng.randint(10, 990) * 100),
            "deadline": f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        }
        filler = " ".join(rng.choice(_FILLER + _FIRST + _CITIES) for _ in range(rng.randint(4, 10)))
        files[f"{p}_plan.txt"] = (
            f"Project: {p}\nOwner: {owner}\nBudget: {facts[p]['budget']}\nDeadline: {facts[p]['deadline']}\n"
            f"Notes: {filler}\n"
        )
    files["readme.md"] = "Project plans live in the *_plan.txt files.\n"
    key = rng.choice(["owner", "budget", "deadline"])
    ask = {"owner": "Who owns", "budget": "What is the budget of", "deadline": "What is the deadline of"}[key]
    user = rng.choice(
        [
            f"{ask} project {target}? The plans are in the workspace files.",
            f"Look at the files in the workspace. {ask} project {target}?",
            f"{ask} the {target} project? Check the workspace.",
        ]
    )
    if mix and rng.random() < mix:
        user = wordings.files_question(rng, key, target)
    fname = f"{target}_plan.txt"
    label = key.capitalize()
    steps = [
        Step(
            "analysis",
            _think(
                rng,
                effort,
                "List the files.",
                f"I need the {key} of project {target}. First I list the workspace files.",
                f"The user asks for the {key} of project {target}. The answer should be in one of the workspace "
                f"files, so I will list them with python, open the plan for {target}, and read the {label} line.",
            ),
        ),
        Step("analysis", "import os\nprint(sorted(os.listdir('/mnt/data')))", recipient="python"),
        Step("analysis", f"The file {fname} should have it. Read it."),
        Step("analysis", f"print(open('/mnt/data/{fname}').read())", recipient="python"),
        Step("final", lambda obs: _files_answer(obs[-1], target, key, fname)),
    ]
    restart = 1 if rng.random() < 0.3 else None
    return Task("files", effort, user, builtin_tools=("python",), files=files, steps=steps,
                expected=(facts[target][key],), python_restart_before=restart)


def _files_answer(obs: str, project: str, key: str, fname: str) -> str:
    m = re.search(rf"{key.capitalize()}: (.+)", obs)
    value = m.group(1).strip() if m else "unknown"
    return f"According to {fname}:\n{key.capitalize()}: {value}"


# -------------------------------------------------------------------------------------------- browser

_TOWN_FACTS = ("founded", "population", "mayor", "river")


# one sentence per fact, each starting with the town and a different verb, so the answer can repeat it; no
# page has a word of a query but its town (queries say founding/population/mayor/river of), so a search finds
# the target page only and no other town's facts are on screen to be confused with the target's
_TOWN_LINES = {
    "founded": "{town} was founded in {value}.",
    "population": "{town} has {value} inhabitants.",
    "mayor": "{town} is led by {value}.",
    "river": "{town} lies on {value}.",
}


def _town_page(rng: random.Random, town: str, split: str) -> tuple[str, dict[str, str]]:
    facts = {
        "founded": str(rng.randint(1100, 1950)),
        "population": str(rng.randint(1200, 98000)),
        "mayor": f"{rng.choice(_split_pool(_FIRST, split))} {rng.choice(_split_pool(_SURNAMES, split))}",
        "river": f"the {rng.choice(_PROJECTS).capitalize()}",
    }
    lines = [_TOWN_LINES[k].format(town=town, value=v) for k, v in facts.items()]
    intro = f"Welcome to {town}, a small town known for its market and old bridge."
    # one layout for every page (as on a real templated site), so the line a fact is on is known
    return "\n\n".join([intro, *lines]), facts


def _browser_task(rng: random.Random, effort: str, split: str, mix: float = 0.0) -> Task:
    towns = rng.sample(_split_pool(_TOWNS, split), 3)
    pages: dict[str, tuple[str, str]] = {}
    facts: dict[str, dict[str, str]] = {}
    for t in towns:
        text, facts[t] = _town_page(rng, t, split)
        pages[f"http://localsite/{t.lower()}.html"] = (f"{t} town guide", text)
    target = towns[0]
    key = rng.choice(_TOWN_FACTS)
    q = {
        "founded": f"When was {target} founded?",
        "population": f"What is the population of {target}?",
        "mayor": f"Who is the mayor of {target}?",
        "river": f"Which river does {target} lie on?",
    }[key]
    user = rng.choice([q, f"Search the local site: {q}", f"{q} Use the browser and cite your source."])
    if mix and rng.random() < mix:
        user = wordings.browser_question(rng, key, target)
    pattern = {"founded": "founded", "population": "inhabitants", "mayor": "led by", "river": "lies on"}[key]
    query = {"founded": "founding", "population": "population", "mayor": "mayor", "river": "river"}[key]
    steps = [
        Step(
            "analysis",
            _think(
                rng,
                effort,
                "Search the site.",
                f"I should search the local site for {target}.",
                f"The user asks about {target} ({key}). I will search the local site, open the {target} page, "
                f"find the line about it and answer with a citation.",
            ),
        ),
        Step("analysis", _compact({"query": f"{query} of {target}"}), recipient="browser.search"),
        Step("analysis", lambda obs: _compact({"id": _link_id(obs[-1], target)}), recipient="browser.open"),
    ]
    if effort == "high":
        steps.append(Step("analysis", _compact({"pattern": pattern}), recipient="browser.find"))
    steps.append(Step("final", lambda obs: _browser_answer(obs, target, key, facts[target][key], pattern)))
    return Task("browser", effort, user, builtin_tools=("browser",), pages=pages, steps=steps,
                expected=(facts[target][key],))


def _link_id(search_page: str, title_word: str) -> int:
    m = re.search(rf"【(\d+)†{re.escape(title_word)}", search_page)
    return int(m.group(1)) if m else 0


def _browser_answer(obs: list[str], town: str, key: str, value: str, pattern: str) -> str:
    page = obs[-1]
    cur = re.match(r"\[(\d+)\]", page)
    cursor = cur.group(1) if cur else "0"
    line = "0"
    for m in re.finditer(r"L(\d+): (.*)", page):
        if value in m.group(2) or pattern in m.group(2).lower():
            line = m.group(1)
            break
    sentence = _TOWN_LINES[key].format(town=town, value=value).rstrip(".")
    return f"According to the town guide, {sentence} 【{cursor}†L{line}】."


# ----------------------------------------------------------------------------------------------- json

_SCHEMAS: dict[str, dict[str, Any]] = {
    "person": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "city": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "city", "age"],
    },
    "product": {
        "type": "object",
        "properties": {"product": {"type": "string"}, "price": {"type": "number"}, "quantity": {"type": "integer"}},
        "required": ["product", "price", "quantity"],
    },
}


def _json_task(rng: random.Random, effort: str, split: str, mix: float = 0.0) -> Task:
    names = _split_pool(_FIRST, split)
    kind = rng.choice(list(_SCHEMAS))
    if kind == "person":
        value: dict[str, Any] = {"name": rng.choice(names), "city": rng.choice(_CITIES), "age": rng.randint(18, 90)}
    else:
        value = {"product": rng.choice(_PRODUCTS), "price": round(rng.randint(2, 400) + rng.choice([0, 0.5, 0.99]), 2),
                 "quantity": rng.randint(1, 60)}
    parts = [f'"{k}":{_compact(v)}' for k, v in value.items()]
    rng.shuffle(parts)
    text = ", ".join(parts)
    user = rng.choice([f"Extract the details: {text}.", f"Turn this record into JSON: {text}.",
                       f"Parse this record: {text}.", f"Fill the {kind} schema from: {text}."])
    if mix and rng.random() < mix:
        user = wordings.json_question(rng, text)
    steps = [
        Step(
            "analysis",
            _think(
                rng,
                effort,
                "Fill the schema.",
                f"I fill the {kind} schema from the text.",
                f"The user wants the {kind} fields from the sentence. I copy each value exactly from the text "
                f"and answer with JSON that matches the schema.",
            ),
        ),
        Step("final", _compact(value)),
    ]
    return Task("json", effort, user, instructions="Answer with JSON that matches the response format.",
                response_format=(kind, _SCHEMAS[kind]), steps=steps, expected_json=value)


# ------------------------------------------------------------------------------------------- function


def _weather(args: dict[str, Any]) -> str:
    city = str(args.get("city", ""))
    seed = sum(map(ord, city))
    return json.dumps({"city": city, "temperature": seed % 35 - 5, "conditions": ["sunny", "cloudy", "rainy"][seed % 3]})


def _stock(args: dict[str, Any]) -> str:
    item = str(args.get("item", ""))
    return json.dumps({"item": item, "in_stock": sum(map(ord, item)) % 97})


FUNCTIONS = {
    "get_weather": Function(
        "get_weather",
        "Gets the current weather for a city.",
        {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        _weather,
    ),
    "check_stock": Function(
        "check_stock",
        "Returns how many units of an item are in stock.",
        {"type": "object", "properties": {"item": {"type": "string"}}, "required": ["item"]},
        _stock,
    ),
}


def _function_task(rng: random.Random, effort: str, split: str, mix: float = 0.0) -> Task:
    fn = rng.choice(list(FUNCTIONS.values()))
    if fn.name == "get_weather":
        arg = rng.choice(_CITIES)
        args: dict[str, Any] = {"city": arg}
        user = rng.choice([f'What is the weather in "{arg}"?', f'How warm is it in "{arg}" right now?'])
        out = json.loads(fn.impl(args))
        answer = f'It is {out["temperature"]} degrees and {out["conditions"]} in "{arg}".'
        expected = (str(out["temperature"]), out["conditions"])
    else:
        arg = rng.choice(_PRODUCTS)
        args = {"item": arg}
        user = rng.choice([f'How many "{arg}" units are in stock?', f'Check the stock for "{arg}".'])
        out = json.loads(fn.impl(args))
        answer = f'There are {out["in_stock"]} units of "{arg}" in stock.'
        expected = (str(out["in_stock"]),)
    if mix and rng.random() < mix:
        user = wordings.function_question(rng, fn.name, arg)
    steps = [
        Step(
            "analysis",
            _think(
                rng,
                effort,
                f"Call {fn.name}.",
                f"I can answer this with the {fn.name} function.",
                f"The user asks something the declared function {fn.name} answers. I call it with the argument "
                f"from the question, then report its result.",
            ),
        ),
        Step("commentary", _compact(args), recipient=f"functions.{fn.name}", content_type="<|constrain|>json"),
        Step("final", lambda obs, a=answer: a),
    ]
    others = tuple(f for f in FUNCTIONS.values() if f.name != fn.name)
    declared = (fn, *others) if rng.random() < 0.5 else (*others, fn)
    return Task("function", effort, user, functions=declared, steps=steps, expected=expected,
                expected_call=(fn.name, args))


_BUILDERS = {
    "python": _python_task,
    "files": _files_task,
    "browser": _browser_task,
    "json": _json_task,
    "function": _function_task,
}


def make_task(family: str, effort: str, rng: random.Random, split: str = "train", wording: str = "fixed",
              mix: float = 0.5) -> Task:
    """One task; ``wording="varied"`` asks it in another way (:mod:`scripts.demo.wordings`) with probability
    ``mix``. The fixed wording draws nothing for it, so the shipped data does not change."""
    if family not in _BUILDERS:
        raise ValueError(f"unknown family {family!r}; choose from {', '.join(FAMILIES)}")
    if effort not in EFFORTS:
        raise ValueError(f"unknown reasoning effort {effort!r}; choose from {', '.join(EFFORTS)}")
    if wording not in wordings.WORDINGS:
        raise ValueError(f"unknown wording {wording!r}; choose from {', '.join(wordings.WORDINGS)}")
    if not 0.0 <= mix <= 1.0:
        raise ValueError(f"wording mix {mix} is not a share between 0 and 1")
    task = _BUILDERS[family](rng, effort, split, mix if wording == "varied" else 0.0)
    task.date = (datetime.date(2025, 1, 1) + datetime.timedelta(days=rng.randrange(4 * 365))).isoformat()
    return task


def generate(n: int, seed: int, split: str = "train", wording: str = "fixed", mix: float = 0.5) -> Iterator[Task]:
    """``n`` tasks cycling through every (family, effort) pair, reproducible from ``seed`` (and the wording)."""
    rng = random.Random(f"{split}:{seed}")
    pairs = [(f, e) for f in FAMILIES for e in EFFORTS]
    for i in range(n):
        f, e = pairs[i % len(pairs)]
        yield make_task(f, e, rng, split, wording, mix)


def generate_family(family: str, n: int, seed: int, split: str = "train", wording: str = "fixed", mix: float = 0.5
                    ) -> Iterator[Task]:
    """``n`` more tasks of one family (cycling the efforts), from their own random stream: extra data for one
    family that leaves :func:`generate`'s tasks as they are."""
    rng = random.Random(f"{split}:{family}:{seed}")
    for i in range(n):
        yield make_task(family, EFFORTS[i % len(EFFORTS)], rng, split, wording, mix)


def vocabulary_pieces() -> list[str]:
    """Every pool word (both splits) in the contexts a task can put it in, and every number 0..999.

    BPE splits a word differently after a space, a slash or a quote, so each variant is a separate piece (to be
    encoded on its own). The trainer gives every token of these pieces a trained embedding (through its copy
    rows) without showing it any held-out task."""
    words = _FIRST + _SURNAMES + _CITIES + _PROJECTS + _PRODUCTS + _TOWNS + _FILLER
    pieces = []
    for w in words:
        for form in (w, w.lower(), w.capitalize()):
            pieces += [f"{p}{form}" for p in ("", " ", "/", "'", '"', "(", "[", "_", "-", "\n")]
            pieces += [f"{form}_plan.txt", f"{form}.html", f"{form}:", f"{form}.", f"{form},"]
    return pieces + [str(i) for i in range(1000)] + [f" {i}" for i in range(1000)]
