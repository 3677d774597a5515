"""NIST SPHERE audio files (TIMIT's .WAV), read with numpy.

TIMIT needs one corner of the format: a 1024-byte ASCII header that starts `NIST_1A`, then
`key -type value` lines up to `end_head`, then uncompressed 16-bit PCM. That is twenty lines of numpy;
libraries that read SPHERE (sphfile, soundfile through libsndfile) would add a dependency for it, and
shorten-compressed SPHERE (other LDC corpora) is rejected with an error that says so.

`write_sphere` exists for the tests, which build TIMIT-shaped fixture folders: TIMIT itself is licensed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HEADER_BYTES = 1024
MAGIC = b"NIST_1A"
_BYTE_ORDER = {"01": "<", "10": ">", "1": "<"}  # "1": one-byte samples, where the order does not matter


class SphereError(ValueError):
    """A file is not a SPHERE file this reader handles."""


@dataclass(frozen=True)
class SphereAudio:
    samples: np.ndarray  # (n,) int16 for TIMIT's 16-bit PCM
    sample_rate: int
    header: dict[str, int | float | str]


def parse_header(raw: bytes, path: str | os.PathLike = "<bytes>") -> dict[str, int | float | str]:
    """The `key -type value` fields of a SPHERE header (`-i` int, `-r` real, `-sN` string of N chars)."""
    if not raw.startswith(MAGIC):
        raise SphereError(f"{path}: not a NIST SPHERE file (no '{MAGIC.decode()}' magic in the first bytes)")
    lines = raw.decode("ascii", errors="replace").splitlines()
    header_size = int(lines[1].strip())
    fields: dict[str, int | float | str] = {"header_size": header_size}
    for line in lines[2:]:
        line = line.strip()
        if line == "end_head":
            return fields
        parts = line.split(" ", 2)
        if len(parts) < 3:
            continue
        key, kind, value = parts
        fields[key] = int(value) if kind == "-i" else float(value) if kind == "-r" else value
    raise SphereError(f"{path}: the SPHERE header has no 'end_head' line within {len(raw)} bytes")


def read_sphere(path: str | os.PathLike) -> SphereAudio:
    """Samples and rate of an uncompressed PCM SPHERE file."""
    data = Path(path).read_bytes()
    header = parse_header(data[:HEADER_BYTES], path)
    coding = str(header.get("sample_coding", "pcm"))
    if coding != "pcm":
        raise SphereError(
            f"{path}: sample_coding '{coding}' is not supported (only uncompressed pcm, as TIMIT ships it); "
            "decompress the file first, e.g. with sph2pipe"
        )
    width = int(header.get("sample_n_bytes", 2))
    order = _BYTE_ORDER.get(str(header.get("sample_byte_format", "01")))
    if order is None or width not in (1, 2):
        raise SphereError(
            f"{path}: {width}-byte samples in byte format {header.get('sample_byte_format')!r} are not"
            " supported (TIMIT is 2-byte little-endian, '01')"
        )
    count = int(header["sample_count"]) * int(header.get("channel_count", 1))
    dtype = np.dtype(f"{order}i{width}")
    samples = np.frombuffer(data, dtype=dtype, count=count, offset=int(header["header_size"]))
    return SphereAudio(
        samples.astype(np.int16 if width == 2 else np.int8), int(header["sample_rate"]), header
    )


def write_sphere(path: str | os.PathLike, samples: np.ndarray, sample_rate: int) -> None:
    """A TIMIT-style SPHERE file: 1024-byte header, 16-bit little-endian mono PCM (for test fixtures)."""
    samples = np.asarray(samples, dtype="<i2")
    lines = [
        "NIST_1A",
        f"   {HEADER_BYTES}",
        "database_id -s5 TIMIT",
        "channel_count -i 1",
        f"sample_count -i {len(samples)}",
        f"sample_rate -i {sample_rate}",
        "sample_n_bytes -i 2",
        "sample_byte_format -s2 01",
        "sample_coding -s3 pcm",
        "sample_sig_bits -i 16",
        "end_head",
    ]
    header = ("\n".join(lines) + "\n").encode("ascii").ljust(HEADER_BYTES, b" ")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(header + samples.tobytes())
