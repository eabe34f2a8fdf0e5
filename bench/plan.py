"""How many images, rounds and clients each scenario uses: the full run and the seconds-long smoke run."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Plan:
    """Counts per scenario; the full plan is the issue's, scaled only where it says so in `scaled`."""

    name: str
    # 1 and 2: single removals, one by one, variants interleaved image by image.
    single_images: int = 200  # per variant, 3 layers each
    single_rounds: int = 4  # the images of a variant are created in this many batches
    index_images: int = 40  # per variant: an index of 4 platforms, 2 present
    index_rounds: int = 2
    # 3: concurrency.
    concurrent_clients: int = 16
    concurrent_images: int = 1000  # per run
    concurrent_rounds: int = 2  # each round runs ours and raw once, the order alternating
    # 4: scale.
    scale_levels: tuple[int, ...] = (100, 1000, 10_000)
    scale_images: int = 20  # per variant and level
    scale_shared_targets: int = 20  # the other images are records over this many real images
    # 5: many removals from one command.
    cli_refs: int = 500
    cli_rounds: int = 1  # each round runs every command once, the order rotating
    cli_concurrency: int = 8  # `imageremoval rm --parallel N` in scenario 5
    # 6: footprint.
    footprint_starts: int = 5
    footprint_cycles: int = 10  # of footprint_batch removals each: 10 x 1,000 = 10,000
    footprint_batch: int = 1000
    footprint_leak_mb: float = 5.0  # RSS growth between 1,000 and 10,000 removals counted as a leak
    # 7: cleaning a node (issue 14).
    cleaning_list_levels: tuple[int, ...] = (1000, 10_000)  # images in the namespace when listing
    cleaning_list_rounds: int = 5  # warm ListImages calls per level
    cleaning_prune_images: int = 1000
    cleaning_prune_rounds: int = 2  # each round prunes with ours and raw once, the order alternating
    # 8: usage tracking under churn (issue 15).
    usage_churn_seconds: float = 60.0  # at 10 containers/s, with tracking and without
    usage_churn_images: int = 10
    # Image creation.
    create_workers: int = 4
    scaled: tuple[str, ...] = ()


FULL = Plan(
    name="full",
    scaled=(
        "scenarios 1, 2, 4: every image has its own 5 blobs (manifest, config, 3 layers)",
        "scenario 3: 1,000 images per run, 2 rounds (ours and raw once each per round, order alternating); the "
        "images have their own manifest and config over the 3 layers of one base image",
        "scenario 4: 20 removals per variant and level; the other images are records over 20 real 3-layer "
        "images (10,000 distinct images would take longer to create than the whole budget)",
        "scenario 5: one round (each command is one 500-reference invocation: 2 rounds took 100 s and varied "
        "by 10%); the images have their own manifest and config over the layers of one base image",
        "scenario 6: the 10,000 removals run as 10 cycles of 1,000 images (each its own manifest over the config "
        "and layers of one base image), removed by 16 concurrent clients",
        "scenario 7: the listed and pruned images are each their own manifest over one base image's config and "
        "layers (1 own blob each), so creating 10,000 stays within minutes",
    ),
)

SMOKE = Plan(
    name="smoke",
    single_images=2,
    single_rounds=1,
    index_images=1,
    index_rounds=1,
    concurrent_clients=4,
    concurrent_images=8,
    concurrent_rounds=1,
    scale_levels=(5, 10),
    scale_images=2,
    scale_shared_targets=2,
    cli_refs=4,
    cli_rounds=1,
    cli_concurrency=2,
    footprint_starts=1,
    footprint_cycles=2,
    footprint_batch=5,
    cleaning_list_levels=(5, 10),
    cleaning_list_rounds=1,
    cleaning_prune_images=5,
    cleaning_prune_rounds=1,
    usage_churn_seconds=2.0,
    usage_churn_images=2,
    create_workers=2,
    scaled=("smoke mode: tiny counts; proves the harness works, the figures mean nothing",),
)
