"""The operator's rules for a removal: namespaces a caller may touch, protected images, load and deadlines."""

from __future__ import annotations

import contextlib
import fnmatch
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from imageremoval.server.domain.errors import (
    DeadlineExceeded,
    ImageProtected,
    InvalidArgument,
    NamespaceNotAllowed,
    Reason,
    TooManyRemovals,
)
from imageremoval.server.domain.model import ImageRecord
from imageremoval.server.domain.namespaces import is_valid_namespace
from imageremoval.server.domain.references import familiar_repository, parse_stored_name

PINNED_LABEL = "io.cri-containerd.pinned"
# Registry spellings that name the same registry: the default HTTPS port, and Docker Hub's other hosts.
_SAME_REGISTRY = {"index.docker.io": "docker.io", "registry-1.docker.io": "docker.io"}


def _normal_repository(repository: str) -> str:
    """A repository as one registry spells it: domain in lower case, without the default port :443."""
    domain, slash, path = repository.partition("/")
    if not slash or not ("." in domain or ":" in domain or domain.lower() == "localhost"):
        return repository  # no domain: Docker Hub's, already normalised
    domain = domain.lower().removesuffix(":443")
    return f"{_SAME_REGISTRY.get(domain, domain)}/{path}"


def spellings(name: str) -> tuple[str, ...]:
    """Every form of a stored name a protected pattern is matched against: the name itself, and its
    normalised full and familiar forms, each with its tag; a by-digest name also as `repository:<digest>`,
    so `registry.k8s.io/pause:*` protects `registry.k8s.io/pause@sha256:...` too."""
    forms = [name]
    parsed = parse_stored_name(name)
    if parsed is None:  # not fully normalised (e.g. an upper-case registry): split it by hand
        repository, _, digest = name.partition("@")
        tag = ""
        if ":" in repository.rsplit("/", 1)[-1]:
            repository, tag = repository.rsplit(":", 1)
        versions = [v for v in (tag, digest) if v]
    else:
        repository = parsed.repository
        versions = [v for v in (parsed.tag, parsed.digest) if v]
    normal = _normal_repository(repository)
    for repo in dict.fromkeys((repository, normal, familiar_repository(normal))):
        forms.append(repo)
        forms.extend(f"{repo}:{version}" for version in versions)
        forms.extend(f"{repo}@{version}" for version in versions if version.startswith("sha256:"))
    return tuple(dict.fromkeys(forms))


def normal_pattern(pattern: str) -> str:
    """A protected pattern with its registry spelled as `spellings` spells it."""
    return _normal_repository(pattern)


IDENTITY_KINDS = ("uri", "dns", "cn")


def rule_identities(rule: str) -> tuple[str, ...]:
    """The typed identities an --identity-namespaces rule names.

    `uri:`, `dns:` or `cn:` say the kind; a bare name with a scheme (`spiffe://...`) is a URI SAN only, and
    any other bare name a DNS SAN or the CN. So a CN that spells a SPIFFE ID never gets that ID's namespaces.
    """
    kind, sep, _ = rule.partition(":")
    if sep and kind in IDENTITY_KINDS:
        return (rule,)
    if "://" in rule:
        return (f"uri:{rule}",)
    return (f"dns:{rule}", f"cn:{rule}")


def rule_matches(rule: str, identities: Sequence[str]) -> bool:
    """Whether a client with these typed identities (`kind:value`) is the one the rule names."""
    return any(identity in identities for identity in rule_identities(rule))


