"""The CLI as Docker users type it: ls, prune (plan, confirm, execute), rm's new options, completion."""

from __future__ import annotations

import json
import os
import socket
import subprocess

from imageremoval.server.domain.errors import Reason

from .support.cli import BIN, run_cli
from .support.images import Manifest, file_layer, index, manifest
from .support.server import Server
from .support.store import Store


def lib(name: str) -> str:
    return f"docker.io/library/{name}"


def small(note: str) -> Manifest:
    return manifest((file_layer("f.txt", note.encode()),), note=note)


def dangling(image: Manifest) -> str:
    return f"moby-dangling@{image.blob.digest}"


def human(size: int) -> str:
    """docker's units.HumanSize for the sizes these tests make (under 1 MB)."""
    return f"{size}B" if size < 1000 else f"{size / 1000:.4g}kB"


def test_ls_prints_docker_images_columns_plus_unique_and_containers(server: Server, store: Store, ns: str) -> None:
    named = small("ls-named")
    named_id = store.put(ns, [lib("app:1"), lib("app:2")], named)
    loose = small("ls-loose")
    loose_id = store.put(ns, [dangling(loose)], loose)
    result = run_cli(server, "ls", "-n", ns)
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE", "UNIQUE", "CONTAINERS"]
    size = human(sum(b.size for b in named.blobs))
    cells = sorted(tuple(row.split()[:3]) for row in rows)
    assert cells == sorted(
        [("app", "1", named_id[7:19]), ("app", "2", named_id[7:19]), ("<none>", "<none>", loose_id[7:19])]
    )
    assert all(row.split()[-3:] == [size, size, "0"] for row in rows if row.startswith("app"))
    quiet = run_cli(server, "ls", "-n", ns, "-q", "--filter", "dangling=true")
    assert quiet.stdout.split() == [loose_id[7:19]]
    full = run_cli(server, "ls", "-n", ns, "-q", "--no-trunc", "--filter", "reference=app")
    assert full.stdout.split() == [named_id, named_id]
    listed = json.loads(run_cli(server, "ls", "-n", ns, "--format", "json").stdout)
    assert {i["id"]: int(i["content_bytes"]) for i in listed} == {
        named_id: sum(b.size for b in named.blobs),
        loose_id: sum(b.size for b in loose.blobs),
    }


def test_global_options_are_accepted_before_and_after_the_verb(server: Server, store: Store, ns: str) -> None:
    image_id = store.put(ns, [lib("where:1")], small("global-options"))
    for args, env in (
        (("-n", ns, "ls", "-q", "--no-trunc"), {}),
        (("ls", "-q", "--no-trunc", "--namespace", ns), {}),
        (("ls", "-q", "--no-trunc"), {"IMAGEREMOVAL_NAMESPACE": ns}),
        (("--server", "127.0.0.1:1", "ls", "-q", "--no-trunc", "-n", ns, "--server", server.target), {}),
    ):
        result = run_cli(server, *args, **env)
        assert result.returncode == 0, (args, result.stderr)
        assert result.stdout.split() == [image_id], args


