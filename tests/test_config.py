"""Server configuration: one declaration per option gives its flag, variable, default and help; --version."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

from imageremoval.server.config import (
    ENV_PREFIX,
    GRACE_PERIOD,
    INSECURE,
    MAX_MESSAGE_BYTES,
    OPTIONS,
    ConfigError,
    ServerConfig,
    build_parser,
    load_config,
)

BIN = Path(sys.executable).parent


def test_no_flags_and_no_variables_give_what_a_config_built_in_code_gets() -> None:
    assert load_config([], {}) == ServerConfig()


def test_every_option_has_one_variable_named_after_its_flag_and_help_that_names_it() -> None:
    help_text = " ".join(build_parser().format_help().split())
    assert len({o.env for o in OPTIONS}) == len({o.flag for o in OPTIONS}) == len(OPTIONS)
    for option in OPTIONS:
        assert option.env == ENV_PREFIX + option.flag[2:].replace("-", "_").upper()
        assert option.flag in help_text and f"env {option.env}" in help_text, option.flag
        if option.default:
            assert f"default {option.default}" in help_text, option.flag
            option.default_value  # noqa: B018 - every written default parses (and passes its own check)


def test_a_flag_wins_over_its_variable_which_wins_over_the_default() -> None:
    env = {GRACE_PERIOD.env: "7"}
    assert load_config(["--grace-period", "5"], env).grace_seconds == 5
    assert load_config([], env).grace_seconds == 7
    assert load_config([], {GRACE_PERIOD.env: ""}).grace_seconds == GRACE_PERIOD.default_value == 10
    assert load_config([], {}).limits.max_message_bytes == MAX_MESSAGE_BYTES.default_value == 1024 * 1024


def test_a_bad_value_names_the_flag_and_the_variable() -> None:
    with pytest.raises(ConfigError, match=f"--max-message-bytes / {MAX_MESSAGE_BYTES.env}: must be between"):
        load_config([], {MAX_MESSAGE_BYTES.env: "10"})
    with pytest.raises(ConfigError, match=f"--insecure / {INSECURE.env}: expected true or false"):
        load_config([], {INSECURE.env: "maybe"})


@pytest.mark.parametrize("script", ["imageremoval-server", "imageremoval"])
def test_version_prints_the_script_and_the_installed_version(script: str) -> None:
    done = subprocess.run([str(BIN / script), "--version"], capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout) == (0, f"{script} {importlib.metadata.version('imageremoval')}\n")


def test_the_readme_table_lists_every_option_with_its_variable_and_default() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n### Flags and environment\n", 1)[1].split("\n### ", 1)[0]
    rows = {}
    for line in section.splitlines():
        if line.startswith("| `--"):
            flag, env, default = (cell.strip().strip("`") for cell in line.strip("|").split(" | ")[:3])
            rows[flag] = (env, default)
    assert sorted(rows) == sorted(o.flag for o in OPTIONS)
    for option in OPTIONS:
        env, default = rows[option.flag]
        assert env == option.env, option.flag
        if option.boolean:
            assert default == "false", option.flag
        elif option.default:
            assert default.split("`")[0] == option.default, option.flag
        else:
            assert default.startswith("("), option.flag
