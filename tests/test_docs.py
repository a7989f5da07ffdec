"""The README and docs/ against the code: every command line they give uses options its script accepts (the
script's own argparse parser decides), every script they name exists, and every relative link (with its #anchor)
points at a file and a heading that exist. So the docs cannot drift from the scripts again."""

import argparse
import importlib
import inspect
import re
import shlex
from unittest import mock

import pytest

from tests.helpers import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench" / "README.md"]
BIN = {p.stem for p in (ROOT / "wsi" / "bin").glob("*.py") if p.stem != "__init__"}
BENCH = {p.stem for p in (ROOT / "bench").glob("*.py") if p.stem != "__init__"}
# Shell variables whose value is an option list handed to one script (scripts/*.sh, scripts/camelyon16.sh).
OPTION_VARIABLES = {"SAMPLE_ARGS": "sample_coords", "C16_SAMPLE_ARGS": "sample_coords",
                    "C16_VALID_SAMPLE_ARGS": "sample_coords", "C16_HNM_ARGS": "hard_negatives",
                    "PROBS_ARGS": "probs_map", "C16_PROBS_ARGS": "probs_map", "DEMO_PROBS_ARGS": "probs_map",
                    "TRAIN_ARGS": "train"}
# A script reference: `python wsi/bin/X.py`, `torchrun ... wsi/bin/X.py`, `python -m wsi.bin.X`, `ncrf-X`,
# `python bench/X.py`, or a bare `X.py` naming a script of wsi/bin or bench/.
SCRIPT = re.compile(r"(?<![\w/.-])(?:(?P<bin>wsi/bin/)(?P<binname>[\w]+)\.py|-m\s+wsi\.bin\.(?P<module>\w+)"
                    r"|ncrf-(?P<ncrf>\w+)|(?P<bench>bench/)(?P<benchname>\w+)\.py|(?P<bare>\w+)\.py)(?![\w/])")
VARIABLE = re.compile(r"\b(?P<name>[A-Z0-9_]+)=(?P<quote>[\"'])(?P<value>.*?)(?P=quote)")
PLACEHOLDERS = {"X", "NAME"}


def _fenced_and_inline(text):
    """(kind, text) of each fenced block's logical lines and each inline code span, outside the blocks."""
    pieces, prose, block = [], [], None
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            if block is None:
                block = []
            else:
                pieces += [("block", logical) for logical in _logical_lines(block)]
                block = None
            continue
        (block if block is not None else prose).append(line)
    # inline spans may run over a line break inside a paragraph, not beyond it
    for paragraph in re.split(r"\n\s*\n", "\n".join(prose)):
        pieces += [("inline", span) for span in re.findall(r"`([^`]+)`", paragraph.replace("\n", " "))]
    return pieces


def _logical_lines(lines):
    """Join shell continuations (a trailing backslash) and synopsis continuations (an indented line that opens
    with ``[`` or ``(`` under a command)."""
    joined = []
    for line in lines:
        stripped = line.strip()
        if joined and (joined[-1].endswith("\\") or (line[:1].isspace() and stripped[:1] in "[(")):
            joined[-1] = joined[-1].rstrip("\\").rstrip() + " " + stripped
        else:
            joined.append(stripped)
    return joined


def _script(match):
    """The script a reference names: (folder 'bin' or 'bench', name), or None for a placeholder or another file."""
    if match["binname"] or match["module"] or match["ncrf"]:
        name = match["binname"] or match["module"] or match["ncrf"]
        return None if name in PLACEHOLDERS else ("bin", name)
    if match["benchname"]:
        return "bench", match["benchname"]
    name = match["bare"]
    if name in BIN:
        return "bin", name
    if name in BENCH:
        return "bench", name
    return None


def _arguments(rest):
    """The words after a script reference, up to the end of its command (a pipe, `&&`, `;`, a comment)."""
    try:
        split = shlex.split(rest, comments=True)  # quoted values stay one word
    except ValueError:  # an apostrophe of the prose around an inline span
        split = rest.split()
    words = []
    for word in split:
        if word in {"|", "||", "&&", ";", "#"} or word.startswith("#") or word.startswith("2>"):
            break
        words.append(word)
        if word.endswith(";"):
            break
    return words


def commands():
    """(document, kind, text, (folder, script), words) of every command line in the README and docs/: kind is
    "block" (a fenced block's logical line), "inline" (a code span) or "variable" (an option-list variable)."""
    found = []
    for doc in DOCS:
        for kind, text in _fenced_and_inline(doc.read_text()):
            for match in SCRIPT.finditer(text):
                script = _script(match)
                if script is not None:
                    found.append((doc, kind, text, script, _arguments(text[match.end():])))
            for match in VARIABLE.finditer(text):
                if match["name"] in OPTION_VARIABLES:
                    found.append((doc, "variable", text, ("bin", OPTION_VARIABLES[match["name"]]),
                                  match["value"].split()))
    return found