def test_prune_dry_run_prints_the_plan_and_changes_nothing(server: Server, store: Store, ns: str) -> None:
    loose = small("dry-loose")
    loose_id = store.put(ns, [dangling(loose)], loose)
    store.put(ns, [lib("kept:1")], small("dry-named"))
    result = run_cli(server, "prune", "-n", ns, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "Will remove 1 image:"
    assert loose_id[7:19] in result.stdout and "dangling and unused" in result.stdout
    assert result.stdout.splitlines()[-1] == f"Total reclaimable space: {human(sum(b.size for b in loose.blobs))}"
    assert store.names(ns) == {dangling(loose), lib("kept:1")}


def test_prune_asks_first_and_executes_exactly_the_plan_it_showed(server: Server, store: Store, ns: str) -> None:
    loose = small("ask-loose")
    loose_id = store.put(ns, [dangling(loose)], loose)
    named = small("ask-named")
    named_id = store.put(ns, [lib("asked:1")], named)
    refused = run_cli(server, "prune", "-a", "-n", ns, stdin="n\n")
    assert refused.returncode == 0
    assert "Are you sure you want to continue? [y/N]" in refused.stdout
    assert store.names(ns) == {dangling(loose), lib("asked:1")}
    accepted = run_cli(server, "prune", "-a", "-n", ns, stdin="y\n")
    assert accepted.returncode == 0, accepted.stderr
    lines = accepted.stdout.splitlines()
    after = lines[lines.index(next(line for line in lines if line.endswith("Deleted Images:"))) + 1 :]
    assert sorted(after[:-1]) == sorted(["untagged: asked:1", f"deleted: {named_id}", f"deleted: {loose_id}"])
    freed = sum(b.size for m in (loose, named) for b in m.blobs)
    assert after[-1] == f"Total reclaimed space: {human(freed)}"
    assert store.names(ns) == set()


def test_prune_with_force_and_keep_does_not_prompt(server: Server, store: Store, ns: str) -> None:
    old = store.put(ns, [lib("rolling:1")], small("keep-old"))
    new = store.put(ns, [lib("rolling:2")], small("keep-new"))
    result = run_cli(server, "prune", "-a", "-f", "--keep", "1", "-n", ns)
    assert result.returncode == 0, result.stderr
    assert "Are you sure" not in result.stdout
    assert f"deleted: {old}" in result.stdout and f"deleted: {new}" not in result.stdout
    assert store.names(ns) == {lib("rolling:2")}


def test_prune_usage_errors_exit_two(server: Server, ns: str) -> None:
    assert run_cli(server, "prune", "--filter", "colour=blue", "-n", ns).returncode == 2
    assert run_cli(server, "prune", "--keep", "-1", "-n", ns).returncode == 2
    assert run_cli(server, "ls", "--filter", "until=yesterday-ish", "-n", ns).returncode == 2


def test_rm_force_of_a_missing_image_or_platform_exits_zero_printing_the_error(
    server: Server, store: Store, ns: str
) -> None:
    plain = run_cli(server, "rm", "-n", ns, "missing")
    assert plain.returncode == 1
    forced = run_cli(server, "rm", "-f", "-n", ns, "missing")
    assert forced.returncode == 0
    assert forced.stderr.strip() == "Error response from daemon: No such image: missing:latest"
    amd, arm = small("plat-amd"), manifest((file_layer("a", b"arm"),), architecture="arm64", note="plat-arm")
    store.put(ns, [lib("multi:1")], index((amd, arm)))
    platform = run_cli(server, "rm", "-f", "--platform", "linux/s390x", "-n", ns, "multi:1")
    assert platform.returncode == 0
    assert platform.stderr.startswith("Error response from daemon: ") and "platform" in platform.stderr
    assert store.names(ns) == {lib("multi:1")}


def test_rm_dry_run_and_json_change_nothing_and_say_what_would_go(server: Server, store: Store, ns: str) -> None:
    image = small("rm-dry")
    image_id = store.put(ns, [lib("dry:1")], image)
    result = run_cli(server, "rm", "--dry-run", "-n", ns, "dry:1")
    assert result.returncode == 0, result.stderr
    size = sum(b.size for b in image.blobs)
    assert result.stdout.splitlines() == [
        "Would untag: dry:1",
        f"Would delete: {image_id}",
        f"Total reclaimable space: {human(size)}",
    ]
    assert store.names(ns) == {lib("dry:1")}
    listed = json.loads(run_cli(server, "rm", "--dry-run", "--format", "json", "-n", ns, "dry:1", "nope").stdout)
    assert listed[0] == {
        "image": "dry:1",
        "items": [{"untagged": "dry:1"}, {"deleted": image_id}],
        "reclaimableBytes": size,
    }
    assert listed[1]["image"] == "nope" and listed[1]["error"]["reason"] == Reason.IMAGE_NOT_FOUND
    removed = json.loads(run_cli(server, "rm", "--format", "json", "-n", ns, "dry:1").stdout)
    assert removed == [
        {"image": "dry:1", "items": [{"untagged": "dry:1"}, {"deleted": image_id}], "reclaimableBytes": size}
    ]


def test_local_failures_are_not_worded_as_the_daemons(ns: str) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    refused = run_cli(None, "--server", f"127.0.0.1:{port}", "--timeout", "5", "rm", "-f", "-n", ns, "x")
    assert refused.returncode == 1
    assert refused.stderr.startswith(f"imageremoval: cannot connect to the server at 127.0.0.1:{port}")
    assert "Error response from daemon" not in refused.stderr
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        hung = run_cli(None, "--server", address, "--timeout", "0.5", "ls", "-n", ns)
    assert hung.returncode == 1
    assert hung.stderr.startswith(f"imageremoval: no answer from the server at {address} after 0.5s")


def test_completion_scripts_are_generated_from_the_parser() -> None:
    bash = run_cli(None, "completion", "bash")
    assert bash.returncode == 0

    def complete(*words: str) -> list[str]:
        script = (
            f"source <(cat <<'EOF'\n{bash.stdout}EOF\n)\n"
            f"COMP_WORDS=(imageremoval {' '.join(repr(w) for w in words)}); COMP_CWORD={len(words)}; _imageremoval; "
            'printf "%s\\n" "${COMPREPLY[@]}"'
        )
        return subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout.split()

    assert complete("") == [
        "-h",
        "--help",
        "--version",
        "--server",
        "-n",
        "--namespace",
        "--tls-ca",
        "--tls-cert",
        "--tls-key",
        "--tls-server-name",
        "--timeout",
        "rm",
        "ls",
        "prune",
        "completion",
    ]
    assert "--dry-run" in complete("rm", "--") and "--keep" in complete("prune", "--")
    assert complete("ls", "--format", "") == ["table", "json"]
    assert "until=" in complete("prune", "--filter", "")
    assert complete("-n", "x", "prune", "--dr") == ["--dry-run"]
    zsh = run_cli(None, "completion", "zsh").stdout
    assert zsh.startswith("#compdef imageremoval\n")
    assert "'--keep[keep each repository'\\''s N newest images]:n: '" in zsh
    assert "prune) _arguments" in zsh and "'--format[output format (default table)]:format:(table json)'" in zsh


def test_prune_shows_a_progress_bar_on_a_terminal(server: Server, store: Store, ns: str) -> None:
    images = [small(f"bar-{n}") for n in range(3)]
    for image in images:
        store.put(ns, [dangling(image)], image)
    controller, terminal = os.openpty()
    environment = {**os.environ, "IMAGEREMOVAL_SERVER": server.target}
    process = subprocess.Popen(
        [str(BIN / "imageremoval"), "prune", "-f", "-n", ns],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=environment,
    )
    os.close(terminal)
    output = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the terminal closed: the command ended
            break
        if not chunk:
            break
        output += chunk
    os.close(controller)
    assert process.wait(60) == 0
    text = output.decode()
    assert "\r[" in text and "] 3/3" in text
    assert "Deleted Images:" in text and "Total reclaimed space:" in text
    assert store.names(ns) == set()
