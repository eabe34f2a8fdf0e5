"""One error table: the API's enums, the server's code table, the README and the proto comments agree."""

from __future__ import annotations

import re
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2

from imageremoval.client import (
    ConflictError,
    ConflictKind,
    ErrorReason,
    FailedPreconditionError,
    ImageRemovalError,
    ProtectedError,
)
from imageremoval.client._errors import make_error
from imageremoval.server.domain.errors import Conflict, Reason
from imageremoval.server.transport.error_status import CODES

REPO = Path(__file__).resolve().parent.parent
DOCUMENTED = REPO / "api" / "python" / "imageremoval" / "gen" / "v1" / "image_removal.binpb"
CODE_NAMES = {code.name for code in grpc.StatusCode}


REASONS = [v.name for v in ErrorReason.DESCRIPTOR.values if v.number != 0]
KINDS = [v.name for v in ConflictKind.DESCRIPTOR.values if v.number != 0]


def _readme_rows() -> dict[str, tuple[str, str, str]]:
    """reason -> (code, when, metadata) from the README's table under "### Errors"."""
    section = (REPO / "README.md").read_text(encoding="utf-8").split("\n### Errors\n", 1)[1].split("\n###", 1)[0]
    rows: dict[str, tuple[str, str, str]] = {}
    for line in section.splitlines():
        if not line.startswith("| ") or "| `" not in line:
            continue
        cells = [cell.strip() for cell in line.strip()[1:-1].split(" | ")]
        code, reason, when, metadata = [*cells, "", ""][:4]
        assert reason.strip("`") not in rows, f"{reason} twice in the README table"
        rows[reason.strip("`")] = (code, when, metadata)
    return rows


def _documented_file(name: str) -> descriptor_pb2.FileDescriptorProto:
    files = descriptor_pb2.FileDescriptorSet.FromString(DOCUMENTED.read_bytes()).file
    return next(f for f in files if f.name == name)


def _comments(file: descriptor_pb2.FileDescriptorProto) -> dict[tuple[int, ...], str]:
    return {
        tuple(loc.path): " ".join(line.strip() for line in loc.leading_comments.splitlines()).strip()
        for loc in file.source_code_info.location
    }


def _value_comments(enum_name: str) -> dict[str, str]:
    """Each value of the enum -> its comment (lines joined), from the descriptor set with source info."""
    file = _documented_file("imageremoval/v1/error_reason.proto")
    index, enum = next((i, e) for i, e in enumerate(file.enum_type) if e.name == enum_name)
    comments = _comments(file)
    return {value.name: comments.get((5, index, 2, v), "") for v, value in enumerate(enum.value)}


def test_every_reason_is_in_the_enum_the_server_table_the_domain_and_the_readme() -> None:
    readme = _readme_rows()
    assert sorted(REASONS) == sorted(r.value for r in Reason)
    assert sorted(ErrorReason.Name(number) for number in CODES) == sorted(REASONS)
    assert sorted(readme) == sorted(REASONS)


def test_the_readme_code_of_each_reason_is_the_server_table_code() -> None:
    readme = _readme_rows()
    assert {r: readme[r][0] for r in REASONS} == {r: CODES[ErrorReason.Value(r)].name for r in REASONS}


def test_each_proto_comment_says_what_the_readme_says_and_the_code_of_the_table() -> None:
    readme = _readme_rows()
    comments = _value_comments("ErrorReason")
    assert comments.pop("ERROR_REASON_UNSPECIFIED")
    for reason in REASONS:
        _, when, metadata = readme[reason]
        expected = f"{when} Code: {CODES[ErrorReason.Value(reason)].name}." + (
            f" Metadata: {metadata}." if metadata else ""
        )
        assert comments[reason] == expected, reason


def test_the_reasons_each_rpc_comment_lists_have_the_code_it_lists_them_under() -> None:
    file = _documented_file("imageremoval/v1/image_removal.proto")
    comments = _comments(file)
    listed = 0
    for m, method in enumerate(file.service[0].method):
        text = comments[(6, 0, 2, m)]
        for code, inside in re.findall(r"\b([A-Z_]+) \(([^)]*)\)", text):
            if code not in CODE_NAMES:
                continue
            for reason in re.findall(r"\b[A-Z]{2,}(?:_[A-Z]+)+\b", inside):
                assert reason in REASONS, (method.name, reason)
                assert CODES[ErrorReason.Value(reason)].name == code, (method.name, reason, code)
                listed += 1
    assert listed >= 20


def test_conflict_kinds_are_the_domain_conflicts_the_readme_names_and_each_is_commented() -> None:
    assert sorted(KINDS) == sorted(c.value for c in Conflict)
    metadata = _readme_rows()[Reason.IMAGE_CONFLICT][2]
    assert sorted(re.findall(r"`([A-Z_]+)`", metadata)) == sorted(KINDS)
    comments = _value_comments("ConflictKind")
    assert all(comments[kind] for kind in [*KINDS, "CONFLICT_KIND_UNSPECIFIED"])


@pytest.mark.parametrize("reason", REASONS)
def test_the_client_raises_each_reason_in_its_codes_family_and_only_conflicts_as_conflict(reason: str) -> None:
    code = CODES[ErrorReason.Value(reason)].name
    error = make_error("m", code=code, reason=reason)
    by_code = type(make_error("m", code=code))
    assert isinstance(error, by_code), (reason, type(error))
    assert isinstance(error, ConflictError) == (reason == Reason.IMAGE_CONFLICT)
    assert isinstance(error, ProtectedError) == (reason == Reason.IMAGE_PROTECTED)
    assert error.error_reason == ErrorReason.Value(reason)


def test_an_unknown_failed_precondition_reason_is_no_conflict() -> None:
    error = make_error("m", code="FAILED_PRECONDITION", reason="SOMETHING_NEW")
    assert type(error) is FailedPreconditionError
    assert error.error_reason == ErrorReason.ERROR_REASON_UNSPECIFIED
    assert type(make_error("m", code="NOT_FOUND", reason=Reason.IMAGE_CONFLICT)) is not ConflictError
    conflict = make_error("m", code="FAILED_PRECONDITION", reason=Reason.IMAGE_CONFLICT, metadata={"conflict": "X"})
    assert isinstance(conflict, ConflictError) and conflict.conflict_kind == ConflictKind.CONFLICT_KIND_UNSPECIFIED
    assert isinstance(conflict, ImageRemovalError)