class _Captured(Exception):
    def __init__(self, parser):
        self.parser = parser


_PARSERS = {}


def parser_of(folder, name):
    """The script's own argparse parser: ``get_args_parser()`` where it has one, else the parser its ``main``
    builds, caught at its ``parse_args`` before any work."""
    if (folder, name) not in _PARSERS:
        module = importlib.import_module(f"wsi.bin.{name}" if folder == "bin" else f"bench.{name}")
        if hasattr(module, "get_args_parser"):
            parser = module.get_args_parser()
        else:
            def capture(self, *args, **kwargs):
                raise _Captured(self)

            with mock.patch.object(argparse.ArgumentParser, "parse_args", capture), \
                    mock.patch.object(argparse.ArgumentParser, "parse_known_args", capture), \
                    pytest.raises(_Captured) as caught:
                module.main(*([[]] if inspect.signature(module.main).parameters else []))
            parser = caught.value.parser
        _PARSERS[folder, name] = parser
    return _PARSERS[folder, name]


def _subparsers(parser):
    return next((action.choices for action in parser._actions if isinstance(action, argparse._SubParsersAction)),
                {})


def _options(parser, words):
    """The option strings a command line may use: the parser's, plus its sub-command's when it names one."""
    options = set(parser._option_string_actions)
    sub = _subparsers(parser)
    for word in words:
        if word in sub:
            options |= set(sub[word]._option_string_actions)
            break
    return options


def _option_words(words):
    """The options a command line gives: `--name` or `--name=value`, stripped of synopsis brackets."""
    for word in words:
        word = word.strip("[](){}|,")
        if word.startswith("-") and not re.fullmatch(r"-[\d.]+", word) and word not in {"-", "--"}:
            yield word.split("=", 1)[0]


def _placeholder(value):
    """A value that stands for one (a metavar such as N, K/N or X,Y,W,H; <...>; an ellipsis; a shell variable)."""
    return (re.fullmatch(r"[A-Z][A-Z0-9_,/]*", value) is not None or any(c in value for c in "<>$…*")
            or "..." in value or value == "")


def _value_problems(parser, words):
    """What the parser would refuse in the values given to each option: a value outside its choices or one its
    type rejects. Synopsis alternatives (`{fast,faithful}`, `cuda|cpu`) are each checked."""
    actions = dict(parser._option_string_actions)
    sub = _subparsers(parser)
    for word in words:
        if word in sub:
            actions.update(sub[word]._option_string_actions)
            break
    problems, k = [], 0
    while k < len(words):
        option = words[k].strip("[](){}|,").split("=", 1)
        action = actions.get(option[0]) if option[0].startswith("-") else None
        k += 1
        if action is None:
            continue
        wanted = {None: 1, "?": 1}.get(action.nargs, action.nargs)  # 0 for a flag; "*", "+" take the rest
        values = option[1:]
        while not option[1:] and k < len(words) and not words[k].lstrip("[(").startswith("-") and (
                wanted in ("*", "+") or len(values) < wanted):
            values.append(words[k])
            k += 1
        for value in values:
            value = value.strip("[]()")
            for alternative in re.split(r"[|]", value.strip("{}")) if ("|" in value or "{" in value) else [value]:
                alternatives = alternative.split(",") if value.startswith("{") else [alternative]
                for choice in alternatives:
                    if _placeholder(choice):
                        continue
                    if action.choices is not None and choice not in action.choices and not (
                            action.type and _converts(action.type, choice) in action.choices):
                        problems.append(f"{option[0]} {choice}: not one of {list(action.choices)}")
                    elif action.choices is None and callable(action.type) and _converts(action.type, choice) is _BAD:
                        problems.append(f"{option[0]} {choice}: refused by its type")
    return problems


_BAD = object()


def _converts(kind, value):
    try:
        return kind(value)
    except Exception:  # argparse turns any of these into a usage error
        return _BAD


def _exit(parser, status=0, message=None):
    raise SystemExit(message or status)


def _concrete(words):
    """A command line with real values (no synopsis brackets, ellipses, alternatives or shell expansions)."""
    return not any(re.search(r"[\[\](){}|<>…$*]|\.\.\.", word) for word in words) and not any(
        word.isupper() and len(word) > 1 and word.isalpha() for word in words)


DOC_COMMANDS = commands()


def existing(found):
    """The commands of scripts that exist (test_every_script_the_docs_name_exists reports the others)."""
    return [entry for entry in found if entry[3][1] in (BIN if entry[3][0] == "bin" else BENCH)]


