"""Fetch a raw data source (from a local mirror or its URL) and verify every file against a pinned sha256.

Each source is pinned by the files it needs and their hashes, so a build never runs on data that differs
from what the recipe was checked against. A verified copy ends with `dest/SHA256SUMS`, the output the
workflow depends on.

A mirror may hold a known incomplete copy of a file instead of the file itself (the shared MNIST mirror
has only the first 22,699 training images). Such a copy is accepted only from a mirror, only under its
own name, and only with its own pinned hash (`PartialCopy`); `dest/SHA256SUMS` then lists it under that
name, so every reader sees that it has the partial copy. A truncated file under the full file's name
fails the hash check like any corrupt download.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pipeline.config import FromConfig
from pipeline.files import atomic_path

logger = logging.getLogger(__name__)

TIMEOUT_S = 60
_CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A file could not be fetched, or its content is not the pinned one."""


@dataclass(frozen=True)
class PartialCopy:
    """A mirror's known incomplete copy of a file, pinned by its own name and hash."""

    path: str  # its name in the mirror folder (never the full file's name)
    sha256: str
    holds: str  # what it holds, for the log


@dataclass(frozen=True)
class RemoteFile:
    path: str  # relative to the source's root: the same under `url_base` and in the mirror folder
    sha256: str
    partial_copy: PartialCopy | None = None  # accepted from a mirror that lacks the full file
    url_path: str | None = None  # its path under `url_base` where that differs from `path`


@dataclass(frozen=True)
class Source:
    name: str
    url_base: str
    files: tuple[RemoteFile, ...]


def _files(*pairs: tuple[str, str]) -> tuple[RemoteFile, ...]:
    return tuple(RemoteFile(path, sha256) for path, sha256 in pairs)


# The sheets of the DSVAE "Sprites" recipe; provenance in shared/data/lpc-sprites/SOURCE.md.
# The licence and credit texts travel with the sheets, as the licence requires.
_LPC_SPRITES = Source(
    name="lpc-sprites",
    url_base="https://raw.githubusercontent.com/jrconway3/Universal-LPC-spritesheet/"
    "2668274d5a96c91584172f2d299b90f0a8c0caac/",
    files=_files(
        ("body/male/light.png", "27d1ac78db37c42f35a20d15c42705efc5e58d47c236cc01423879d4f797f151"),
        ("body/male/tanned2.png", "1535e9228357b884df80f777a0d1dac10ac35e550e4d8d077105ccad014a1460"),
        ("body/male/darkelf.png", "7c241033b4897501cb3721b6c3a9ebfa94b13db10a539edbd9bcc3e0c2a4bcb9"),
        ("body/male/darkelf2.png", "055f5aa33fc112d8444b42fce2cf50608a9fbbf2466c54ceaa46c777589a717a"),
        ("body/male/dark.png", "57f3b9c510482379aba9a32fc0de7d48e9cbe3dc40f2447283547f773b77ca72"),
        ("body/male/dark2.png", "91e49453aeab5ebbb4fd2b48253812895dcfb4cb1829b84e24425c66de8f04ff"),
        (
            "legs/pants/male/white_pants_male.png",
            "4ec356c488e272fde2d2d0d722b12a80217871e41161d43ba784caf243969ec2",
        ),
        (
            "legs/armor/male/golden_greaves_male.png",
            "0674312eaa4ab548f8bb31ef95d7dbd46b41555758cec51bd6c3e9fac9a0f936",
        ),
        (
            "legs/pants/male/red_pants_male.png",
            "3b464feb0d20ff34b0ca2a6d1fd00766ad86e2229c3d56ff91379fe27588a893",
        ),
        (
            "legs/armor/male/metal_pants_male.png",
            "b366e84ea0519d06cf693f51e0ee2f9ac32b3132d27c75dfdc4b6f52fca072de",
        ),
        (
            "legs/pants/male/teal_pants_male.png",
            "4ed7e7702e4f50b9692c0043be04b7296a108d85ea97230fb50d13c150d98771",
        ),
        (
            "formal_male_no_th-sh/pants.png",
            "a5c5e7e33f13fe5ad37b5836a5a74fb0d2094a0877c2146961b88688ff85840d",
        ),
        (
            "torso/shirts/longsleeve/male/maroon_longsleeve.png",
            "b917edcf2b3c35d51ef57a6fad67557c5edf048785bea29db09a640d09ac9a90",
        ),
        (
            "torso/shirts/longsleeve/male/teal_longsleeve.png",
            "e33c6cb31ed1268a2c0dc73b665b1c9b9420e22baf3321880222bdb22682368b",
        ),
        (
            "torso/shirts/longsleeve/male/white_longsleeve.png",
            "2b9b8fefa08894b7ea536cd62b86d494aefe6e54495c5c1d83460827b13b6448",
        ),
        ("torso/plate/chest_male.png", "807f5b628592f6747e2814be9435963069dba6c360577168c02f57bbe903433d"),
        ("torso/leather/chest_male.png", "b51b17878503877e179ce4f9231713bf2b2d2d666c3ec9ee29f4e784469867a2"),
        (
            "formal_male_no_th-sh/shirt.png",
            "d7e48182399dbb4ffc87fd111d506c4100a4734e17e953c086882f3e024d996c",
        ),
        ("formal_male_no_th-sh/tie.png", "286ac553b6e596e0362c6e84adc245e4e544c1ad00db9d837bcffe6754e71f64"),
        ("hair/male/messy2/green2.png", "e4007b0635a239ad16cdebfe90759349ccc73dfc6836c9d19625714be185f43d"),
        ("hair/male/longknot/blue2.png", "fa6369f84d3310705df6d8ca8c9d515a7d211e73d2826c50a9cb5bb285652c66"),
        (
            "hair/male/messy1/light-blonde.png",
            "1b8046752be7233e829ebe9b11048e171d8d181ee6f68e07042b34f57bb8af0d",
        ),
        ("hair/male/bangs/white.png", "333783285c5fd94ff434ae5000d2da39aac7940269f173119eaa70d34c8acfa1"),
        ("hair/male/plain/ruby-red.png", "24df8e9b291cbd444f6c4d12d35b3d43d909cd13f04e6401e0fd8ab10216d5a2"),
        ("hair/male/jewfro/purple.png", "4dd471cc20e0b1cf71adcaab01c88598767e5cfe680adacdf560ca91574f17ae"),
        (
            "feet/armor/male/golden_boots_male.png",
            "d56a561616a20a12030d2d40a52eeec63e6d048871bf3b6994221869362151f1",
        ),
        ("README.md", "a0c8f3add0f7b47f6f34b1d869c6752d26e4049ab9b87e4ce1b8bae75b703821"),
        ("AUTHORS.txt", "288163a6c4e2d1df7b63f64250a937e6e143179550c9f2249d6673669f4780c3"),
        ("cc-by-sa-3.0.txt", "f199af7e90e29e197a4be87b9a6d585a29ff5eae2b977503e590c4bd8fe6e8b3"),
        ("gpl-3.0.txt", "8ceb4b9ee5adedde47b31e975c1d90c73ad27b6b165a1dcd80c7c545eb65b903"),
    ),
)

