"""The demo model's families asked in wordings its training data never uses: other verbs, word orders,
politeness, numbers and operators written in other styles, the tool named or not.

Arithmetic (the ``python`` family, the main job) has most of the tasks; the other families have a few each.
Every task is a held-out task (``split="eval"``, its own seed) whose world and expected answer are the
generator's; only what the user says changes, and each task's ``meta`` says which wording, number style and
whether the tool is named, so a run can be broken down by them.
"""

from __future__ import annotations

import datetime
import random
import re
from dataclasses import replace
from typing import Any

from scripts.demo.evalsuite import suite
from scripts.demo.tasks import EFFORTS, Task, make_task
from scripts.demo.wordings import spelled

SEED = "paraphrase:1"
def words(n: int) -> str:
    """0..999 in English words."""
    if n < 100:
        return spelled(n)
    rest = n % 100
    return f"{spelled(n // 100)} hundred" + ("" if rest == 0 else f" and {spelled(rest)}")


# (name, template, tool named): {e} is the expression as the number style writes it
_EXPR_WORDINGS = [
    ("work-out", "Work out {e}.", False),
    ("evaluate-please", "Evaluate {e}, please.", False),
    ("comes-to", "Could you tell me what {e} comes to?", False),
    ("equals-q", "{e} = ?", False),
    ("quick-q", "Hey, quick question: how much is {e}?", False),
    ("grateful", "I'd be grateful if you could compute {e}.", False),
    ("whats", "What's {e}?", False),
    ("result-of", "Find the result of {e}.", False),
    ("homework", "My homework asks for {e}. What is it?", False),
    ("calc-python", "Calculate {e} using Python.", True),
    ("run-program", "Run a python program to work out {e}.", True),
    ("tool-first", "With the python tool, evaluate {e} and tell me the result.", True),
]
_LIST_WORDS = {"mean": ["mean", "arithmetic mean", "average value"], "sum": ["sum", "grand total", "total sum"],
               "max": ["maximum", "biggest number", "highest value"]}
_LIST_WORDINGS = [
    ("give-me", "Give me the {w} of {xs}.", False),
    ("numbers-first", "{Xs}: what is the {w}?", False),
    ("polite", "Could you please find the {w} of the following numbers: {xs}?", False),
    ("python-named", "Use python to get the {w} of {xs}.", True),
    ("i-have", "I have these values: {xs}. Tell me their {w}.", False),
]


def _expr_style(rng: random.Random, a: int, op: str, b: int, c: int, paren: bool) -> tuple[str, str]:
    """(style name, the expression written in it); every style means ``a op b * c`` or ``(a op b) * c``."""
    style = rng.choice(["plain", "compact", "unicode", "words-ops", "spelled-small", "english"])
    if style == "plain":
        return style, f"({a} {op} {b}) * {c}" if paren else f"{a} {op} {b} * {c}"
    if style == "compact":
        return style, f"({a}{op}{b})*{c}" if paren else f"{a}{op}{b}*{c}"
    if style == "unicode":
        o = {"*": "×", "+": "+", "-": "−"}[op]
        return style, f"({a} {o} {b}) × {c}" if paren else f"{a} {o} {b} × {c}"
    if style == "words-ops":
        o = {"*": "times", "+": "plus", "-": "minus"}[op]
        return style, f"({a} {o} {b}) times {c}" if paren else f"{a} {o} {b} times {c}"
    if style == "spelled-small":
        bw = words(b)
        return style, f"({a} {op} {bw}) * {c}" if paren else f"{a} {op} {bw} * {c}"
    # english: the grouping said in words
    name = {"*": "product", "+": "sum", "-": "difference"}[op]
    if paren:
        return style, f"the {name} of {a} and {b}, multiplied by {c}"
    return style, f"{a} {'plus' if op == '+' else 'minus' if op == '-' else 'times'} the product of {b} and {c}"


def _value(expr: str) -> str:
    return str(eval(expr, {"__builtins__": {}}))  # our own generated arithmetic


def _python_expr(rng: random.Random, effort: str) -> tuple[Task, dict[str, Any]]:
    a, b, c = rng.randint(12, 999), rng.randint(3, 99), rng.randint(1, 999)
    op = rng.choice(["*", "+", "-"])
    paren = rng.random() < 0.5
    style, e = _expr_style(rng, a, op, b, c, paren)
    name, template, named = rng.choice(_EXPR_WORDINGS)
    value = _value(f"({a} {op} {b}) * {c}" if paren else f"{a} {op} {b} * {c}")
    task = Task("python", effort, template.format(e=e), builtin_tools=("python",), expected=(value,))
    return task, {"kind": "expr", "wording": name, "numbers": style, "tool_named": named}


