"""Shell completion scripts (bash and zsh) generated from the CLI's own argument parser, so they never drift."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from ._cli_filters import FILTER_WORDS


@dataclass(frozen=True, slots=True)
class _Option:
    flags: tuple[str, ...]
    help: str
    takes_value: bool
    choices: tuple[str, ...]
    metavar: str


def _options(parser: argparse.ArgumentParser) -> list[_Option]:
    found: list[_Option] = []
    for action in parser._actions:
        if not action.option_strings:
            continue
        found.append(
            _Option(
                flags=tuple(action.option_strings),
                help=(action.help or "").replace("%(prog)s", parser.prog),
                takes_value=action.nargs != 0,
                choices=(
                    tuple(str(c) for c in action.choices)
                    if action.choices
                    else FILTER_WORDS
                    if action.dest == "filter"
                    else ()
                ),
                metavar=str(action.metavar or action.dest).upper(),
            )
        )
    return found


def _commands(parser: argparse.ArgumentParser) -> dict[str, tuple[argparse.ArgumentParser, str]]:
    """Each verb's parser and help line."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            return {name: (sub, helps.get(name, "")) for name, sub in action.choices.items()}
    return {}


def _positional_choices(parser: argparse.ArgumentParser) -> tuple[str, ...]:
    for action in parser._actions:
        if not action.option_strings and action.choices and not isinstance(action, argparse._SubParsersAction):
            return tuple(str(c) for c in action.choices)
    return ()


def bash_script(parser: argparse.ArgumentParser) -> str:
    """`source <(imageremoval completion bash)`."""
    prog = parser.prog
    function = "_" + prog.replace("-", "_")
    commands = _commands(parser)
    top = _options(parser)
    lines = [
        f"# bash completion for {prog}, generated from its argument parser",
        f"{function}() {{",
        '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}" verb="" i',
        "    for ((i = 1; i < COMP_CWORD; i++)); do",
        f'        case "${{COMP_WORDS[i]}}" in {"|".join(commands)}) verb="${{COMP_WORDS[i]}}"; break ;; esac',
        "    done",
        '    case "$prev" in',
    ]
    valued: dict[str, tuple[str, ...]] = {}
    for options in [top, *(_options(sub) for sub, _ in commands.values())]:
        for option in options:
            if option.takes_value:
                for flag in option.flags:
                    valued[flag] = option.choices
    for flag, choices in sorted(valued.items()):
        if choices:
            lines.append(f'        {flag}) COMPREPLY=($(compgen -W "{" ".join(choices)}" -- "$cur")); return ;;')
        else:
            lines.append(f'        {flag}) COMPREPLY=($(compgen -f -- "$cur")); return ;;')
    lines += ["    esac", "    local words", '    case "$verb" in']
    top_words = [f for o in top for f in o.flags] + list(commands)
    lines.append(f'        "") words="{" ".join(top_words)}" ;;')
    for name, (sub, _) in commands.items():
        words = [f for o in _options(sub) for f in o.flags] + list(_positional_choices(sub))
        lines.append(f'        {name}) words="{" ".join(words)}" ;;')
    lines += [
        "    esac",
        '    COMPREPLY=($(compgen -W "$words" -- "$cur"))',
        "}",
        f"complete -o default -F {function} {prog}",
        "",
    ]
    return "\n".join(lines)


def _zsh_quote(text: str, *, colons: bool = True) -> str:
    quoted = text.replace("'", "'\\''").replace("[", "\\[").replace("]", "\\]")
    return quoted.replace(":", "\\:") if colons else quoted


def _zsh_specs(options: list[_Option]) -> list[str]:
    specs: list[str] = []
    for option in options:
        for flag in option.flags:
            spec = f"{flag}[{_zsh_quote(option.help, colons=False)}]"
            if option.takes_value:
                values = (
                    f"({' '.join(option.choices)})" if option.choices else "_files" if option.metavar == "FILE" else " "
                )
                spec += f":{_zsh_quote(option.metavar.lower())}:{values}"
            specs.append(f"'{spec}'")
    return specs


def zsh_script(parser: argparse.ArgumentParser) -> str:
    """Put in a directory on $fpath as `_imageremoval`, or `source <(imageremoval completion zsh)`."""
    prog = parser.prog
    function = "_" + prog.replace("-", "_")
    commands = _commands(parser)
    lines = [
        f"#compdef {prog}",
        f"# zsh completion for {prog}, generated from its argument parser",
        f"{function}() {{",
        "    local curcontext=$curcontext state line",
        "    local -a verbs",
        "    verbs=(" + " ".join(f"'{name}:{_zsh_quote(help_)}'" for name, (_, help_) in commands.items()) + ")",
        "    _arguments -C \\",
        *(f"        {spec} \\" for spec in _zsh_specs(_options(parser))),
        "        '1:command:->verb' \\",
        "        '*::argument:->args'",
        "    case $state in",
        "        verb) _describe 'command' verbs ;;",
        "        args)",
        "            case $line[1] in",
    ]
    for name, (sub, _) in commands.items():
        positional = _positional_choices(sub)
        rest = f"'1:value:({' '.join(positional)})'" if positional else "'*:image:'"
        lines.append(f"                {name}) _arguments {' '.join(_zsh_specs(_options(sub)))} {rest} ;;")
    lines += [
        "            esac",
        "            ;;",
        "    esac",
        "}",
        f'if [[ $zsh_eval_context[-1] == loadautofunc ]]; then {function} "$@"; else compdef {function} {prog}; fi',
        "",
    ]
    return "\n".join(lines)