# LeCun's IDX archives, as Google's CVDF mirrors them (yann.lecun.com refuses scripted downloads).
# Provenance of the local copies in shared/data/mnist/SOURCE.md.
_MNIST = Source(
    name="mnist",
    url_base="https://storage.googleapis.com/cvdf-datasets/mnist/",
    files=(
        RemoteFile(
            "train-images-idx3-ubyte.gz",
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            PartialCopy(
                "train-images-idx3-ubyte.truncated.gz",
                "79b634409de0db1830fb5f31a58a21894b7e734b0c9c4ba6abaffeb1afd9f478",
                "the first 3,751,936 bytes of the archive: 22,699 complete training images",
            ),
        ),
        RemoteFile(
            "train-labels-idx1-ubyte.gz", "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"
        ),
        RemoteFile(
            "t10k-images-idx3-ubyte.gz", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"
        ),
        RemoteFile(
            "t10k-labels-idx1-ubyte.gz", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"
        ),
    ),
)


def _manifest(name: str) -> tuple[RemoteFile, ...]:
    """Files pinned in `pipeline/sources/{name}.tsv` (path, sha256), for sources too long to list here."""
    lines = (Path(__file__).parent / "sources" / f"{name}.tsv").read_text().splitlines()[1:]
    return _files(*(tuple(line.split("\t")) for line in lines if line))


# The Free Spoken Digit Dataset's 3000 recordings (CC BY-SA 4.0); provenance in shared/data/fsdd/SOURCE.md.
_FSDD = Source(
    name="fsdd",
    url_base="https://raw.githubusercontent.com/Jakobovski/free-spoken-digit-dataset/"
    "26eb9aaf76e81b692f806f9140c2d2777410d7a1/",
    files=_manifest("fsdd"),
)