@dataclass(frozen=True)
class RemovalPolicy:
    """Checked by the remover before anything changes; the defaults allow everything but pinned images."""

    allowed_namespaces: frozenset[str] | None = None
    identity_namespaces: Mapping[str, frozenset[str]] = field(default_factory=dict)
    protected_patterns: tuple[str, ...] = ()
    allow_force_protected: bool = False
    max_concurrent: int = 32
    min_deadline_s: float = 0.0

    def check_namespace(self, namespace: str, identities: Sequence[str]) -> None:
        """A name containerd accepts, on the server's allow-list, and (with mutual TLS) the client's to touch."""
        if not is_valid_namespace(namespace):
            shown = namespace if len(namespace) <= 80 else namespace[:80] + "..."
            raise InvalidArgument(Reason.INVALID_NAMESPACE, f"invalid namespace {shown!r}", {"namespace": shown})
        if self.allowed_namespaces is not None and namespace not in self.allowed_namespaces:
            raise NamespaceNotAllowed(
                f"namespace {namespace!r} is not allowed on this server", {"namespace": namespace}
            )
        if not self.identity_namespaces:
            return
        granted = (spaces for rule, spaces in self.identity_namespaces.items() if rule_matches(rule, identities))
        if any(namespace in spaces for spaces in granted):
            return
        shown = identities[0] if identities else "(no client certificate)"
        raise NamespaceNotAllowed(
            f"client {shown} may not remove images in namespace {namespace!r}",
            {"namespace": namespace, "identity": shown},
        )

    def check_deadline(self, deadline: float | None) -> None:
        """Refuse work that cannot finish: too little time left to start, or none left to mutate."""
        if deadline is None:
            return
        left = deadline - time.monotonic()
        if left < self.min_deadline_s or left <= 0:
            raise DeadlineExceeded(
                f"too little time left ({max(left, 0) * 1000:.0f} ms); nothing was changed",
                {"remainingMs": str(max(int(left * 1000), 0))},
            )

    def protected_rule(self, record: ImageRecord) -> str:
        """The rule protecting this record ("" if none): the CRI pin label, or a pattern matching any spelling."""
        if record.labels.get(PINNED_LABEL) == "pinned":
            return f"label {PINNED_LABEL}=pinned"
        forms = spellings(record.name)
        for pattern in self.protected_patterns:
            candidates = {pattern, normal_pattern(pattern)}
            # "any tag of" also covers a record named by the bare repository
            candidates |= {p.removesuffix(":*") for p in candidates if p.endswith(":*")}
            if any(fnmatch.fnmatchcase(form, p) for form in forms for p in candidates):
                return pattern
        return ""

    def may_delete(self, record: ImageRecord, *, force: bool) -> bool:
        """Whether any path may delete this record (prune included): not protected, or forced where allowed."""
        return (force and self.allow_force_protected) or not self.protected_rule(record)

    def check_protected(self, records: Sequence[ImageRecord], *, force: bool, display: str) -> None:
        """Pinned (CRI) images and protected names stay, unless the server lets force remove them."""
        if force and self.allow_force_protected:
            return
        for record in records:
            rule = self.protected_rule(record)
            if rule:
                hint = "; the server lets force remove it" if self.allow_force_protected else ""
                raise ImageProtected(
                    f"image {display} is protected ({rule}){hint}",
                    {"imageId": record.image_id, "reference": display, "rule": rule},
                )


WAIT_WINDOW_S = 30.0  # how long a client refused for want of a free slot counts as waiting for one


class ConcurrencyLimit:
    """Counts removals in flight; beyond the limit a call is refused at once rather than queued.

    One client (a certificate identity, else a peer address) may hold only part of the slots while another
    client holds one or waits for one (was refused for want of a free slot in the last WAIT_WINDOW_S), so a
    quarter of them (at least one, when there are two or more) stays free for the others. A client alone on
    the node (the usual single agent) may use every slot.
    """

    def __init__(
        self, limit: int, *, clock: Callable[[], float] = time.monotonic, wait_window: float = WAIT_WINDOW_S
    ) -> None:
        self._limit = limit
        self.per_client = limit - max(1, limit // 4) if limit > 1 else 1
        self._in_flight = 0
        self._by_client: dict[str, int] = {}
        self._waiting: dict[str, float] = {}  # client -> when it was last refused for want of a free slot
        self._clock = clock
        self._wait_window = wait_window

    def _others_present(self, client: str, now: float) -> bool:
        """Whether another client holds a slot or is waiting for one."""
        for other, since in list(self._waiting.items()):
            if now - since > self._wait_window:
                del self._waiting[other]
        return any(other != client for other in self._by_client) or any(other != client for other in self._waiting)

    @contextlib.contextmanager
    def slot(self, client: str) -> Iterator[None]:
        """Hold one slot for `client` for the block; TooManyRemovals when none is free for it."""
        now = self._clock()
        held = self._by_client.get(client, 0)
        if self._in_flight >= self._limit:
            if held < self.per_client:
                self._waiting[client] = now  # within its share: the holders' shares apply until it gets one
            raise TooManyRemovals(
                f"too many removals in flight ({self._limit}); retry later", {"limit": str(self._limit)}
            )
        if held >= self.per_client and self._others_present(client, now):
            raise TooManyRemovals(
                f"too many removals in flight from this client ({self.per_client} of {self._limit}); retry later",
                {"limit": str(self._limit), "clientLimit": str(self.per_client)},
            )
        self._waiting.pop(client, None)
        self._in_flight += 1
        self._by_client[client] = held + 1
        try:
            yield
        finally:
            self._in_flight -= 1
            left = self._by_client[client] - 1
            if left:
                self._by_client[client] = left
            else:
                del self._by_client[client]