def test_the_docs_give_many_commands():
    """The extraction itself works: each script of wsi/bin appears in the docs with its options."""
    named = {script for _, _, _, script, _ in DOC_COMMANDS}
    assert {("bin", name) for name in BIN} <= named
    assert sum(1 for *_, words in DOC_COMMANDS if any(_option_words(words))) > 50


@pytest.mark.parametrize("folder_name", sorted({script for *_, script, _ in DOC_COMMANDS}),
                         ids=lambda s: "/".join(s))
def test_every_script_the_docs_name_exists(folder_name):
    folder, name = folder_name
    assert name in (BIN if folder == "bin" else BENCH), f"the docs name {folder}/{name}.py, which does not exist"


def test_every_option_in_the_docs_is_one_its_script_accepts():
    wrong = []
    for doc, kind, text, (folder, name), words in existing(DOC_COMMANDS):
        options = _options(parser_of(folder, name), words)
        wrong += [f"{doc.relative_to(ROOT)}: {name}: {option} in `{text}`" for option in _option_words(words)
                  if option not in options]
    assert not wrong, "options the scripts do not accept:\n" + "\n".join(wrong)


def test_every_option_value_in_the_docs_is_one_its_script_accepts():
    """Values given to options (in synopses, prose and option-list variables too) are within the option's choices
    and pass its type: `--runtimes onnxruntime` once stood in docs/probs_map.md after the bench refused it."""
    wrong = []
    for doc, kind, text, (folder, name), words in existing(DOC_COMMANDS):
        wrong += [f"{doc.relative_to(ROOT)}: {name}: {problem} in `{text}`"
                  for problem in _value_problems(parser_of(folder, name), words)]
    assert not wrong, "values the scripts refuse:\n" + "\n".join(wrong)


def test_every_complete_command_in_the_docs_parses():
    """A command given with real values (not a synopsis) parses with its script's parser: the right number of
    positional arguments, values its options accept (choices, types, ranges)."""
    wrong, parsed = [], 0
    for doc, kind, text, (folder, name), words in existing(DOC_COMMANDS):
        if kind != "block" or not _concrete(words) or not words:
            continue
        with mock.patch.object(argparse.ArgumentParser, "exit", _exit), mock.patch("sys.stderr"):
            try:
                parser_of(folder, name).parse_args(words)
                parsed += 1
            except SystemExit as refused:
                wrong.append(f"{doc.relative_to(ROOT)}: `{text}`: {str(refused.code).strip()}")
    assert not wrong, "commands their scripts refuse:\n" + "\n".join(wrong)
    assert parsed > 20


def _slug(heading):
    """GitHub's anchor of a heading: lower case, punctuation dropped (not `-` or `_`), spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(doc):
    found, seen, fenced = set(), {}, False
    for line in doc.read_text().splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and (match := re.match(r"#{1,6} (.+)", line)):
            slug = _slug(match[1])
            found.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
            seen[slug] = seen.get(slug, 0) + 1
    return found


def test_the_anchors_follow_github():
    assert _slug("`check_slides.py`: preflight check of a slide folder") == \
        "check_slidespy-preflight-check-of-a-slide-folder"
    assert _slug("Keeping a GPU busy: `--augment device`, `--amp`, `--channels_last`") == \
        "keeping-a-gpu-busy---augment-device---amp---channels_last"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_at_a_file_and_heading_that_exist(doc):
    text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        where = (doc.parent / path).resolve() if path else doc
        if not where.exists():
            broken.append(f"{target}: no such file")
        elif anchor and where.suffix == ".md" and anchor not in anchors(where):
            broken.append(f"{target}: no heading #{anchor} in {where.relative_to(ROOT)}")
    assert not broken, f"{doc.relative_to(ROOT)}: broken links:\n" + "\n".join(broken)


def test_the_docs_index_links_every_docs_page():
    readme = (ROOT / "README.md").read_text()
    for page in (ROOT / "docs").glob("*.md"):
        assert f"(docs/{page.name})" in readme, f"the README's documentation list does not link docs/{page.name}"


def test_every_option_of_every_script_is_in_the_docs():
    """The other direction: an option a script of wsi/bin accepts (sub-commands' included) is named somewhere in the
    README or docs/, so a new option cannot land undocumented."""
    text = "\n".join(doc.read_text() for doc in DOCS)
    named = set(re.findall(r"(?<![\w-])--\w+", text))
    missing = []
    for name in sorted(BIN):
        parser = parser_of("bin", name)
        for each in (parser, *_subparsers(parser).values()):
            missing += [f"{name}: {option}" for action in each._actions if action.help != argparse.SUPPRESS
                        for option in action.option_strings if option.startswith("--") and option not in named]
    assert not missing, "options no doc names:\n" + "\n".join(missing)