# Eleven GRID clips (10 people) and the word timings of one, as the LipNet repository keeps them (CC BY 4.0);
# provenance in shared/data/grid-samples/SOURCE.md. The full corpus is read from grid.root instead.
_GRID_SAMPLES = Source(
    name="grid-samples",
    url_base="https://raw.githubusercontent.com/rizkiarm/LipNet/bec592aa1e66378bc7ab33f6110f1c8a431b3b9a/"
    "evaluation/samples/",
    files=(
        RemoteFile(
            "bbaf2n.mpg",
            "e468120039e208b5ff9b9e269f8dc96bbddc45701f8dddcf2c0ae21abc0df546",
            url_path="GRID/bbaf2n.mpg",
        ),
        RemoteFile(
            "brbk7n.mpg",
            "2122707c6dd3b59a32b5272870afb37397dc6b20cf52241cf8ff7cfda7b3efa3",
            url_path="GRID/brbk7n.mpg",
        ),
        RemoteFile(
            "id2_vcd_swwp2s.mpg",
            "3bb8cffd51399caaf0c97abcd32bcab3493b2878ffda73bd648490ea47c75cc0",
            url_path="id2_vcd_swwp2s.mpg",
        ),
        RemoteFile(
            "lbax4n.mpg",
            "8f80c8ced6a8cb47d55c5c01704d4669b410369af653f6be7fbda9003337dedf",
            url_path="GRID/lbax4n.mpg",
        ),
        RemoteFile(
            "lbbc2a.mpg",
            "9447e5e0732eeaf4444b5ba1e3412c8a9e194975ba7c814fa64c4c41c83d4e4c",
            url_path="GRID/lbbc2a.mpg",
        ),
        RemoteFile(
            "lrwp9a.mpg",
            "1a6c86fc5e7d4e9ee66a891f188f9a648c9b8be3bdc2431d73ac7e533aa70b3f",
            url_path="GRID/lrwp9a.mpg",
        ),
        RemoteFile(
            "lwbsza.mpg",
            "09090d1f7a8a946233a015a1b4258fafcb790ed6dbbd884ed88ae51fe36841a0",
            url_path="GRID/lwbsza.mpg",
        ),
        RemoteFile(
            "pwij3p.mpg",
            "a610d98c101dde3587cc66d70cb569d3b1d0111cfad90bd0037e47e21316beda",
            url_path="GRID/pwij3p.mpg",
        ),
        RemoteFile(
            "sbia1a.mpg",
            "768e49272122f1577839db576ea00146d08e83d778c7fe8b9ca1b194dff57c7d",
            url_path="GRID/sbia1a.mpg",
        ),
        RemoteFile(
            "sbwe5n.mpg",
            "6707e709f1d713a6ff6673c85605e2fa721cfe59749c56b9f34e6d159c5fdf55",
            url_path="GRID/sbwe5n.mpg",
        ),
        RemoteFile(
            "swiz3n.mpg",
            "080f3e1511879a3baa41cdc31aa7029981f29c71434a570de3d52ee78f9e5dd0",
            url_path="GRID/swiz3n.mpg",
        ),
        RemoteFile(
            "swwp2s.align",
            "6d9772867737cf27622c07f8632d5fd51879080c310f5a89a266af2b692de733",
            url_path="swwp2s.align",
        ),
    ),
)

SOURCES: dict[str, Source] = {source.name: source for source in (_LPC_SPRITES, _MNIST, _FSDD, _GRID_SAMPLES)}


def sha256_file(path: Path | str) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def _open_origin(source: Source, file: RemoteFile, mirror: Path | None) -> Iterator[tuple[BinaryIO, str]]:
    """Open one file of `source` for reading; yield the stream and where it came from."""
    if mirror is not None:
        origin = mirror / source.name / file.path
        if not origin.is_file():
            raise DownloadError(
                f"{origin} does not exist: point `mirror` at a folder holding "
                f"{source.name}/{file.path}, or leave `mirror` unset to download it"
            )
        with open(origin, "rb") as stream:
            yield stream, str(origin)
        return
    url = source.url_base + (file.url_path or file.path)
    try:
        response = urllib.request.urlopen(url, timeout=TIMEOUT_S)
    except (urllib.error.URLError, TimeoutError) as err:
        raise DownloadError(
            f"could not download {url} ({err}): check the network, or point `mirror` at a folder "
            f"holding {source.name}/{file.path}"
        ) from err
    with response:
        yield response, url


def _fetch_file(source: Source, file: RemoteFile, target: Path, mirror: Path | None) -> None:
    """Copy one file to `target` through a temporary name, keeping it only if its sha256 is the pinned one."""
    with _open_origin(source, file, mirror) as (stream, origin), atomic_path(target) as tmp:
        digest = hashlib.sha256()
        try:
            with open(tmp, "wb") as out:
                while chunk := stream.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
        except (OSError, http.client.HTTPException) as err:
            raise DownloadError(
                f"{origin}: reading failed ({err}): fetch again, or point `mirror` at a folder holding "
                f"{source.name}/{file.path}"
            ) from err
        actual = digest.hexdigest()
        if actual != file.sha256:
            # Raising inside `atomic_path` discards the temporary file, so no bad copy is left behind.
            raise DownloadError(
                f"{origin}: sha256 is {actual}, expected {file.sha256} for {source.name}/{file.path}: "
                f"re-download it, or point `mirror` at a folder holding an intact {source.name}/{file.path}"
            )