def _python_list(rng: random.Random, effort: str) -> tuple[Task, dict[str, Any]]:
    xs = [rng.randint(1, 500) for _ in range(rng.randint(4, 7))]
    kind = rng.choice(["mean", "sum", "max"])
    style = rng.choice(["comma-space", "and", "spaces", "semicolons", "brackets-spaced"])
    listed = {"comma-space": ", ".join(map(str, xs)),
              "and": ", ".join(map(str, xs[:-1])) + f" and {xs[-1]}",
              "spaces": " ".join(map(str, xs)),
              "semicolons": "; ".join(map(str, xs)),
              "brackets-spaced": "[" + ", ".join(map(str, xs)) + "]"}[style]
    name, template, named = rng.choice(_LIST_WORDINGS)
    w = rng.choice(_LIST_WORDS[kind])
    user = template.format(w=w, xs=listed, Xs=listed[0].upper() + listed[1:])
    value = {"mean": sum(xs) / len(xs), "sum": sum(xs), "max": max(xs)}[kind]
    task = Task("python", effort, user, builtin_tools=("python",), expected=(str(value),))
    return task, {"kind": kind, "wording": name, "numbers": style, "tool_named": named}


_FILES = {
    "owner": ["Who is responsible for the {p} project? The plan files are in the workspace.",
              "Find out who owns {p} from the workspace plans.", "Tell me the owner of {p}, please."],
    "budget": ["How much money does project {p} have? See the workspace.",
               "Please look up the budget for {p} in the plan files.", "{p}: what's its budget?"],
    "deadline": ["When is {p} due? The plans are in the workspace.",
                 "By which date must the {p} project be finished? Check the files.", "Tell me {p}'s deadline."],
}
_BROWSER = {
    "founded": ["In what year was {t} founded?", "Look up when {t} was founded on the local site.",
                "How old is {t}? Give its founding year with a citation."],
    "population": ["How many people live in {t}?", "Please find the number of inhabitants of {t}.",
                   "{t} - how big is its population? Cite the page."],
    "mayor": ["Who runs {t} as mayor?", "Find the name of {t}'s mayor with the browser.",
              "Could you tell me who leads {t}?"],
    "river": ["What river flows through {t}?", "On which river is {t}? Search the local site.",
              "Name the river {t} lies on, please."],
}
_FUNCTION = {
    "city": ['Is it raining in "{a}"?', 'Tell me the current weather for "{a}".',
             "What's the weather like in {a} today?", 'Use get_weather for "{a}", please.'],
    "item": ['Do we have any "{a}" left?', "How many {a} units do we have?", 'Please run check_stock for "{a}".'],
}
_JSON = ["Give me this as JSON: {r}.", "Please structure the following data: {r}.",
         "Convert to JSON for the schema: {r}.", "Here is a record, {r}. Output it as JSON."]


def _reword(task: Task, rng: random.Random) -> tuple[Task, dict[str, Any]]:
    """Another wording of a generated files, browser, json or function task."""
    u = task.user
    if task.family == "files":
        p = re.search(r"(?:project (\w+)|the (\w+) project)", u)
        proj = next(g for g in p.groups() if g) if p else ""
        key = "owner" if "owns" in u else "budget" if "budget" in u else "deadline"
        options = _FILES[key]
        i = rng.randrange(len(options))
        text = options[i].format(p=proj)
    elif task.family == "browser":
        m = re.search(r"(?:of|was|does) ([A-Z]\w+)", u)
        town = m.group(1) if m else ""
        key = ("founded" if "founded" in u else "population" if "population" in u
               else "mayor" if "mayor" in u else "river")
        options = _BROWSER[key]
        i = rng.randrange(len(options))
        text = options[i].format(t=town)
    elif task.family == "json":
        r = re.search(r": (.*)\.$", u)
        i = rng.randrange(len(_JSON))
        text = _JSON[i].format(r=r.group(1) if r else u)
    else:
        arg = re.search(r'"([^"]+)"', u)
        key = "city" if task.expected_call and "city" in task.expected_call[1] else "item"
        options = _FUNCTION[key]
        i = rng.randrange(len(options))
        text = options[i].format(a=arg.group(1) if arg else "")
    named = bool(re.search(r"browser|get_weather|check_stock|python", text))
    return replace(task, user=text), {"kind": task.family, "wording": f"{task.family}-{i}", "numbers": "as trained",
                                      "tool_named": named}


def paraphrased(n_expr: int = 60, n_list: int = 30, n_other: int = 15) -> list[tuple[Task, dict[str, Any]]]:
    rng = random.Random(SEED)
    out = []
    for i in range(n_expr):
        out.append(_python_expr(rng, EFFORTS[i % 3]))
    for i in range(n_list):
        out.append(_python_list(rng, EFFORTS[i % 3]))
    for family in ("files", "browser", "json", "function"):
        for i in range(n_other):
            out.append(_reword(make_task(family, EFFORTS[i % 3], rng, "eval"), rng))
    for task, _ in out:
        task.date = (datetime.date(2025, 1, 1) + datetime.timedelta(days=rng.randrange(4 * 365))).isoformat()
    return out


def paraphrase_suite() -> dict[str, Any]:
    tasks = paraphrased()
    data = suite("demo-paraphrase", ((f"para-{i:03d}", t) for i, (t, _) in enumerate(tasks)))
    for rec, (_, meta) in zip(data["tasks"], tasks, strict=True):
        rec["meta"] = meta
    return data
