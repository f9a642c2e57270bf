"""Varied wordings of the demo tasks' questions, for training data that does not tie the model to one phrasing.

``wording="varied"`` in :func:`scripts.demo.tasks.generate` asks a share of the tasks (the mix ratio) through the
functions here: other verbs, word orders and politeness, the tool named or not, and for arithmetic the
expression in several notations (``a op b * c``, compact ``a-b*c``, ``×``/``−`` signs, operators as words, a
small number spelled out, the grouping said in English) and number lists in several layouts. Each function
draws from the task's own random generator, so the data stays reproducible from the seed.

What stays unseen: every sentence template here differs from those of the held-out paraphrase suite
(:mod:`scripts.demo.paraphrase`), and so does every question generated from them, which a test checks on
normalised templates and texts. What is shared is the notation vocabulary (digits, ``×``, ``times``, ``the sum
of ... and ...``, ``multiplied by``): the words of arithmetic, not wordings of a question.

Every value the model must copy keeps the tokens it has in the fixed wording (a town after a space, a function
argument in quotes, a record's ``"key":value`` pairs), so the gold answers need no spelling.
"""

from __future__ import annotations

import random

WORDINGS = ("fixed", "varied")

_SMALL = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
          "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def spelled(n: int) -> str:
    """0..99 in English words (``forty-two``)."""
    if n < 20:
        return _SMALL[n]
    return _TENS[n // 10] + ("" if n % 10 == 0 else "-" + _SMALL[n % 10])


# sentence templates: {e} an expression, {xs} a number list, {w} the statistic's name
EXPR_TEMPLATES = [
    "Determine {e}.", "Tell me the value of {e}.", "Solve {e}.", "How much does {e} come to?",
    "{e}: what is the result?", "Kindly work {e} out for me.", "Please, what is {e}?", "Can you evaluate {e}?",
    "Compute {e} in python and tell me the answer.", "I would like to know {e}.", "Result of {e}?",
    "Could you find {e}, thanks?", "Hi! What do you get for {e}?", "Get python to compute {e}.",
    "{e} equals what?", "Give me the answer to {e}.", "Quick one: {e}?", "Please work out {e} with the python tool.",
    "What number is {e}?", "Do the maths: {e}.", "Hello, can you calculate {e} please?", "{e} is how much?",
    "Write a program that prints {e}.", "Need this computed: {e}.", "How big is {e}?",
    "Could you please evaluate {e} for me?", "Using python, what is {e}?", "Figure out {e}.",
]
LIST_TEMPLATES = [
    "Tell me the {w} of {xs}.", "{xs} - what is their {w}?", "Please compute the {w} of {xs}.",
    "What's the {w} of the numbers {xs}?", "Use the python tool to find the {w} of {xs}.",
    "Numbers: {xs}. I need the {w}.", "Calculate the {w} for {xs}, please.", "What is the {w} across {xs}?",
    "Given {xs}, what is the {w}?", "The values are {xs}. Compute their {w}.", "Work out the {w} of {xs}.",
    "Can you get the {w} of these: {xs}?", "With python, compute the {w} of {xs}.",
    "Data: {xs}. What is the {w} of it?",
]
LIST_NAMES = {"mean": ["mean", "average", "arithmetic mean", "average value", "mean value"],
              "sum": ["sum", "total", "grand total", "sum total", "overall total"],
              "max": ["maximum", "largest value", "max", "biggest number", "highest value", "largest number"]}
FILES_TEMPLATES = {
    "owner": ["Which person owns project {p}? Look in the workspace.", "Tell me who owns the {p} project.",
              "Project {p}: who owns it? The files are in the workspace.",
              "Please check the workspace plans and tell me who owns project {p}."],
    "budget": ["What budget does project {p} have? Look in the workspace.", "I need the budget of project {p}.",
               "Project {p}: what is the budget? Read the plan files.",
               "Please check the workspace and give me the budget of the {p} project."],
    "deadline": ["What deadline does project {p} have? Look in the workspace.", "I need the deadline of project {p}.",
                 "Project {p}: what is the deadline? Read the plan files.",
                 "Please check the workspace and give me the deadline of the {p} project."],
}
BROWSER_TEMPLATES = {
    "founded": ["Please tell me when {t} was founded.", "What year was {t} founded? Use the local site.",
                "Find out when {t} was founded and cite the page."],
    "population": ["Find the population of {t}.", "Please look up the population of {t} on the local site.",
                   "I would like to know the population of {t}, with a citation."],
    "mayor": ["I would like to know the mayor of {t}.", "Search the local site for the mayor of {t}.",
              "Tell me who the mayor of {t} is, with a citation."],
    "river": ["Which river is {t} on?", "Look up the river of {t} on the local site.",
              "Tell me which river {t} lies on, and cite it."],
}
JSON_TEMPLATES = ["Make JSON from this record: {r}.", "Please extract: {r}.", "Record: {r}. Fill the schema, please.",
                  "Return JSON for {r}.", "Could you turn {r} into JSON?"]
FUNCTION_TEMPLATES = {
    "get_weather": ['What is the weather like in "{a}" right now?', 'Could you check the weather in "{a}"?',
                    'Weather for "{a}", please.', 'Call get_weather for "{a}" and tell me.',
                    'Is it warm in "{a}" today?'],
    "check_stock": ['How many units of "{a}" do we have?', 'Is "{a}" in stock? How many?',
                    'Please check how many "{a}" units are left.', 'Call check_stock for "{a}".',
                    'Stock level of "{a}", please.'],
}


def expression(rng: random.Random, a: int, op: str, b: int, c: int, paren: bool) -> str:
    """``a op b * c`` (or ``(a op b) * c``) in one of several notations."""
    style = rng.choice(["plain", "compact", "unicode", "words", "spelled", "english", "english"])
    if style == "english":
        name = {"*": "product", "+": "sum", "-": "difference"}[op]
        if paren:
            return rng.choice([f"the {name} of {a} and {b}, multiplied by {c}", f"the {name} of {a} and {b}, times {c}",
                               f"the {name} of {a} and {b} multiplied by {c}"])
        said = {"*": "times", "+": "plus", "-": "minus"}[op]
        return rng.choice([f"{a} {said} the product of {b} and {c}", f"{a} {said} {b} multiplied by {c}"])
    text = f"({a} {op} {b}) * {c}" if paren else f"{a} {op} {b} * {c}"
    if style == "compact":
        return text.replace(" ", "")
    if style == "unicode":
        return text.replace(" * ", " × ").replace(" - ", " − ")
    if style == "words":
        return text.replace(" * ", " times ").replace(" + ", " plus ").replace(" - ", " minus ")
    if style == "spelled":
        return text.replace(f" {b})", f" {spelled(b)})").replace(f" {b} *", f" {spelled(b)} *")
    return text


def expr_question(rng: random.Random, a: int, op: str, b: int, c: int, paren: bool) -> str:
    return rng.choice(EXPR_TEMPLATES).format(e=expression(rng, a, op, b, c, paren))


def number_list(rng: random.Random, xs: list[int]) -> str:
    """``xs`` in one of several layouts (the fixed wording writes ``[a,b,c]``)."""
    style = rng.choice(["brackets", "brackets-spaced", "comma", "and", "spaces", "semicolons"])
    return {"brackets": "[" + ",".join(map(str, xs)) + "]", "brackets-spaced": "[" + ", ".join(map(str, xs)) + "]",
            "comma": ", ".join(map(str, xs)), "and": ", ".join(map(str, xs[:-1])) + f" and {xs[-1]}",
            "spaces": " ".join(map(str, xs)), "semicolons": "; ".join(map(str, xs))}[style]


def list_question(rng: random.Random, xs: list[int], kind: str) -> str:
    return rng.choice(LIST_TEMPLATES).format(w=rng.choice(LIST_NAMES[kind]), xs=number_list(rng, xs))


def files_question(rng: random.Random, key: str, project: str) -> str:
    return rng.choice(FILES_TEMPLATES[key]).format(p=project)


def browser_question(rng: random.Random, key: str, town: str) -> str:
    return rng.choice(BROWSER_TEMPLATES[key]).format(t=town)


def json_question(rng: random.Random, record: str) -> str:
    return rng.choice(JSON_TEMPLATES).format(r=record)


def function_question(rng: random.Random, function: str, arg: str) -> str:
    return rng.choice(FUNCTION_TEMPLATES[function]).format(a=arg)


def all_templates() -> list[str]:
    """Every sentence template above (for the disjointness test)."""
    out = EXPR_TEMPLATES + LIST_TEMPLATES + JSON_TEMPLATES
    for group in (FILES_TEMPLATES, BROWSER_TEMPLATES, FUNCTION_TEMPLATES):
        out += [t for templates in group.values() for t in templates]
    return out