def fetch_source(*, source: str, dest: Path | str, mirror: Path | str | None = FromConfig("mirror")) -> Path:
    """Fetch every file of `source` into `dest`, verified by sha256, and return the `dest/SHA256SUMS` path.

    With `mirror`, files are copied from `mirror/<source>/<path>`; without it they are downloaded from
    the source's pinned URL. Files already in `dest` with the right hash are kept as they are.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown data source {source!r}: known sources are {sorted(SOURCES)}")
    spec = SOURCES[source]
    dest = Path(dest)
    mirror = None if mirror is None else Path(mirror)
    fetched = [_substitute_partial_copy(spec, file, mirror) for file in spec.files]
    for file in fetched:
        target = dest / file.path
        if target.is_file() and sha256_file(target) == file.sha256:
            logger.info("%s: already verified", target)
            continue
        if target.exists():
            logger.warning("%s: sha256 differs from the pinned one, fetching it again", target)
        _fetch_file(spec, file, target, mirror)
        logger.info("%s: fetched and verified", target)
    sums = dest / "SHA256SUMS"
    with atomic_path(sums) as tmp:
        tmp.write_text("".join(f"{file.sha256}  {file.path}\n" for file in fetched))
    logger.info("%s: %d files verified", sums, len(fetched))
    return sums


def _substitute_partial_copy(source: Source, file: RemoteFile, mirror: Path | None) -> RemoteFile:
    """The file to fetch: `file` itself, or its pinned partial copy when the mirror has only that."""
    copy = file.partial_copy
    if mirror is None or copy is None or (mirror / source.name / file.path).exists():
        return file
    if not (mirror / source.name / copy.path).is_file():
        return file  # neither is there: fetching `file` raises the error that names the full file
    logger.warning(
        "%s: the mirror has no %s, only its known partial copy %s (%s); using it",
        mirror / source.name,
        file.path,
        copy.path,
        copy.holds,
    )
    return RemoteFile(copy.path, copy.sha256)


def verified_files(sums: Path | str) -> dict[str, str]:
    """Path -> sha256 of every file a `fetch_source` call verified, read from its SHA256SUMS."""
    sums = Path(sums)
    if not sums.is_file():
        raise FileNotFoundError(f"{sums} does not exist: fetch the source first (snakemake {sums})")
    pairs = (line.split(maxsplit=1) for line in sums.read_text().splitlines() if line.strip())
    return {path.strip(): sha for sha, path in pairs}


def refetch_hint(folder: Path | str) -> str:
    """How to fetch a source folder's files again (download_source refetches each file whose hash differs)."""
    folder = Path(folder)
    source = folder.name if folder.name in SOURCES else "SOURCE"
    return (
        f"fetch it again with `snakemake [TARGET ...] --forcerun download_source` and your --config (targets "
        f"first), or delete {folder} and rerun; without Snakemake: python -m pipeline.data.download --source "
        f"{source} --dest {folder}"
    )


def verify_files(sums: Path | str, paths: Iterable[str] | None = None) -> None:
    """Check the files beside `sums` (`paths`, or every file it lists) against the hashes `sums` lists.

    A verified folder can change after its download (a disk error, an edit, a partial copy): a builder
    calls this before reading, so that a bad file stops it with the file's name and the fix.
    """
    sums = Path(sums)
    folder = sums.parent
    if not sums.is_file():
        raise DownloadError(
            f"{sums} does not exist, so the files in {folder} cannot be checked: {refetch_hint(folder)}"
        )
    listed = verified_files(sums)
    for path in listed if paths is None else paths:
        target = folder / path
        if path not in listed:
            raise DownloadError(
                f"{sums} does not list {path}, so {target} cannot be checked: {refetch_hint(folder)}"
            )
        if not target.is_file():
            raise DownloadError(f"{target} is missing (listed in {sums}): {refetch_hint(folder)}")
        actual = sha256_file(target)
        if actual != listed[path]:
            raise DownloadError(
                f"{target} has changed since it was verified: its sha256 is {actual}, {sums} lists "
                f"{listed[path]}: {refetch_hint(folder)}"
            )


if __name__ == "__main__":
    from pipeline.stage import stage_main

    stage_main(fetch_source)
